"""Overlap metrics of two binary masks: Dice, IoU, sensitivity and precision.

All functions take boolean (or 0/1) arrays of the same shape and count voxels, so
they do not depend on the voxel spacing.

Empty masks (see ``docs/evaluation.md``):

- both masks empty: every overlap metric is ``1.0`` (the prediction agrees
  perfectly with the reference; MONAI's ``compute_dice(..., ignore_empty=False)``
  also gives 1);
- one mask empty: Dice and IoU are ``0.0``; sensitivity is ``nan`` when the
  reference is empty (there is nothing to detect) and precision is ``nan`` when
  the prediction is empty (nothing was predicted), as in MONAI's confusion-matrix
  metrics.

Examples
--------
>>> import numpy as np
>>> ref = np.zeros((4, 4, 4), bool); ref[1:3, 1:3, 1:3] = True
>>> pred = np.zeros_like(ref); pred[1:3, 1:3, 1:2] = True
>>> dice(pred, ref), iou(pred, ref), sensitivity(pred, ref), precision(pred, ref)
(0.6666666666666666, 0.5, 0.5, 1.0)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["OverlapCounts", "as_mask_pair", "overlap_counts", "dice", "iou", "sensitivity", "precision", "overlap_metrics"]


class OverlapCounts(NamedTuple):
    """Voxel counts of a prediction against a reference."""

    true_positive: int
    pred_total: int
    ref_total: int

    @property
    def union(self) -> int:
        """Voxels in either mask."""
        return self.pred_total + self.ref_total - self.true_positive


def as_mask_pair(pred: npt.ArrayLike, ref: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Convert two masks to boolean arrays and check that their shapes match.

    Parameters
    ----------
    pred, ref
        Binary masks (``bool`` or any numeric type; non-zero is foreground).

    Returns
    -------
    tuple of numpy.ndarray
        ``(pred, ref)`` as ``bool`` arrays.

    Raises
    ------
    ValueError
        If the shapes differ or the arrays are 0-dimensional.

    Examples
    --------
    >>> p, r = as_mask_pair([[0, 1]], [[1, 1]])
    >>> p.dtype, r.shape
    (dtype('bool'), (1, 2))
    """
    pred_arr = np.asarray(pred)
    ref_arr = np.asarray(ref)
    if pred_arr.shape != ref_arr.shape:
        raise ValueError(f"prediction shape {pred_arr.shape} differs from reference shape {ref_arr.shape}")
    if pred_arr.ndim == 0:
        raise ValueError("masks must have at least one dimension, got 0-d arrays")
    pred_arr = pred_arr if pred_arr.dtype == bool else pred_arr != 0
    ref_arr = ref_arr if ref_arr.dtype == bool else ref_arr != 0
    return pred_arr, ref_arr


def overlap_counts(pred: npt.ArrayLike, ref: npt.ArrayLike) -> OverlapCounts:
    """Count true positives and the foreground voxels of both masks.

    Parameters
    ----------
    pred, ref
        Binary masks of the same shape.

    Returns
    -------
    OverlapCounts
        ``(true_positive, pred_total, ref_total)``.

    Examples
    --------
    >>> overlap_counts([1, 1, 0], [0, 1, 1])
    OverlapCounts(true_positive=1, pred_total=2, ref_total=2)
    """
    pred_arr, ref_arr = as_mask_pair(pred, ref)
    return OverlapCounts(
        true_positive=int(np.count_nonzero(pred_arr & ref_arr)),
        pred_total=int(np.count_nonzero(pred_arr)),
        ref_total=int(np.count_nonzero(ref_arr)),
    )


def _ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    if both_empty:
        return 1.0
    if denominator == 0:
        return float("nan")
    return numerator / denominator


def dice(pred: npt.ArrayLike, ref: npt.ArrayLike) -> float:
    """Dice similarity coefficient ``2 |P ∩ R| / (|P| + |R|)``.

    Parameters
    ----------
    pred, ref
        Binary masks of the same shape.

    Returns
    -------
    float
        In ``[0, 1]``; ``1.0`` when both masks are empty, ``0.0`` when only one is.

    Examples
    --------
    >>> dice([1, 1, 0, 0], [0, 1, 1, 0])
    0.5
    """
    c = overlap_counts(pred, ref)
    both_empty = c.pred_total == 0 and c.ref_total == 0
    return _ratio(2 * c.true_positive, c.pred_total + c.ref_total, both_empty)


def iou(pred: npt.ArrayLike, ref: npt.ArrayLike) -> float:
    """Intersection over union (Jaccard index) ``|P ∩ R| / |P ∪ R|``.

    Parameters
    ----------
    pred, ref
        Binary masks of the same shape.

    Returns
    -------
    float
        In ``[0, 1]``; ``1.0`` when both masks are empty, ``0.0`` when only one is.

    Examples
    --------
    >>> iou([1, 1, 0, 0], [0, 1, 1, 0])
    0.3333333333333333
    """
    c = overlap_counts(pred, ref)
    return _ratio(c.true_positive, c.union, c.union == 0)


def sensitivity(pred: npt.ArrayLike, ref: npt.ArrayLike) -> float:
    """Sensitivity (recall, true-positive rate) ``|P ∩ R| / |R|``.

    Parameters
    ----------
    pred, ref
        Binary masks of the same shape.

    Returns
    -------
    float
        In ``[0, 1]``; ``1.0`` when both masks are empty, ``nan`` when only the
        reference is empty.

    Examples
    --------
    >>> sensitivity([1, 0, 0, 0], [1, 1, 0, 0])
    0.5
    """
    c = overlap_counts(pred, ref)
    return _ratio(c.true_positive, c.ref_total, c.union == 0)


def precision(pred: npt.ArrayLike, ref: npt.ArrayLike) -> float:
    """Precision (positive predictive value) ``|P ∩ R| / |P|``.

    Parameters
    ----------
    pred, ref
        Binary masks of the same shape.

    Returns
    -------
    float
        In ``[0, 1]``; ``1.0`` when both masks are empty, ``nan`` when only the
        prediction is empty.

    Examples
    --------
    >>> precision([1, 1, 0, 0], [1, 0, 0, 0])
    0.5
    """
    c = overlap_counts(pred, ref)
    return _ratio(c.true_positive, c.pred_total, c.union == 0)


def overlap_metrics(pred: npt.ArrayLike, ref: npt.ArrayLike) -> dict[str, float]:
    """All overlap metrics from one pass over the masks.

    Parameters
    ----------
    pred, ref
        Binary masks of the same shape.

    Returns
    -------
    dict of str to float
        Keys ``dice``, ``iou``, ``sensitivity``, ``precision`` with the same
        values (and empty-mask conventions) as the single functions.

    Examples
    --------
    >>> overlap_metrics([1, 1, 0, 0], [0, 1, 1, 0])["dice"]
    0.5
    """
    c = overlap_counts(pred, ref)
    both_empty = c.union == 0
    return {
        "dice": _ratio(2 * c.true_positive, c.pred_total + c.ref_total, both_empty),
        "iou": _ratio(c.true_positive, c.union, both_empty),
        "sensitivity": _ratio(c.true_positive, c.ref_total, both_empty),
        "precision": _ratio(c.true_positive, c.pred_total, both_empty),
    }
