"""Partial-volume refinement of the two contours on the scan's own grid.

The networks of the quick start see the scan on a 2 mm grid, where the cortex is one
to three voxels thick; their 0.5 iso-surfaces scatter by a few tenths of a millimetre
from subject to subject, which is a few per cent of cortical volume (the small
difference of two large volumes). The scan itself holds the answer at its own
resolution wherever the cortex is thick enough to reach its full density, and says
where it is not. :func:`refine_contours` uses both facts, as QCT software does:

1. **Periosteal surface at half maximum where the cortex is resolved.** A voxel on
   either side of the network's periosteal surface is bone when its HU is above the
   midpoint between the local cortical peak (the brightest cortex within two voxels)
   and the local soft-tissue level (the mean of the soft tissue two to four voxels
   outside). For a blurred step edge with a symmetric point-spread function the
   midpoint is crossed exactly at the surface, so a voxel's centre is inside when its
   value is above it. This is applied only where the cortex is *resolved*: the local
   peak reaches ``resolved`` × the cortical plateau (the 95th percentile of the
   predicted cortex, which the shaft's thick cortex sets) and the network's cortex
   there is at least ``min_thickness_mm`` thick. A thin cortex blurs to a lower, wider peak whose half maximum lies outside
   the bone, so the network's surface is kept there.
2. **Endosteal surface one voxel inside where the cortex is not resolved.** Where the
   local cortical peak stays below ``unresolved`` × the plateau, the cortex is
   thinner than a voxel; the endosteal mask then grows (by one voxel layer) up to the
   periosteal mask eroded by one voxel, the minimum cortical shell that
   :func:`~femurseg.inference.postprocess.postprocess` keeps anyway and that the
   reference labels use for a cortex thinner than a voxel (``docs/synthetic.md``).

Everything else is left to the networks. The masks are re-nested by
:func:`~femurseg.inference.postprocess.postprocess` afterwards. Arrays are
``(z, y, x)`` with the spacing given as ``(x, y, z)`` mm, as in
:mod:`femurseg.inference.postprocess`.

Examples
--------
A 9 mm plate of cortical bone (1000 HU) in water, blurred, which a network drew one
voxel short on one face and one voxel long on the other; the half-maximum rule
restores the plate:

>>> from scipy import ndimage
>>> truth = np.zeros((20, 12, 12), bool); truth[5:14] = True
>>> hu = ndimage.gaussian_filter(np.where(truth, 1000.0, 0.0), 0.7)
>>> drawn = np.zeros_like(truth); drawn[6:15] = True
>>> outer, inner = refine_contours(hu, drawn, np.zeros_like(drawn), (1.0, 1.0, 1.0))
>>> bool((outer == truth).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from femurseg.inference.postprocess import bounding_box

__all__ = ["Refinement", "refine_contours"]

_CROSS = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class Refinement:
    """Settings of :func:`refine_contours`.

    Parameters
    ----------
    resolved
        Local cortical peak, as a fraction of the cortical plateau, from which the
        cortex counts as resolved and the periosteal surface goes to half maximum.
    unresolved
        Local cortical peak fraction below which the cortex counts as thinner than a
        voxel and the endosteal surface goes one voxel inside the periosteal one.
    min_thickness_mm
        The half-maximum rule applies only where the predicted cortex is at least this
        thick (distance from the periosteal surface to the endosteal mask).
    soft_tissue_max_hu
        Voxels outside the femur brighter than this (other bone, contrast) do not
        count towards the soft-tissue level.
    plateau_percentile
        Percentile of the predicted cortex's HU taken as the cortical plateau.
    min_plateau_hu
        A plateau below this shows no resolved cortex anywhere in the scan (nothing to
        measure the peaks against); the contours are then left as they are.
    """

    resolved: float = 0.9
    unresolved: float = 0.74
    min_thickness_mm: float = 2.5
    soft_tissue_max_hu: float = 200.0
    plateau_percentile: float = 95.0
    min_plateau_hu: float = 700.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.unresolved <= 1.0 or not 0.0 < self.resolved <= 1.0:
            raise ValueError(f"resolved and unresolved are fractions of the cortical plateau in [0, 1], "
                             f"got {self.resolved} and {self.unresolved}")
        if self.min_thickness_mm < 0:
            raise ValueError(f"min_thickness_mm must be ≥ 0, got {self.min_thickness_mm}")
        if not 50.0 <= self.plateau_percentile <= 100.0:
            raise ValueError(f"plateau_percentile must be in [50, 100], got {self.plateau_percentile}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, written to ``report.json``."""
        return asdict(self)


