"""Segment one scan: preprocess, ensemble sliding window, resample back, postprocess, report.

:class:`Predictor` holds a checkpoint ensemble (:mod:`~femurseg.models.checkpoints`)
as one :class:`~femurseg.inference.ensemble.EnsembleNetwork` and turns a CT scan into
a :class:`SegmentationResult`:

1. the scan is preprocessed exactly as in training (the settings come from the
   checkpoints): canonical grid, target spacing, HU window scaled to ``[-1, 1]``;
2. the ensemble (checkpoints × mirror flips) runs in a Gaussian sliding window on
   that grid; the network sees the volume in TorchIO's ``(x, y, z)`` axis order, as
   in training;
3. the periosteal and endosteal probabilities are resampled (linearly, in physical
   space, so any orientation is handled) onto the scan's own grid;
4. they are decoded (thresholds for binary models, argmax for a 3-class model) and
   postprocessed (:mod:`~femurseg.inference.postprocess`) into the 0/1/2 map;
5. the two contours are refined with the scan's intensities on its own grid
   (:mod:`~femurseg.inference.refine`: periosteal and endosteal surfaces at half
   maximum between the cortical plateau and the neighbouring tissue) and
   postprocessed again;
6. volumes, mean HU (and calibrated densities), contours and, optionally, the
   ensemble's disagreement are computed.

:func:`segment` is the one-call Python API; the cohort runner
(:mod:`~femurseg.inference.cohort`) and ``femurseg segment`` use the same
:class:`Predictor`.

Examples
--------
>>> result = segment("scan.nii.gz", periosteal=["p.ckpt"], endosteal=["e.ckpt"])  # doctest: +SKIP
>>> result.report["volume_cm3"]                                                  # doctest: +SKIP
{'periosteal': 181.2, 'cortical': 61.0, 'trabecular': 120.2}
>>> result.write("out/")                                                         # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from femurseg.data.validate import check_image, check_scan
from femurseg.data.preprocess import preprocess_image
from femurseg.devices import fast_bf16
from femurseg.errors import DataError
from femurseg.models.checkpoints import CheckpointSet, build_net, load_checkpoints
from femurseg.inference.backends import Backend, backend_network, resolve_backend
from femurseg.inference.contours import geometry_of, label_contours
from femurseg.inference.ensemble import EnsembleNetwork, mirror_flips
from femurseg.inference.postprocess import Postprocessing, decode_probabilities, postprocess
from femurseg.inference.qc import QCSettings, decoded_numbers, ensemble_agreement, femur_box, quality_report
from femurseg.inference.refine import Refinement, refine_contours
from femurseg.inference.report import Calibration, compartment_report, side_reports
from femurseg.labels import endosteal_mask, periosteal_mask
from femurseg.sliding import Blend, SparseWindows, sliding_window_inference
from femurseg.voxels import bounding_box

__all__ = ["InferenceSettings", "SegmentationResult", "Predictor", "segment", "resolve_precision"]

PrecisionSetting = Literal["auto", "bf16", "fp32"]


@dataclass(frozen=True)
class InferenceSettings:
    """How a scan is segmented.

    Parameters
    ----------
    tta
        Mirror-flip test-time augmentation: ``"auto"`` (default) flips along the axes
        the checkpoints were trained to mirror (``"x"``, left/right, for every
        augmentation preset but ``none``: 2 predictions per checkpoint); ``"none"``;
        or the axes, e.g. ``"xyz"`` (8 flips, nnU-Net's choice for models trained
        with mirroring along every axis).
    overlap, blend, batch_size
        Sliding-window overlap, blending (``gaussian``, ``hann``, ``constant``) and
        windows per network call.
    patch_size
        Window size; ``None`` uses the checkpoints' training patch size.
    precision
        ``auto`` (bf16 autocast on GPUs and on CPUs with AVX-512 BF16, else fp32),
        ``bf16`` or ``fp32``.
    backend
        What runs each network inside the sliding window
        (:mod:`~femurseg.inference.backends`): ``torch`` (default), ``onnxruntime``
        or ``openvino`` (the network exported once to ONNX and cached; extras
        ``femurseg[onnx]``, ``femurseg[openvino]``), or ``auto`` (the fastest
        installed). Windows, blending and test-time flips are the same for all.
    accumulator
        ``float32`` or ``float16`` sliding-window accumulators.
    windows
        ``"sparse"`` (default): coarse to fine — a non-overlapping tiling of
        windows first, then only the overlapping windows whose core holds a
        periosteal probability ≥ ``sparse_threshold``; the others are left out of
        the blend (see :mod:`femurseg.sliding`). ``"all"``: every window, as
        MONAI's ``sliding_window_inference``.
    sparse_threshold
        Periosteal probability of the first pass that makes a window worth evaluating.
    sparse_core
        Central fraction of a window (per axis) searched for that probability.
    skip_below_hu
        Opt-in speed-up: windows whose densest voxel is below this HU (e.g. 300)
        hold no bone; they are not evaluated (voxels no other window covers are
        background). Only valid
        for a network that has learned that bone-free regions are background;
        ``None`` (default) evaluates every window.
    average_weights
        Average the weights of each target's checkpoints into one network.
    uncertainty
        Compute the ensemble's disagreement (standard deviation of the
        probabilities, ``uncertainty.nii.gz``), the members' agreement (pairwise
        Dice, volume spread) for ``qc.json``, and the QC flag.
    uncertainty_threshold
        QC flag raised when the mean disagreement on the contours exceeds this.
    keep_probabilities
        Keep the probability maps on the scan's grid in the result.
    postprocessing
        See :class:`~femurseg.inference.postprocess.Postprocessing`.
    refinement
        Half-maximum refinement of the contours on the scan's grid (see
        :class:`~femurseg.inference.refine.Refinement`); ``None`` keeps the networks'
        contours as decoded.
    calibration
        HU → density line for vBMD and BMC, or ``None``.
    qc
        Thresholds of the flags of ``qc.json`` (:class:`~femurseg.inference.qc.QCSettings`).
    """

    tta: str = "auto"
    overlap: float = 0.5
    blend: Blend = "gaussian"
    batch_size: int = 4
    patch_size: tuple[int, int, int] | None = None
    precision: PrecisionSetting = "auto"
    backend: Backend = "torch"
    accumulator: Literal["float32", "float16"] = "float32"
    windows: Literal["sparse", "all"] = "sparse"
    sparse_threshold: float = 0.05
    sparse_core: float = 0.5
    skip_below_hu: float | None = None
    average_weights: bool = False
    uncertainty: bool = False
    uncertainty_threshold: float = 0.15
    keep_probabilities: bool = False
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    refinement: Refinement | None = field(default_factory=Refinement)
    calibration: Calibration | None = None
    qc: QCSettings = field(default_factory=QCSettings)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, written to ``report.json``."""
        return asdict(self)


