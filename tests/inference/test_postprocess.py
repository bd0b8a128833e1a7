"""Postprocessing: components, holes, nesting and the minimum cortical shell."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from femurseg.inference.postprocess import Postprocessing, decode_probabilities, postprocess, shell_structure


def _ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing[::-1])) <= radius**2


def test_largest_component_holes_and_nesting():
    outer = _ball((32, 32, 32), (16, 16, 12), 8)
    outer |= _ball((32, 32, 32), (4, 4, 28), 2)          # a small false positive
    outer &= ~_ball((32, 32, 32), (16, 16, 12), 2)       # an enclosed hole
    inner = _ball((32, 32, 32), (16, 16, 12), 6) | _ball((32, 32, 32), (28, 28, 28), 2)  # one stray outside
    label = postprocess(outer, inner, (1.0, 1.0, 1.0))
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1, 2}
    assert label[4, 4, 28] == 0 and label[28, 28, 28] == 0
    assert label[16, 16, 12] == 2                      # hole filled, then trabecular
    assert ndimage.label(label > 0, np.ones((3, 3, 3)))[1] == 1
    assert not ((label == 2) & ~(label >= 1)).any()


def test_endosteal_outside_or_touching_periosteal_is_cut_to_a_cortex():
    outer = _ball((32, 32, 32), (16, 16, 16), 8)
    inner = _ball((32, 32, 32), (16, 16, 16), 11)        # larger than the bone
    label = postprocess(outer, inner, (1.0, 1.0, 1.0))
    periosteal = label >= 1
    assert (periosteal == outer).all()
    # every trabecular voxel's 6 neighbours are bone: the cortex is at least one voxel
    eroded = ndimage.binary_erosion(periosteal, structure=ndimage.generate_binary_structure(3, 1))
    assert not ((label == 2) & ~eroded).any()
    assert (label == 1).sum() > 0


@pytest.mark.parametrize("spacing", [(0.5, 0.5, 2.0), (1.0, 1.0, 1.0)])
def test_min_cortex_in_mm(spacing):
    shape = (24, 48, 48)
    outer = _ball(shape, (12, 24, 24), 10.0, spacing)
    label = postprocess(outer, outer.copy(), spacing, Postprocessing(min_cortex_mm=1.5))
    distance = ndimage.distance_transform_edt(label >= 1, sampling=spacing[::-1])
    assert distance[label == 2].min() >= 1.5           # no trabecular voxel within 1.5 mm of the surface
    assert shell_structure(spacing, 1.5).shape == tuple(2 * max(1, int(np.ceil(1.5 / s))) + 1 for s in spacing[::-1])


def test_field_of_view_edge_is_not_a_surface():
    outer = np.zeros((10, 16, 16), bool)
    outer[:, 4:12, 4:12] = True                       # a shaft cut by the scan at both ends
    label = postprocess(outer, outer.copy(), (1.0, 1.0, 1.0))
    assert (label[0, 5:11, 5:11] == 2).all() and (label[-1, 5:11, 5:11] == 2).all()


def test_bilateral_keeps_one_femur_per_side():
    shape = (20, 20, 48)
    outer = _ball(shape, (10, 10, 10), 6) | _ball(shape, (10, 10, 38), 5) | _ball(shape, (2, 2, 24), 1)
    both = postprocess(outer, outer.copy(), (1.0, 1.0, 1.0), Postprocessing(bilateral=True))
    one = postprocess(outer, outer.copy(), (1.0, 1.0, 1.0))
    assert ndimage.label(both > 0, np.ones((3, 3, 3)))[1] == 2 and (both[..., 30:] == 2).any()
    assert ndimage.label(one > 0, np.ones((3, 3, 3)))[1] == 1 and not (one[..., 30:] > 0).any()


def test_empty_prediction_stays_empty():
    empty = np.zeros((8, 8, 8), bool)
    assert not postprocess(empty, empty, (1.0, 1.0, 1.0)).any()


def test_decoding_threshold_and_argmax():
    p = np.array([0.2, 0.6, 0.9, 0.9])
    e = np.array([0.1, 0.1, 0.6, 0.3])
    outer, inner = decode_probabilities(p, e, "threshold")
    assert outer.tolist() == [False, True, True, True] and inner.tolist() == [False, False, True, False]
    outer, inner = decode_probabilities(p, e, "argmax")   # classes (bg, cortical, trabecular)
    assert outer.tolist() == [False, True, True, True] and inner.tolist() == [False, False, True, False]
    with pytest.raises(ValueError, match="decoding"):
        decode_probabilities(p, e, "vote")  # type: ignore[arg-type]


def test_bilateral_auto_keeps_a_second_femur_only_when_it_is_one():
    shape = (20, 20, 48)
    two = _ball(shape, (10, 10, 10), 6) | _ball(shape, (10, 10, 38), 5)
    # 4 mm voxels: centres 112 mm apart, the second holds 58 % of the first: two femora
    assert ndimage.label(postprocess(two, two.copy(), (4.0, 4.0, 4.0)) > 0, np.ones((3, 3, 3)))[1] == 2
    # 1 mm voxels: 28 mm apart, a fragment next to the femur: one femur
    assert ndimage.label(postprocess(two, two.copy(), (1.0, 1.0, 1.0)) > 0, np.ones((3, 3, 3)))[1] == 1
    small = _ball(shape, (10, 10, 10), 6) | _ball(shape, (10, 10, 40), 2)  # far away but small: a false positive
    assert ndimage.label(postprocess(small, small.copy(), (4.0, 4.0, 4.0)) > 0, np.ones((3, 3, 3)))[1] == 1
    above = _ball((40, 20, 48), (8, 10, 10), 6) | _ball((40, 20, 48), (31, 10, 38), 6)  # far, large, other levels
    assert ndimage.label(postprocess(above, above.copy(), (4.0, 4.0, 4.0)) > 0, np.ones((3, 3, 3)))[1] == 1
    never = postprocess(two, two.copy(), (4.0, 4.0, 4.0), Postprocessing(bilateral=False))
    assert ndimage.label(never > 0, np.ones((3, 3, 3)))[1] == 1


def test_components_below_bone_density_are_dropped_before_the_largest_is_kept():
    """A table called bone (large, mostly foam) must not win over the femur (smaller, dense)."""
    shape = (20, 20, 48)
    table, femur = _ball(shape, (10, 10, 12), 8), _ball(shape, (10, 10, 38), 5)
    hu = np.where(table, -600.0, np.where(femur, 400.0, 0.0))
    both = table | femur
    kept = postprocess(both, both.copy(), (1.0, 1.0, 1.0), image=hu)
    assert (kept[femur] > 0).all() and not (kept[table] > 0).any()
    assert (postprocess(both, both.copy(), (1.0, 1.0, 1.0))[table] > 0).all()  # without the scan: the largest
    off = postprocess(both, both.copy(), (1.0, 1.0, 1.0), Postprocessing(min_mean_hu=None), image=hu)
    assert (off[table] > 0).all()
    faint = postprocess(table, table.copy(), (1.0, 1.0, 1.0), image=hu)  # nothing passes: nothing is dropped
    assert (faint[table] > 0).all()