def _local_mean(values: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``values`` over ``mask`` in a ``size``³ window; NaN where the window holds none."""
    total = ndimage.uniform_filter(np.where(mask, values, 0.0).astype(np.float32), size)
    count = ndimage.uniform_filter(mask.astype(np.float32), size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 1e-3, total / count, np.nan)


def _local_peak(values: np.ndarray, mask: np.ndarray, radius: int = 2) -> np.ndarray:
    """Maximum of ``values`` over ``mask`` within ``radius`` voxels (chessboard); -inf where none."""
    return ndimage.maximum_filter(np.where(mask, values, -np.inf).astype(np.float32), size=2 * radius + 1)


def refine_contours(
    hu: np.ndarray,
    periosteal: np.ndarray,
    endosteal: np.ndarray,
    spacing: Sequence[float],
    settings: Refinement | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Refine nested periosteal and endosteal masks with the scan's intensities.

    Parameters
    ----------
    hu
        The scan in HU, ``(z, y, x)``, on the masks' grid.
    periosteal, endosteal
        Boolean masks ``(z, y, x)``, endosteal inside periosteal (as
        :func:`~femurseg.inference.postprocess.postprocess` returns them).
    spacing
        Voxel spacing ``(x, y, z)`` in mm.
    settings
        See :class:`Refinement`; defaults when ``None``.

    Returns
    -------
    tuple of numpy.ndarray
        Refined boolean periosteal and endosteal masks; run
        :func:`~femurseg.inference.postprocess.postprocess` on them to nest and clean.
    """
    settings = settings or Refinement()
    if not hu.shape == periosteal.shape == endosteal.shape:
        raise ValueError(f"shapes differ: scan {hu.shape}, masks {periosteal.shape} and {endosteal.shape}")
    outer, inner = periosteal.astype(bool), endosteal.astype(bool) & periosteal.astype(bool)
    cortex = outer & ~inner
    if not cortex.any():
        return outer.copy(), inner.copy()
    box = bounding_box(outer, margin=6)  # the widest reach below: 1 (band) + 4 (soft-tissue window) voxels
    hu_box = np.asarray(hu[box], dtype=np.float32)
    outer_box, inner_box = outer[box].copy(), inner[box].copy()
    plateau = float(np.percentile(hu_box[cortex[box]], settings.plateau_percentile))
    if plateau < settings.min_plateau_hu:
        return outer.copy(), inner.copy()

    # 1. periosteal surface at half maximum where the cortex is resolved and thick
    peak = _local_peak(hu_box, outer_box & ~inner_box)
    beyond = ndimage.binary_dilation(outer_box, _CROSS, iterations=4) & ~ndimage.binary_dilation(outer_box, _CROSS)
    soft = _local_mean(hu_box, beyond & (hu_box < settings.soft_tissue_max_hu), 9)
    band = ndimage.binary_dilation(outer_box, _CROSS) & ~ndimage.binary_erosion(outer_box, _CROSS, border_value=1)
    if inner_box.any():
        depth = ndimage.distance_transform_edt(~inner_box, sampling=tuple(spacing)[::-1])
    else:
        depth = np.full(inner_box.shape, np.inf)
    resolved = band & np.isfinite(soft) & (peak >= settings.resolved * plateau) & (depth >= settings.min_thickness_mm)
    refined_outer = outer_box.copy()
    refined_outer[resolved] = hu_box[resolved] > 0.5 * (peak[resolved] + soft[resolved])

    # 2. endosteal surface one voxel inside where the cortex is thinner than a voxel
    refined_inner = inner_box & refined_outer
    if settings.unresolved > 0 and refined_inner.any():
        peak = _local_peak(hu_box, refined_outer & ~refined_inner)
        second = ndimage.binary_erosion(refined_outer, _CROSS, border_value=1) & ~refined_inner
        grow = second & ndimage.binary_dilation(refined_inner, _CROSS) & (peak < settings.unresolved * plateau)
        refined_inner |= grow

    out_outer, out_inner = outer.copy(), inner.copy()
    out_outer[box], out_inner[box] = refined_outer, refined_inner
    return out_outer, out_inner