def resolve_precision(precision: PrecisionSetting, device: torch.device) -> Literal["bf16", "fp32"]:
    """``auto`` → ``bf16`` where bf16 convolutions are fast (:func:`femurseg.devices.fast_bf16`), else ``fp32``."""
    if precision != "auto":
        return precision
    return "bf16" if fast_bf16(device) else "fp32"


@dataclass
class SegmentationResult:
    """The segmentation of one scan.

    Attributes
    ----------
    subject_id
        Name of the scan (output folder name).
    image
        The input scan in HU.
    label
        ``uint8`` 0/1/2 map on the scan's exact grid.
    report
        Contents of ``report.json``.
    probabilities
        2-component ``float32`` image (periosteal, endosteal probability) on the
        scan's grid, if kept.
    uncertainty
        ``float32`` ensemble standard deviation (max over the two contours), if computed.
    """

    subject_id: str
    image: sitk.Image
    label: sitk.Image
    report: dict[str, Any]
    probabilities: sitk.Image | None = None
    uncertainty: sitk.Image | None = None

    def contours(self) -> dict[str, Any]:
        """Per-slice periosteal and endosteal polygons in mm (``contours.json``)."""
        return label_contours(sitk.GetArrayViewFromImage(self.label), geometry_of(self.label))

    def write(self, output: str | os.PathLike[str], qc: bool = True, exports: Any = None) -> Path:
        """Write ``<output>/<subject_id>/`` atomically (see :mod:`~femurseg.inference.writers`).

        ``exports`` is an optional :class:`~femurseg.export.outputs.ExportRequest`
        (surface meshes, ...) written into the same folder.
        """
        from femurseg.inference.writers import write_subject

        return write_subject(output, self.subject_id, self.image, self.label, self.report, self.contours(),
                             self.probabilities, self.uncertainty, qc=qc, exports=exports)


