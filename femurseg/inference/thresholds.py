"""Volume-calibrated decoding thresholds: ``femurseg thresholds``.

A binary network's probability map is cut at 0.5 by default. On a coarse network grid
(the quick start's 2 mm) a thin cortex is not resolved: the network pulls cortical
thickness towards an average, so the 0.5 iso-surface of the endosteal map sits inward
where the cortex is thinner than a voxel (femoral head and neck) and the trabecular
volume comes out low (-2 % on average for the quick-start models, measured in
``docs/inference.md``). Because cortical volume is the small difference of two large
ones, a 1 % bias of a contour becomes about 4 % of cortical volume.

:func:`fit_thresholds` finds, per contour, the threshold at which the mean relative
volume error over labelled scans is zero, the way nnU-Net decides its postprocessing
on cross-validation predictions. Fit on the split's training and validation subjects,
never on its test subjects, and apply with ``femurseg segment --thresholds FILE``.
Only the mean bias is removed; the scatter between subjects stays. Thresholds act on the
networks' probabilities, before ``segment``'s half-maximum refinement
(:mod:`femurseg.inference.refine`), and the errors a fit reports are those of the thresholded
probabilities; fit them for ``--refine none`` runs, or check the refined volumes with
``femurseg evaluate``.

The volume at a threshold ``t`` is counted inside the femur the default pipeline
finds (its periosteal mask dilated by two voxels), so that the calibration rods and
the pelvis, which postprocessing removes, do not count.

Examples
--------
>>> import numpy as np
>>> values = [np.array([0.2, 0.45, 0.7, 0.9]), np.array([0.3, 0.4, 0.8])]
>>> volume_threshold(values, truths=[3.0, 2.0], voxel_volumes=[1.0, 1.0])   # 3 of 3 and 2 of 2 above t
0.35
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from femurseg.labels import endosteal_mask, periosteal_mask
from femurseg.atomic import atomic_write_json
from femurseg.data.io import read_image, read_label
from femurseg.data.manifest import ManifestRecord
from femurseg.errors import DataError, ThresholdsError
from femurseg.models.checkpoints import CheckpointSet
from femurseg.inference.predictor import Predictor

__all__ = ["Thresholds", "volume_threshold", "fit_thresholds", "read_thresholds", "ThresholdsError"]

#: thresholds are searched in this range; a fit at its edge means the network is far off
SEARCH_RANGE = (0.05, 0.95)


@dataclass(frozen=True)
class Thresholds:
    """Fitted decoding thresholds and how they were obtained.

    Attributes
    ----------
    periosteal, endosteal
        Probability thresholds of the two contours.
    checkpoints
        SHA-256 of the checkpoints they were fitted for, per target.
    subjects
        Subjects the fit used.
    error_at_default, error_fitted
        Mean and worst signed volume error (%) per compartment at 0.5 / 0.5 and at
        the fitted thresholds, on the fitted subjects (counted inside the femur region).
    settings
        The inference settings of the fit (TTA changes the probabilities).
    """

    periosteal: float
    endosteal: float
    checkpoints: dict[str, list[str]] = field(default_factory=dict)
    subjects: list[str] = field(default_factory=list)
    error_at_default: dict[str, dict[str, float]] = field(default_factory=dict)
    error_fitted: dict[str, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write as JSON, atomically."""
        return atomic_write_json(path, asdict(self), allow_nan=True)

    def check_matches(self, checkpoints: CheckpointSet, source: str = "thresholds") -> None:
        """Raise :class:`ThresholdsError` unless fitted for exactly these checkpoints."""
        given = {"periosteal": sorted(m.sha256 for m in checkpoints.periosteal),
                 "endosteal": sorted(m.sha256 for m in checkpoints.endosteal)}
        fitted = {k: sorted(v) for k, v in self.checkpoints.items()}
        if given != fitted:
            raise ThresholdsError(
                f"{source}: the thresholds were fitted for other checkpoints (fitted: {_short(fitted)}, "
                f"given: {_short(given)}); fit them again with `femurseg thresholds` for these models")


