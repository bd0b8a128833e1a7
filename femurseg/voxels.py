"""Voxel-grid primitives shared by every floor: three-axis sizes and bounding boxes.

``as_triple`` is the one normaliser of sizes given as an int or one value per axis
(patch sizes, strides, kernel sizes; TorchIO's ``to_tuple``), and ``bounding_box`` the
one bounding box of a mask (``scipy.ndimage.find_objects``), grown by a margin and
clipped to the array.

Examples
--------
>>> as_triple(96)
(96, 96, 96)
>>> mask = np.zeros((6, 6, 6), bool); mask[2:4, 1, 3:5] = True
>>> bounding_box(mask, margin=1)
(slice(1, 5, None), slice(0, 3, None), slice(2, 6, None))
>>> bounding_box(np.zeros((2, 2), bool)) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import numpy.typing as npt

__all__ = ["Size3", "as_triple", "bounding_box"]

#: an int for all three axes or one value per axis, e.g. ``(1, 2, 2)`` for thick slices
Size3 = Union[int, Sequence[int]]


def as_triple(value: Size3, name: str = "size") -> tuple[int, int, int]:
    """``3 → (3, 3, 3)``; a sequence of three positive ints is returned as a tuple of ints.

    Parameters
    ----------
    value
        An int for all three axes, or three values (a list from a config is fine).
    name
        What the value is, for the error message (``"patch_size"``).

    Raises
    ------
    ValueError
        If a sequence does not hold exactly three values, or a value is below 1.
    """
    values = (int(value),) * 3 if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    if len(values) != 3 or any(v < 1 for v in values):
        raise ValueError(f"{name} must be a positive int or three positive ints, got {value!r}")
    return values  # type: ignore[return-value]


def bounding_box(
    *masks: npt.ArrayLike, margin: int | Sequence[int] = 0
) -> tuple[slice, ...] | None:
    """Slices of the bounding box of the union of ``masks``, grown by ``margin`` and clipped to the array.

    Parameters
    ----------
    masks
        One or more boolean arrays of one shape (any number of dimensions); the box
        covers their union.
    margin
        Voxels added on both sides: one int for every axis, or one per axis (in the
        array's axis order).

    Returns
    -------
    tuple of slice or None
        One ``slice(start, stop)`` per axis (``stop`` exclusive), or ``None`` when every
        mask is empty.

    Raises
    ------
    ValueError
        If no mask is given, the masks differ in shape, or ``margin`` has the wrong length.
    """
    if not masks:
        raise ValueError("bounding_box needs at least one mask")
    union = np.asarray(masks[0], dtype=bool)
    for other in masks[1:]:
        other = np.asarray(other, dtype=bool)
        if other.shape != union.shape:
            raise ValueError(f"masks differ in shape: {union.shape} and {other.shape}")
        union = union | other
    margins = (margin,) * union.ndim if isinstance(margin, (int, np.integer)) else tuple(margin)
    if len(margins) != union.ndim:
        raise ValueError(f"margin {margin!r} does not have one value per axis of a {union.ndim}-D mask")
    from scipy import ndimage  # imported here: as_triple is used where scipy is not needed

    found = ndimage.find_objects(union.view(np.uint8))  # one label: the union's box, or [] when empty
    if not found:
        return None
    return tuple(slice(max(0, box.start - int(m)), min(size, box.stop + int(m)))
                 for box, m, size in zip(found[0], margins, union.shape))