class Predictor:
    """A checkpoint ensemble ready to segment scans.

    Parameters
    ----------
    checkpoints
        A loaded, checked :class:`~femurseg.models.checkpoints.CheckpointSet`.
    settings
        :class:`InferenceSettings`.
    export_dir
        Cache of the networks exported for the ``onnxruntime`` and ``openvino``
        backends (default ``~/.cache/femurseg/onnx``).

    Attributes
    ----------
    network
        The :class:`~femurseg.inference.ensemble.EnsembleNetwork`; with the
        ``torch`` backend, move it to a device (``predictor.network.to("cuda")``)
        to run there; the exported backends run on the CPU.
    """

    def __init__(self, checkpoints: CheckpointSet, settings: InferenceSettings | None = None,
                 export_dir: str | os.PathLike[str] | None = None) -> None:
        self.checkpoints = checkpoints
        self.settings = settings or InferenceSettings()
        if self.settings.tta == "auto":  # resolved once, so reports and threshold files name the axes
            self.settings = replace(self.settings, tta=checkpoints.mirror_axes)
        if self.settings.backend == "auto":  # resolved once, so reports name the backend that ran
            self.settings = replace(self.settings, backend=resolve_backend("auto"))
        flips = mirror_flips(self.settings.tta)
        window = self.settings.patch_size or checkpoints.patch_size
        precision = resolve_precision(self.settings.precision, torch.device("cpu"))

        def member(info: Any) -> torch.nn.Module:
            if self.settings.backend == "torch":
                return build_net(info)
            return backend_network(info, self.settings.backend, window, export_dir, precision)

        self.network = EnsembleNetwork(
            periosteal=[member(m) for m in checkpoints.periosteal],
            endosteal=[member(m) for m in checkpoints.endosteal],
            compartments=[member(m) for m in checkpoints.compartments],
            flips=flips,
            moments=self.settings.uncertainty,
        ).eval()

    @property
    def device(self) -> torch.device:
        """Where the windows are sent: the networks' device (the CPU for the exported backends)."""
        parameter = next(self.network.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def probabilities(self, preprocessed: sitk.Image) -> torch.Tensor:
        """Ensemble probabilities on the preprocessed grid.

        Returns
        -------
        torch.Tensor
            ``(C, X, Y, Z)`` on the CPU: periosteal and endosteal probability (and
            their second moments with ``uncertainty``), in the image's ``(x, y, z)`` order.
        """
        s = self.settings
        array = sitk.GetArrayFromImage(preprocessed)  # (z, y, x)
        volume = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 1, 0)))[None, None]
        dtype = torch.float16 if s.accumulator == "float16" else torch.float32
        if s.windows not in ("sparse", "all"):
            raise ValueError(f"unknown windows setting {s.windows!r}; valid: sparse, all")
        skip = None
        if s.skip_below_hu is not None:
            low, high = self.checkpoints.preprocessing.hu_window
            skip = _BelowLevel((s.skip_below_hu - (low + high) / 2) / ((high - low) / 2))
        # channel 0 of the ensemble's output is P(periosteal): every contour lies inside it
        sparse = (SparseWindows(channel=0, threshold=s.sparse_threshold, core=s.sparse_core)
                  if s.windows == "sparse" else None)
        skip_value = [0.0] * self.network.channels if skip is not None or sparse is not None else None
        return sliding_window_inference(
            volume, self.network, s.patch_size or self.checkpoints.patch_size, overlap=s.overlap, blend=s.blend,
            batch_size=s.batch_size, accumulator_dtype=dtype,
            precision=resolve_precision(s.precision, self.device) if s.backend == "torch" else "fp32",
            pad_mode="replicate", device=self.device, skip=skip, skip_value=skip_value, sparse=sparse,
        )[0]

    def predict(self, image: sitk.Image, subject_id: str = "scan", source: str = "") -> SegmentationResult:
        """Segment one scan (see the module docstring).

        Parameters
        ----------
        image
            3D CT in HU, any orientation and spacing.
        subject_id
            Name used in the result and its output folder.
        source
            Where the scan came from (for the report).

        Raises
        ------
        DataError
            If the image is not a 3D scalar image (the message names the subject).
        """
        start = time.perf_counter()
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise DataError(f"subject {subject_id!r}: {source or 'image'} is not a 3D scalar image")
        s = self.settings
        preprocessed = preprocess_image(image, self.checkpoints.preprocessing)
        grid = _grid_of(preprocessed)
        maps = self.probabilities(preprocessed)
        del preprocessed
        outer_p = _resample(maps[0].float(), grid, image)
        inner_p = _resample(maps[1].float(), grid, image)
        spread = None
        if s.uncertainty:  # the maps are kept for the members' agreement around the final femur
            deviation = (maps[2:4].float() - maps[:2].float() ** 2).clamp_(min=0).sqrt_().amax(dim=0)
            spread = _resample(deviation, grid, image)
        else:
            del maps
        hu = sitk.GetArrayViewFromImage(image)
        decoding = "argmax" if self.checkpoints.kind == "compartments" else "threshold"
        outer, inner = decode_probabilities(outer_p, inner_p, decoding, s.postprocessing.thresholds)
        decoded = decoded_numbers(outer, inner)
        array = postprocess(outer, inner, image.GetSpacing(), s.postprocessing, hu)
        del outer, inner
        if s.refinement is not None:
            outer, inner = refine_contours(hu, periosteal_mask(array), endosteal_mask(array),
                                           image.GetSpacing(), s.refinement)
            array = postprocess(outer, inner, image.GetSpacing(), s.postprocessing, hu)
            del outer, inner
        label = sitk.GetImageFromArray(array)
        label.CopyInformation(image)

        report: dict[str, Any] = {"subject_id": subject_id, "image": source}
        report.update(compartment_report(image, label, s.calibration))
        report["femurs"] = side_reports(image, label, s.calibration)
        if spread is not None:
            report["uncertainty"] = _contour_uncertainty(spread, array)
            report["qc_flag"] = bool(report["uncertainty"] is not None and report["uncertainty"] > s.uncertainty_threshold)
        agreement = None
        if s.uncertainty:
            agreement = ensemble_agreement(maps, grid[1], self.network.size, femur_box(array, image, grid))
            del maps
        report["qc"] = quality_report(array, image.GetSpacing(), s.qc, decoded, agreement, spread,
                                      len(report["femurs"]) or None)
        report["geometry"] = geometry_of(image)
        report["checkpoints"] = self.checkpoints.describe()
        report["ensemble"] = {"kind": self.checkpoints.kind, "predictions_per_contour": self.network.size}
        report["settings"] = s.to_dict()
        report["preprocessing"] = self.checkpoints.preprocessing.to_dict()
        report["seconds"] = round(time.perf_counter() - start, 3)
        probabilities = _vector_image(outer_p, inner_p, image) if s.keep_probabilities else None
        uncertainty = _scalar_image(spread, image) if spread is not None else None
        return SegmentationResult(subject_id, image, label, report, probabilities, uncertainty)