def read_thresholds(path: str | os.PathLike[str]) -> Thresholds:
    """Read a thresholds file written by :meth:`Thresholds.write`.

    Raises
    ------
    ThresholdsError
        If the file is missing, not JSON, or a threshold is outside ``(0, 1)``.
    """
    try:
        data = json.loads(Path(path).read_text())
        thresholds = Thresholds(**data)
    except (OSError, ValueError, TypeError) as error:
        raise ThresholdsError(f"{path}: not a thresholds file ({error})") from error
    for name in ("periosteal", "endosteal"):
        value = getattr(thresholds, name)
        if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise ThresholdsError(f"{path}: {name} threshold must be in (0, 1), got {value!r}")
    return thresholds


def volume_threshold(
    values: Sequence[np.ndarray], truths: Sequence[float], voxel_volumes: Sequence[float],
    search: tuple[float, float] = SEARCH_RANGE,
) -> float:
    """The threshold at which the mean relative volume error over subjects is zero.

    Parameters
    ----------
    values
        Per subject, the probabilities of the voxels that may belong to the structure.
    truths
        Per subject, the true volume (same unit as ``voxel_volumes``).
    voxel_volumes
        Per subject, the volume of one voxel.
    search
        Range searched; the result is clamped to it.

    Returns
    -------
    float
        ``t`` with ``mean_s(count(values_s > t) * voxel_s / truth_s) = 1`` (bisection;
        the error falls monotonically with ``t``), the middle of the range of such ``t``.
    """
    if not len(values) == len(truths) == len(voxel_volumes) or not values:
        raise ValueError("values, truths and voxel_volumes need one entry per subject, at least one")
    if any(t <= 0 for t in truths):
        raise ValueError("every true volume must be positive")
    ordered = [np.sort(np.asarray(v, dtype=np.float64).ravel()) for v in values]

    def error(t: float) -> float:
        ratios = [(len(v) - np.searchsorted(v, t, side="right")) * w / truth
                  for v, truth, w in zip(ordered, truths, voxel_volumes)]
        return float(np.mean(ratios)) - 1.0

    if error(search[0]) <= 0:
        return search[0]
    if error(search[1]) >= 0:
        return search[1]

    def crossing(positive: Callable[[float], bool]) -> float:
        low, high = search
        for _ in range(50):
            middle = (low + high) / 2
            low, high = (middle, high) if positive(middle) else (low, middle)
        return (low + high) / 2

    # the error is a step function: take the middle of the range where it is zero
    first = crossing(lambda t: error(t) > 0)
    last = crossing(lambda t: error(t) >= 0)
    return round((first + last) / 2, 4)


@dataclass
class _Case:
    subject_id: str
    periosteal: np.ndarray      # P(periosteal) inside the femur region
    endosteal: np.ndarray       # P(endosteal) inside the femur region
    truth: dict[str, float]     # cm³
    voxel_cm3: float


def _case(predictor: Predictor, record: ManifestRecord) -> _Case:
    image = read_image(record.image)
    reference = read_label(record)
    if reference.GetSize() != image.GetSize():
        raise DataError(f"subject {record.subject_id!r}: label {reference.GetSize()} and image {image.GetSize()} "
                        "differ in size")
    result = predictor.predict(image, record.subject_id, str(record.image))
    assert result.probabilities is not None
    maps = sitk.GetArrayViewFromImage(result.probabilities)  # (z, y, x, 2)
    femur = ndimage.binary_dilation(sitk.GetArrayViewFromImage(result.label) > 0, iterations=2)
    label = sitk.GetArrayViewFromImage(reference)
    voxel_cm3 = float(np.prod(image.GetSpacing())) / 1000.0
    truth = {"periosteal": float(periosteal_mask(label).sum()) * voxel_cm3,
             "trabecular": float(endosteal_mask(label).sum()) * voxel_cm3}
    if min(truth.values()) <= 0:
        raise DataError(f"subject {record.subject_id!r}: the reference has no {min(truth, key=truth.get)} voxels")
    return _Case(record.subject_id, maps[..., 0][femur].copy(), maps[..., 1][femur].copy(), truth, voxel_cm3)


