"""Volumes of masks in cm³ and the relative volume error of a prediction.

``spacing`` is the voxel size in mm **in the array's axis order**. An array read
with ``SimpleITK.GetArrayFromImage`` is indexed ``(z, y, x)`` while
``image.GetSpacing()`` is ``(x, y, z)``: pass ``image.GetSpacing()[::-1]``.

Examples
--------
>>> import numpy as np
>>> mask = np.ones((10, 10, 10), bool)
>>> volume_cm3(mask, (1.0, 1.0, 1.0))
1.0
>>> volume_error_pct(np.ones(11), np.arange(11) < 10, 1.0)
10.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from femurseg.metrics.overlap import as_mask_pair

__all__ = ["Spacing", "check_spacing", "volume_cm3", "volume_error_pct"]

Spacing = Sequence[float]
"""Voxel size in mm, one value per array axis, in the array's axis order."""

_MM3_PER_CM3 = 1000.0


def check_spacing(spacing: Spacing | float, ndim: int) -> tuple[float, ...]:
    """Validate a voxel spacing and return it as a tuple of ``ndim`` floats.

    Parameters
    ----------
    spacing
        Voxel size in mm per axis (array order), or one number for isotropic voxels.
    ndim
        Number of array dimensions.

    Returns
    -------
    tuple of float
        The spacing, one positive finite value per axis.

    Raises
    ------
    ValueError
        If the length does not match ``ndim`` or a value is not positive and finite.

    Examples
    --------
    >>> check_spacing(0.5, 3)
    (0.5, 0.5, 0.5)
    """
    values = np.atleast_1d(np.asarray(spacing, dtype=float))
    if values.ndim != 1:
        raise ValueError(f"spacing must be a number or a flat sequence, got shape {values.shape}")
    if values.size == 1:
        values = np.repeat(values, ndim)
    if values.size != ndim:
        raise ValueError(f"spacing {tuple(values.tolist())} has {values.size} values for a {ndim}-D array")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing {tuple(values.tolist())} must be positive and finite (mm)")
    return tuple(float(v) for v in values)


def volume_cm3(mask: npt.ArrayLike, spacing: Spacing | float) -> float:
    """Volume of a binary mask in cm³.

    Parameters
    ----------
    mask
        Binary mask (non-zero is foreground).
    spacing
        Voxel size in mm per axis, in the array's axis order.

    Returns
    -------
    float
        Number of foreground voxels times the voxel volume, in cm³ (mL).

    Examples
    --------
    >>> volume_cm3([[1, 1], [0, 1]], (2.0, 5.0))
    0.03
    """
    arr = np.asarray(mask)
    voxel_mm3 = float(np.prod(check_spacing(spacing, arr.ndim)))
    return int(np.count_nonzero(arr)) * voxel_mm3 / _MM3_PER_CM3


def volume_error_pct(pred: npt.ArrayLike, ref: npt.ArrayLike, spacing: Spacing | float) -> float:
    """Signed relative volume error ``100 (V_pred - V_ref) / V_ref`` in percent.

    Parameters
    ----------
    pred, ref
        Binary masks of the same shape.
    spacing
        Voxel size in mm per axis, in the array's axis order. (It cancels out,
        but is validated so that the call reads like the other metrics.)

    Returns
    -------
    float
        Positive for over-segmentation. ``0.0`` when both masks are empty and
        ``inf`` when only the reference is empty.

    Examples
    --------
    >>> volume_error_pct([1, 1, 1, 0], [1, 1, 0, 0], 1.0)
    50.0
    """
    pred_arr, ref_arr = as_mask_pair(pred, ref)
    check_spacing(spacing, pred_arr.ndim)
    return _relative_error_pct(int(np.count_nonzero(pred_arr)), int(np.count_nonzero(ref_arr)))


def _relative_error_pct(pred_count: float, ref_count: float) -> float:
    if ref_count == 0:
        return 0.0 if pred_count == 0 else float("inf")
    return 100.0 * (pred_count - ref_count) / ref_count
