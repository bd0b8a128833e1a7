"""femurseg: periosteal and endosteal segmentation of the proximal femur in QCT.

The public API is imported lazily, so ``import femurseg`` is fast and only the
parts you use pull in torch, TorchIO or Lightning.

Examples
--------
>>> import femurseg
>>> femurseg.NETS.names()            # doctest: +SKIP
['unet3d', ...]
"""

from __future__ import annotations

from femurseg.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Registry": "femurseg.registry",
    "FemursegError": "femurseg.errors",
    "ManifestError": "femurseg.errors",
    "DataError": "femurseg.errors",
    "CheckpointError": "femurseg.errors",
    "ManifestRecord": "femurseg.data.manifest",
    "read_manifest": "femurseg.data.manifest",
    "Preprocessing": "femurseg.data.preprocess",
    "FemurDataModule": "femurseg.data.datamodule",
    "make_splits": "femurseg.data.folds",
    "generate_subject": "femurseg.data.synthetic",
    "write_cohort": "femurseg.data.synthetic",
    "NETS": "femurseg.models",
    "LOSSES": "femurseg.models",
    "SegmentationModule": "femurseg.models",
    "sliding_window_inference": "femurseg.sliding",
    "segment": "femurseg.inference",
    "evaluate_label_maps": "femurseg.metrics",
    "evaluate_cohort": "femurseg.metrics",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