def _errors(cases: Sequence[_Case], periosteal: float, endosteal: float) -> dict[str, dict[str, float]]:
    rows: dict[str, list[float]] = {"periosteal": [], "trabecular": [], "cortical": []}
    for case in cases:
        outer = float((case.periosteal > periosteal).sum()) * case.voxel_cm3
        inner = float((case.endosteal > endosteal).sum()) * case.voxel_cm3
        truth = case.truth
        rows["periosteal"].append(100 * (outer / truth["periosteal"] - 1))
        rows["trabecular"].append(100 * (inner / truth["trabecular"] - 1))
        cortical = truth["periosteal"] - truth["trabecular"]
        rows["cortical"].append(100 * ((outer - inner) / cortical - 1) if cortical > 0 else float("nan"))
    return {k: {"mean": round(float(np.mean(v)), 2), "worst": round(float(max(v, key=abs)), 2)}
            for k, v in rows.items()}


def fit_thresholds(predictor: Predictor, records: Sequence[ManifestRecord], progress: bool = False) -> Thresholds:
    """Fit both contours' thresholds on labelled scans.

    Parameters
    ----------
    predictor
        A binary periosteal + endosteal ensemble; its settings (TTA, windows) are
        those the thresholds will be used with.
    records
        Labelled subjects (the split's training and validation subjects).
    progress
        Print one line per subject.

    Raises
    ------
    ValueError
        If the ensemble is a 3-class one (decoded by argmax, no thresholds) or no
        subject is given.
    DataError
        If a subject's files are unreadable or its reference is empty.
    """
    if predictor.checkpoints.kind != "binary":
        raise ValueError("thresholds apply to binary periosteal/endosteal models; a 3-class model is decoded by argmax")
    if not records:
        raise ValueError("no labelled subjects to fit thresholds on")
    settings = predictor.settings
    if not settings.keep_probabilities:  # the same networks, keeping the maps
        predictor = copy.copy(predictor)
        predictor.settings = replace(settings, keep_probabilities=True)
    cases = []
    for record in records:
        cases.append(_case(predictor, record))
        if progress:
            print(f"  {record.subject_id}: periosteal {cases[-1].truth['periosteal']:.1f} cm³", flush=True)
    outer = volume_threshold([c.periosteal for c in cases], [c.truth["periosteal"] for c in cases],
                             [c.voxel_cm3 for c in cases])
    inner = volume_threshold([c.endosteal for c in cases], [c.truth["trabecular"] for c in cases],
                             [c.voxel_cm3 for c in cases])
    checkpoints = predictor.checkpoints
    return Thresholds(
        periosteal=outer, endosteal=inner,
        checkpoints={"periosteal": sorted(m.sha256 for m in checkpoints.periosteal),
                     "endosteal": sorted(m.sha256 for m in checkpoints.endosteal)},
        subjects=[c.subject_id for c in cases],
        error_at_default=_errors(cases, 0.5, 0.5), error_fitted=_errors(cases, outer, inner),
        settings={k: v for k, v in settings.to_dict().items() if k in ("tta", "overlap", "blend", "windows", "precision")},
    )


def _short(shas: dict[str, list[str]]) -> str:
    return ", ".join(f"{k} {'/'.join(s[:8] for s in v) or '-'}" for k, v in shas.items())


def thresholds_option(values: Sequence[str], checkpoints: CheckpointSet) -> tuple[float, float]:
    """``segment --thresholds``: a file from ``femurseg thresholds`` (checked against the
    checkpoints) or two numbers ``P E``.

    Raises
    ------
    ThresholdsError
        If the file is unreadable or fitted for other checkpoints, or the values are not two probabilities.
    """
    if len(values) == 1:
        fitted = read_thresholds(values[0])
        fitted.check_matches(checkpoints, source=str(values[0]))
        return fitted.periosteal, fitted.endosteal
    try:
        pair = tuple(float(v) for v in values)
    except ValueError as error:
        raise ThresholdsError(f"--thresholds takes a file or two numbers, got {' '.join(values)}") from error
    if len(pair) != 2 or not all(0.0 < v < 1.0 for v in pair):
        raise ThresholdsError(f"--thresholds takes a file or two probabilities in (0, 1), got {' '.join(values)}")
    return pair  # type: ignore[return-value]
