"""From probabilities to a clean 0/1/2 label map.

The ensemble's periosteal and endosteal probabilities are decoded into masks
(:func:`decode_probabilities`), then :func:`postprocess` applies the anatomical
priors of a femur:

1. the periosteal mask keeps its largest connected component (26-connectivity), or
   its two largest for a bilateral scan (each side's femur, the second kept only if
   it holds at least ``min_side_fraction`` of the first's voxels);
2. enclosed holes are filled (3D);
3. the endosteal mask is forced inside the periosteal one, keeps, per femur, the
   component that overlaps it most, and has its holes filled;
4. a minimum cortical shell: the endosteal mask is cut back to the periosteal mask
   eroded by ``min_cortex_mm`` (at least one voxel along every axis), so that the
   cortical compartment is never zero-thickness. The scan's own edges do not count as
   a surface (a shaft cut by the field of view stays open).

Arrays are in SimpleITK's ``(z, y, x)`` order with the spacing given as ``(x, y, z)``
mm, as ``sitk.GetArrayFromImage`` and ``image.GetSpacing()`` return them.

Examples
--------
>>> periosteal = np.zeros((20, 20, 20), bool); periosteal[4:16, 4:16, 4:16] = True
>>> label = postprocess(periosteal, periosteal.copy(), (1.0, 1.0, 1.0))
>>> int((label == 2).sum()), int((label == 1).sum())    # a 1-voxel cortex remains
(1000, 728)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from femurseg.labels import compose
from femurseg.voxels import bounding_box

__all__ = ["Postprocessing", "postprocess", "decode_probabilities", "largest_components", "shell_structure"]

Decoding = Literal["threshold", "argmax"]


@dataclass(frozen=True)
class Postprocessing:
    """Postprocessing settings.

    Parameters
    ----------
    largest_component
        Keep only the largest periosteal component (two on a bilateral scan).
    bilateral
        ``"auto"`` (default): keep the second-largest periosteal component too when it
        is a second femur, that is when it holds at least ``auto_side_fraction`` of
        the first's voxels, its centre lies at least ``auto_side_distance_mm`` from
        the first's (the two femora of a hip CT are 150-250 mm apart; a fragment of
        one femur is smaller or closer), and the two span the same axial levels
        (slices overlapping by half of the shorter one; an iliac wing does not).
        ``True``: always keep the two largest components (the second with at least
        ``min_side_fraction`` of the first's voxels); ``False``: one femur.
    min_side_fraction
        With ``bilateral=True``, the second component is kept if it has at least this
        fraction of the first's voxels.
    auto_side_fraction, auto_side_distance_mm
        The tests of ``bilateral="auto"``.
    min_mean_hu
        Before the largest components are chosen, drop periosteal components whose
        mean intensity is below this (HU; needs the scan): a femur's mean is far above
        (real femur cross-sections: 92-1400 HU, 1st percentile 136), while a patient
        table or a fat plane called bone is not. If no component passes, none is
        dropped. ``None`` switches the rule off.
    fill_holes
        Fill enclosed holes of both masks.
    min_cortex_mm
        Minimum cortical thickness in mm; ``0`` means one voxel along each axis
        (the least that keeps the endosteal contour strictly inside).
    thresholds
        Probability thresholds of the periosteal and endosteal maps of binary
        models (volume-calibrated ones come from ``femurseg thresholds``, see
        :mod:`femurseg.inference.thresholds`); a 3-class model is decoded by argmax.
    """

    largest_component: bool = True
    bilateral: bool | Literal["auto"] = "auto"
    min_side_fraction: float = 0.2
    auto_side_fraction: float = 0.35
    auto_side_distance_mm: float = 90.0
    min_mean_hu: float | None = 50.0
    fill_holes: bool = True
    min_cortex_mm: float = 0.0
    thresholds: tuple[float, float] = (0.5, 0.5)

    def __post_init__(self) -> None:
        values = tuple(float(t) for t in self.thresholds)
        if len(values) != 2 or not all(0.0 < t < 1.0 for t in values):
            raise ValueError(f"thresholds must be two probabilities in (0, 1), got {self.thresholds}")
        if self.bilateral not in (True, False, "auto"):
            raise ValueError(f"bilateral must be True, False or 'auto', got {self.bilateral!r}")
        object.__setattr__(self, "thresholds", values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, written to ``report.json``."""
        return asdict(self)


def decode_probabilities(
    periosteal: np.ndarray, endosteal: np.ndarray, decoding: Decoding = "threshold",
    thresholds: tuple[float, float] = (0.5, 0.5),
) -> tuple[np.ndarray, np.ndarray]:
    """Masks from the periosteal ``P(label ≥ 1)`` and endosteal ``P(label = 2)`` maps.

    Parameters
    ----------
    periosteal, endosteal
        Probability maps of the same shape.
    decoding
        ``threshold``: each map at its threshold (two binary models); ``argmax``:
        the class of highest probability among background ``1 - P``, cortical
        ``P - E`` and trabecular ``E`` (one 3-class model).
    thresholds
        Periosteal and endosteal thresholds for ``threshold`` decoding.

    Returns
    -------
    tuple of numpy.ndarray
        Boolean periosteal and endosteal masks (endosteal not yet nested).
    """
    if periosteal.shape != endosteal.shape:
        raise ValueError(f"probability maps differ in shape: {periosteal.shape} vs {endosteal.shape}")
    if decoding == "threshold":
        return periosteal > thresholds[0], endosteal > thresholds[1]
    if decoding == "argmax":
        if tuple(thresholds) != (0.5, 0.5):
            raise ValueError("thresholds apply to binary models; a 3-class model is decoded by argmax")
        background = 1.0 - periosteal
        cortical = periosteal - endosteal
        trabecular_wins = (endosteal > cortical) & (endosteal > background)
        cortical_wins = (cortical >= endosteal) & (cortical > background)
        return cortical_wins | trabecular_wins, trabecular_wins
    raise ValueError(f"unknown decoding {decoding!r}; valid: threshold, argmax")


def largest_components(mask: np.ndarray, count: int = 1, min_fraction: float = 0.0) -> np.ndarray:
    """Keep the ``count`` largest 26-connected components of a boolean mask.

    Components after the first are kept only with at least ``min_fraction`` of
    the first's size.
    """
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n <= count and min_fraction == 0.0:
        return mask.astype(bool, copy=True)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1][:count]
    keep = [i + 1 for i in order if sizes[i] >= min_fraction * sizes[order[0]]]
    return np.isin(labels, keep)


