"""Partial-volume refinement: half maximum on a resolved cortex, one-voxel shell on a thin one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from femurseg.inference.postprocess import postprocess
from femurseg.inference.refine import Refinement, refine_contours

CROSS = ndimage.generate_binary_structure(3, 1)
SPACING = (1.0, 1.0, 1.0)


def render(outer_mm: float, inner_mm: float, shape=(16, 40, 40), tube: bool = True, cortex_hu: float = 1500.0,
           inner_hu: float = 250.0, soft_hu: float = 40.0, blur: float = 0.8, seed: int = 0,
           lower_inner_mm: float | None = None):
    """A blurred, noisy bone (tube along z, or a sphere) with its voxel-centre label masks.

    Partial volume by 4³ supersampling, then a Gaussian point-spread function of ``blur``
    voxels and 10 HU noise, like the phantom's scanner; ``(z, y, x)``, 1 mm voxels. With
    ``lower_inner_mm`` the lower half (in z) has that inner radius instead.
    """
    fine = 4
    grids = np.meshgrid(*[(np.arange(n * fine) + 0.5) / fine - 0.5 for n in shape], indexing="ij")
    centre = [(n - 1) / 2 for n in shape]
    axes = (1, 2) if tube else (0, 1, 2)
    radius = np.sqrt(sum((grids[a] - centre[a]) ** 2 for a in axes))
    inner_fine = inner_mm if lower_inner_mm is None else np.where(grids[0] < centre[0], lower_inner_mm, inner_mm)
    hu_fine = np.where(radius < inner_fine, inner_hu, np.where(radius < outer_mm, cortex_hu, soft_hu))
    hu = hu_fine.reshape(shape[0], fine, shape[1], fine, shape[2], fine).mean(axis=(1, 3, 5))
    hu = ndimage.gaussian_filter(hu, blur, mode="nearest") + np.random.default_rng(seed).normal(0, 10, shape)
    z, y, x = np.indices(shape)
    centres = np.sqrt(sum((g - c) ** 2 for g, c, a in zip((z, y, x), centre, range(3)) if a in axes))
    inner = inner_mm if lower_inner_mm is None else np.where(z < centre[0], lower_inner_mm, inner_mm)
    return hu.astype(np.float32), centres < outer_mm, centres < inner


def test_periosteal_surface_of_a_resolved_cortex_goes_back_to_half_maximum():
    # a shaft: 4 mm cortex, which the network drew one voxel inside all round
    hu, outer, inner = render(outer_mm=12.3, inner_mm=8.3)
    drawn = ndimage.binary_erosion(outer, CROSS, border_value=1)
    assert (outer & ~drawn).sum() > 0.1 * outer.sum()
    refined_outer, refined_inner = refine_contours(hu, drawn, inner, SPACING)
    label = postprocess(refined_outer, refined_inner, SPACING)
    assert ((label >= 1) != outer).sum() <= 0.01 * outer.sum()
    # the scan's first and last slices are not a surface: the shaft stays open there
    for edge in (0, -1):
        assert ((label[edge] >= 1) != outer[edge]).sum() <= 0.02 * outer[edge].sum()
    # a resolved cortex keeps its endosteal surface
    assert ((label == 2) == inner).all()


def test_periosteal_surface_drawn_too_large_shrinks_back():
    hu, outer, inner = render(outer_mm=12.3, inner_mm=8.3, seed=1)
    drawn = ndimage.binary_dilation(outer, CROSS)
    refined_outer, _ = refine_contours(hu, drawn, inner, SPACING)
    assert (refined_outer != outer).sum() <= 0.01 * outer.sum() < (drawn != outer).sum() / 10


def test_a_cortex_thinner_than_a_voxel_becomes_a_one_voxel_shell():
    # a bone with a 0.5 mm cortex above (a femoral head) and a 4 mm one below (the shaft,
    # which sets the cortical plateau); the network drew a 2-voxel cortex all round
    hu, outer, inner = render(outer_mm=9.4, inner_mm=8.9, shape=(28, 28, 28), tube=False, lower_inner_mm=5.4)
    drawn_inner = ndimage.binary_erosion(outer, CROSS, iterations=2)
    refined_outer, refined_inner = refine_contours(hu, outer, drawn_inner, SPACING)
    label = postprocess(refined_outer, refined_inner, SPACING)
    shell = outer & ~ndimage.binary_erosion(outer, CROSS, border_value=1)
    upper, lower = slice(17, None), slice(None, 11)     # away from the step between the two
    before = postprocess(outer, drawn_inner, SPACING)
    assert ((before[upper] == 1) & ~shell[upper]).sum() > 200
    assert ((label[upper] == 1) != shell[upper]).sum() <= 20
    # the thick cortex below keeps the network's two voxels (its true 4 mm is resolved, not thin)
    assert ((label[lower] == 2) == drawn_inner[lower]).all()
    # the periosteal surface of the thin cortex is the network's (no half maximum there)
    assert ((label[upper] >= 1) == outer[upper]).all()


def test_a_scan_without_a_resolved_cortex_is_left_alone():
    # only thin cortex: its blurred peak is no plateau to measure against
    hu, outer, _ = render(outer_mm=9.4, inner_mm=8.9, shape=(28, 28, 28), tube=False, cortex_hu=900.0)
    drawn_inner = ndimage.binary_erosion(outer, CROSS, iterations=2)
    refined_outer, refined_inner = refine_contours(hu, outer, drawn_inner, SPACING)
    assert (refined_outer == outer).all() and (refined_inner == drawn_inner).all()


def test_nothing_changes_without_a_cortex_and_bad_input_is_refused():
    hu, outer, _ = render(outer_mm=12.3, inner_mm=8.3)
    empty = np.zeros_like(outer)
    for periosteal, endosteal in ((empty, empty), (outer, outer)):   # no cortex predicted
        o, i = refine_contours(hu, periosteal, endosteal, SPACING)
        assert (o == periosteal).all() and (i == endosteal).all()
    with pytest.raises(ValueError, match="shapes differ"):
        refine_contours(hu[1:], outer, outer, SPACING)
    with pytest.raises(ValueError, match="fractions of the cortical plateau"):
        Refinement(resolved=1.5)
    with pytest.raises(ValueError, match="min_thickness_mm"):
        Refinement(min_thickness_mm=-1)
    assert Refinement().to_dict()["resolved"] == 0.9


def test_minimum_thickness_is_in_millimetres():
    # the same 4-voxel cortex drawn one voxel small: 4 mm at 1 mm voxels is refined,
    # 2 mm at 0.5 mm voxels is below min_thickness_mm (2.5) and is left to the network
    hu, outer, inner = render(outer_mm=12.3, inner_mm=8.3)
    drawn = ndimage.binary_erosion(outer, CROSS, border_value=1)
    at_1mm, _ = refine_contours(hu, drawn, inner, (1.0, 1.0, 1.0))
    at_half_mm, _ = refine_contours(hu, drawn, inner, (0.5, 0.5, 0.5))
    assert (at_1mm != outer).sum() < 0.01 * outer.sum()
    assert (at_half_mm == drawn).all()
