"""Inference: checkpoint ensembles → probabilities → clean label maps → output files.

Modules, in data-flow order: :mod:`~femurseg.models.checkpoints` (safe loading,
compatibility, weight averaging), :mod:`~femurseg.inference.ensemble` (mean softmax
over checkpoints and mirror flips, per window), :mod:`~femurseg.inference.predictor`
(one scan: preprocess, sliding window, resample to the scan's grid, postprocess, refine;
``segment``), :mod:`~femurseg.inference.postprocess`, :mod:`~femurseg.inference.refine`,
:mod:`~femurseg.inference.contours`,
:mod:`~femurseg.inference.report`, :mod:`~femurseg.inference.qc`,
:mod:`~femurseg.inference.writers`, :mod:`~femurseg.inference.cohort` (many scans,
through ``Trainer.predict``). The command line is :mod:`femurseg.commands.segment`.

Names are imported lazily so that ``import femurseg.inference`` stays cheap.
"""

from __future__ import annotations

from femurseg.lazy import lazy_exports

_EXPORTS = {
    "segment": "femurseg.inference.predictor",
    "Predictor": "femurseg.inference.predictor",
    "SegmentationResult": "femurseg.inference.predictor",
    "InferenceSettings": "femurseg.inference.predictor",
    "load_checkpoints": "femurseg.models.checkpoints",
    "CheckpointSet": "femurseg.models.checkpoints",
    "Postprocessing": "femurseg.inference.postprocess",
    "postprocess": "femurseg.inference.postprocess",
    "Refinement": "femurseg.inference.refine",
    "refine_contours": "femurseg.inference.refine",
    "label_contours": "femurseg.inference.contours",
    "contours_to_mask": "femurseg.inference.contours",
    "Calibration": "femurseg.inference.report",
    "compartment_report": "femurseg.inference.report",
    "run_cohort": "femurseg.inference.cohort",
    "fit_thresholds": "femurseg.inference.thresholds",
    "read_thresholds": "femurseg.inference.thresholds",
    "Thresholds": "femurseg.inference.thresholds",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