def _dense_components(mask: np.ndarray, image: np.ndarray, min_mean: float) -> np.ndarray:
    """The components of ``mask`` whose mean intensity is at least ``min_mean`` (all of them if none is)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n < 1:
        return mask
    means = np.asarray(ndimage.mean(image, labels, np.arange(1, n + 1)))
    keep = np.flatnonzero(means >= min_mean) + 1
    return np.isin(labels, keep) if len(keep) else mask


def _femora(mask: np.ndarray, spacing: Sequence[float], min_fraction: float, min_distance_mm: float) -> np.ndarray:
    """The largest component, plus the second when it is a second femur (large enough and far enough away)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return mask.astype(bool, copy=True)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    keep = [order[0] + 1]
    if n > 1 and sizes[order[1]] >= min_fraction * sizes[order[0]]:
        first, second = ndimage.center_of_mass(mask, labels, [order[0] + 1, order[1] + 1])
        scale = np.asarray(spacing, float)[::-1]  # (z, y, x) mm per voxel
        far = float(np.linalg.norm((np.asarray(first) - np.asarray(second)) * scale)) >= min_distance_mm
        # the two femora of one scan span the same axial levels (an iliac wing or a table does not)
        boxes = ndimage.find_objects(labels)
        (a, b) = (boxes[order[0]][0], boxes[order[1]][0])
        overlap = min(a.stop, b.stop) - max(a.start, b.start)
        if far and overlap >= 0.5 * min(a.stop - a.start, b.stop - b.start):
            keep.append(order[1] + 1)
    return np.isin(labels, keep)