@dataclass(frozen=True)
class _BelowLevel:
    """Skip predicate: windows whose maximum (scaled intensity) is below ``level``."""

    level: float

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        return windows.flatten(1).amax(dim=1) < self.level


Grid = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]


def _grid_of(image: sitk.Image) -> Grid:
    return image.GetOrigin(), image.GetSpacing(), image.GetDirection()


def _resample(volume: torch.Tensor, grid: Grid, reference: sitk.Image) -> np.ndarray:
    """Linearly resample an ``(X, Y, Z)`` map on ``grid`` onto ``reference``'s grid; ``(z, y, x)`` float32."""
    source = sitk.GetImageFromArray(volume.permute(2, 1, 0).contiguous().numpy())
    source.SetOrigin(grid[0])
    source.SetSpacing(grid[1])
    source.SetDirection(grid[2])
    resampled = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    del source
    return sitk.GetArrayFromImage(resampled)


def _scalar_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32, copy=False))
    image.CopyInformation(reference)
    return image


def _vector_image(periosteal: np.ndarray, endosteal: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.Compose(_scalar_image(periosteal, reference), _scalar_image(endosteal, reference))
    image.CopyInformation(reference)
    return image


def _contour_uncertainty(spread: np.ndarray, label: np.ndarray) -> float | None:
    """Mean ensemble standard deviation on the two contours (voxels within one voxel of a boundary)."""
    box = bounding_box(label > 0, margin=1)
    if box is None:
        return None
    band = np.zeros(label[box].shape, bool)
    for mask in (periosteal_mask(label[box]), endosteal_mask(label[box])):
        band |= ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask)
    return round(float(spread[box][band].mean()), 5) if band.any() else None


