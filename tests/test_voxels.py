"""The one size normaliser and the one bounding box (femurseg/voxels.py)."""

import numpy as np
import pytest

from femurseg.voxels import as_triple, bounding_box


def test_as_triple_accepts_ints_and_sequences_and_names_bad_values():
    assert as_triple(48) == (48, 48, 48)
    assert as_triple([32, 32, 16]) == (32, 32, 16) and as_triple(np.int64(5)) == (5, 5, 5)
    assert all(type(v) is int for v in as_triple((np.int32(2), 3.0, 4)))
    with pytest.raises(ValueError, match="patch_size must be a positive int or three positive ints"):
        as_triple((32, 32), "patch_size")
    with pytest.raises(ValueError, match="stride"):
        as_triple(0, "stride")


def test_bounding_box_matches_the_extent_of_the_voxels():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((7, 9, 11)) > 0.97
        if not mask.any():
            continue
        where = np.nonzero(mask)
        expected = tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)
        assert bounding_box(mask) == expected
        grown = bounding_box(mask, margin=2)
        assert grown == tuple(slice(max(0, e.start - 2), min(n, e.stop + 2)) for e, n in zip(expected, mask.shape))


def test_bounding_box_union_per_axis_margin_and_empty():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[2, 3, 4] = True
    b[6, 1, 9] = True
    assert bounding_box(a, b) == (slice(2, 7), slice(1, 4), slice(4, 10))
    assert bounding_box(a, margin=(0, 1, 5)) == (slice(2, 3), slice(2, 5), slice(0, 10))
    assert bounding_box(np.zeros((4, 4), bool)) is None and bounding_box(a[:, 1::2]) == (slice(2, 3), slice(1, 2), slice(4, 5))  # a strided view
    with pytest.raises(ValueError, match="differ in shape"):
        bounding_box(a, b[:5])
    with pytest.raises(ValueError, match="one value per axis"):
        bounding_box(a, margin=(1, 2))