def shell_structure(spacing: Sequence[float], min_cortex_mm: float) -> np.ndarray:
    """Ellipsoidal structuring element ``(z, y, x)`` for a shell of ``min_cortex_mm``.

    Radii are ``ceil(min_cortex_mm / spacing)`` voxels per axis, at least one; with a
    radius of one voxel on every axis it is the 6-connected cross.
    """
    radii = [max(1, math.ceil(min_cortex_mm / s - 1e-9)) for s in spacing[::-1]]
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
    distance = sum((g / r) ** 2 for g, r in zip(grids, radii))
    return np.asarray(distance <= 1.0 + 1e-9)


def postprocess(
    periosteal: np.ndarray,
    endosteal: np.ndarray,
    spacing: Sequence[float],
    settings: Postprocessing | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """Clean and nest the two masks into the 0/1/2 label map.

    Parameters
    ----------
    periosteal, endosteal
        Boolean masks ``(z, y, x)``.
    spacing
        Voxel spacing ``(x, y, z)`` in mm.
    settings
        See :class:`Postprocessing`; defaults when ``None``.
    image
        The scan in HU ``(z, y, x)``, for ``settings.min_mean_hu`` (skipped without it).

    Returns
    -------
    numpy.ndarray
        ``uint8`` ``(z, y, x)``: 0 background, 1 cortical, 2 trabecular, with
        trabecular ⊂ periosteal and a cortical shell of at least ``min_cortex_mm``.
    """
    settings = settings or Postprocessing()
    if periosteal.shape != endosteal.shape:
        raise ValueError(f"masks differ in shape: {periosteal.shape} vs {endosteal.shape}")
    label = np.zeros(periosteal.shape, np.uint8)
    if not periosteal.any():
        return label
    structure = shell_structure(spacing, settings.min_cortex_mm)
    box = bounding_box(periosteal, margin=max(structure.shape) // 2 + 1)
    outer = periosteal[box].astype(bool)
    inner = endosteal[box].astype(bool) & outer

    if settings.largest_component:
        if image is not None and settings.min_mean_hu is not None:
            outer = _dense_components(outer, image[box], settings.min_mean_hu)
        if settings.bilateral == "auto":
            outer = _femora(outer, spacing, settings.auto_side_fraction, settings.auto_side_distance_mm)
        else:
            count = 2 if settings.bilateral else 1
            outer = largest_components(outer, count, settings.min_side_fraction if settings.bilateral else 0.0)
    if settings.fill_holes:
        outer = ndimage.binary_fill_holes(outer)
    inner &= outer
    if settings.largest_component:
        inner = _main_inner_component(inner, outer)
    if settings.fill_holes:
        inner = ndimage.binary_fill_holes(inner)
    # border_value=1: the field of view's edge is not a bone surface
    inner &= ndimage.binary_erosion(outer, structure=structure, border_value=1)

    label[box] = compose(outer, inner)
    return label


def _main_inner_component(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Per periosteal component, keep the endosteal component that overlaps it most."""
    femurs, n_femurs = ndimage.label(outer, structure=np.ones((3, 3, 3), bool))
    parts, n_parts = ndimage.label(inner, structure=np.ones((3, 3, 3), bool))
    if n_parts <= 1:
        return inner
    keep = []
    for femur in range(1, n_femurs + 1):
        counts = np.bincount(parts[femurs == femur], minlength=n_parts + 1)[1:]
        if counts.any():
            keep.append(int(np.argmax(counts)) + 1)
    return np.isin(parts, keep)