def segment(
    image_or_path: sitk.Image | str | os.PathLike[str],
    checkpoints: Sequence[str | os.PathLike[str]] | None = None,
    periosteal: Sequence[str | os.PathLike[str]] | None = None,
    endosteal: Sequence[str | os.PathLike[str]] | None = None,
    settings: InferenceSettings | None = None,
    device: str | torch.device = "cpu",
    subject_id: str | None = None,
    model: str | None = None,
    **overrides: Any,
) -> SegmentationResult:
    """Segment one scan with the bundled default model or a checkpoint ensemble.

    Parameters
    ----------
    image_or_path
        A SimpleITK image in HU, or a file / DICOM folder.
    checkpoints
        Checkpoints of any target (grouped by the target each records).
    periosteal, endosteal
        Binary checkpoint sets of each contour.
    settings
        :class:`InferenceSettings`; keyword ``overrides`` replace single fields
        (``segment(path, ckpts, tta="none", keep_probabilities=True)``).
    device
        Where the networks run.
    subject_id
        Name of the result; default the file name without extension, or ``"scan"``.
    model
        Bundled model used when no checkpoint is given (default
        :data:`femurseg.models.zoo.DEFAULT_MODEL`); ``femurseg models`` lists them.

    Returns
    -------
    SegmentationResult
        Label map on the input's grid, report, optional probabilities; ``.write(dir)`` saves it.

    Raises
    ------
    CheckpointError
        If the checkpoints cannot be loaded or do not form a valid ensemble.
    DataError
        If the scan cannot be read.
    """
    settings = replace(settings or InferenceSettings(), **overrides)
    if checkpoints or periosteal or endosteal:
        if model is not None:
            raise ValueError("model picks a bundled model; it cannot be combined with checkpoints")
        loaded = load_checkpoints(checkpoints, periosteal, endosteal, average=settings.average_weights)
    else:
        from femurseg.models.zoo import model_path

        loaded = load_checkpoints([model_path(model)])
    predictor = Predictor(loaded, settings)
    predictor.network.to(device)
    if isinstance(image_or_path, sitk.Image):
        image, source = image_or_path, ""
        check_image(image, spacing=loaded.preprocessing.spacing, source="image")
    else:
        image, source = check_scan(image_or_path, spacing=loaded.preprocessing.spacing), str(image_or_path)
    name = subject_id or (scan_name(Path(image_or_path)) if source else "scan")
    return predictor.predict(image, name, source)


def scan_name(path: Path) -> str:
    """A scan's name: the file name without image extensions (``a.nii.gz`` → ``a``), or the folder name."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name

