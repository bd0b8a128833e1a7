"""Half-maximum refinement: both surfaces where the scan crosses the midpoint of its tissue levels."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
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


def test_periosteal_surface_drawn_one_voxel_inside_goes_back_to_half_maximum():
    # a shaft: 4 mm cortex, which the network drew one voxel inside all round (radii chosen
    # at least 0.05 mm from every voxel centre, so that each centre's side is decidable)
    hu, outer, inner = render(outer_mm=12.3, inner_mm=8.1)
    drawn = ndimage.binary_erosion(outer, CROSS, border_value=1)
    assert (outer & ~drawn).sum() > 0.1 * outer.sum()
    refined_outer, refined_inner = refine_contours(hu, drawn, inner, SPACING)
    label = postprocess(refined_outer, refined_inner, SPACING)
    assert ((label >= 1) != outer).sum() <= 0.01 * outer.sum()
    # the scan's first and last slices are not a surface: the shaft stays open there
    for edge in (0, -1):
        assert ((label[edge] >= 1) != outer[edge]).sum() <= 0.02 * outer[edge].sum()
    # an endosteal surface drawn where it is stays there
    assert ((label == 2) != inner).sum() <= 0.01 * inner.sum()


def test_periosteal_surface_drawn_too_large_shrinks_back():
    hu, outer, inner = render(outer_mm=12.3, inner_mm=8.3, seed=1)
    drawn = ndimage.binary_dilation(outer, CROSS)
    refined_outer, _ = refine_contours(hu, drawn, inner, SPACING)
    assert (refined_outer != outer).sum() <= 0.01 * outer.sum() < (drawn != outer).sum() / 10


@pytest.mark.parametrize("drawn", ["one voxel deep", "one voxel shallow"])
def test_endosteal_surface_goes_back_to_half_maximum(drawn):
    hu, outer, inner = render(outer_mm=12.3, inner_mm=8.1, seed=2)
    endosteal = (ndimage.binary_erosion(inner, CROSS, border_value=1) if drawn == "one voxel deep"
                 else ndimage.binary_dilation(inner, CROSS) & outer)
    before = int((endosteal != inner).sum())
    _, refined_inner = refine_contours(hu, outer, endosteal, SPACING)
    assert before > 0.15 * inner.sum()
    assert (refined_inner != inner).sum() <= 0.01 * inner.sum()


def test_a_thin_cortex_drawn_three_voxels_thick_gets_its_own_thickness():
    # a bone with a 1.2 mm cortex above (a femoral head) and a 4 mm one below (the shaft,
    # which sets the cortical plateau); the network drew a 3-voxel cortex all round
    hu, outer, inner = render(outer_mm=9.4, inner_mm=8.2, shape=(28, 28, 28), tube=False, lower_inner_mm=5.4,
                              blur=0.5)
    drawn_inner = ndimage.binary_erosion(outer, CROSS, iterations=3)
    label = postprocess(*refine_contours(hu, outer, drawn_inner, SPACING), SPACING)
    upper = slice(17, None)                              # away from the step between the two
    assert (drawn_inner[upper] != inner[upper]).sum() > 250
    assert ((label[upper] == 2) != inner[upper]).sum() <= 10
    assert ((label >= 1) == outer).all()


def test_voxels_enclosed_by_a_surface_moved_outwards_are_trabecular():
    # a 1.4 mm cortex that the network drew one voxel inside, the endosteal surface with it:
    # its drawn cortex is really trabecular bone, and stays inside once the surface moves out
    # (also along the tube, whose ends the scan cuts)
    hu, outer, inner = render(outer_mm=12.3, inner_mm=10.88, blur=0.5, seed=3)
    truth = np.where(inner, 2, np.where(outer, 1, 0))
    periosteal = ndimage.binary_erosion(outer, CROSS, border_value=1)
    endosteal = ndimage.binary_erosion(periosteal, CROSS, border_value=1)
    before = postprocess(periosteal, endosteal, SPACING)
    after = postprocess(*refine_contours(hu, periosteal, endosteal, SPACING), SPACING)
    assert ((after >= 1) == outer).all()
    assert (after != truth).sum() <= 0.1 * (before != truth).sum()
    assert abs(int((after == 1).sum()) - int((truth == 1).sum())) <= 0.1 * (truth == 1).sum()


def test_the_periosteal_surface_does_not_grow_into_a_joint():
    # a plate of bone (an acetabulum) one voxel from the shaft: the blurred gap between the
    # two is brighter than half maximum, but it is not femur
    hu, outer, inner = render(outer_mm=10.3, inner_mm=6.3)
    edge = int(np.where(outer.any(axis=(0, 1)))[0].max())
    plate = np.zeros_like(outer)
    plate[:, 16:24, edge + 2: edge + 4] = True
    hu = hu + ndimage.gaussian_filter(plate * 1460.0, 0.8, mode="nearest").astype(np.float32)
    assert hu[8, 18:22, edge + 1].min() > 0.55 * 1500
    guarded, _ = refine_contours(hu, outer, inner, SPACING)
    unguarded, _ = refine_contours(hu, outer, inner, SPACING, Refinement(other_bone_margin=0))
    assert (guarded == outer).all()
    assert (unguarded & ~outer).sum() > 20


def test_a_scan_without_a_resolved_cortex_is_left_alone():
    # only thin cortex: its blurred peak is no plateau to measure against
    hu, outer, _ = render(outer_mm=9.4, inner_mm=8.9, shape=(28, 28, 28), tube=False, cortex_hu=900.0)
    drawn_inner = ndimage.binary_erosion(outer, CROSS, iterations=2)
    refined_outer, refined_inner = refine_contours(hu, outer, drawn_inner, SPACING)
    assert (refined_outer == outer).all() and (refined_inner == drawn_inner).all()


def test_scans_coarser_than_the_cortex_are_left_alone():
    # a 3.5 mm phantom: its shaft cortex spans one or two voxels and never reaches the plateau
    from femurseg.data.synthetic import generate_subject
    case = generate_subject(3, "tiny")
    hu = sitk.GetArrayFromImage(case.image).astype(np.float32)
    label = sitk.GetArrayFromImage(case.label)
    spacing = case.image.GetSpacing()
    assert min(spacing[:2]) > 2.5
    outer, inner = refine_contours(hu, label >= 1, label == 2, spacing)
    assert (outer == (label >= 1)).all() and (inner == (label == 2)).all()
    # the same masks with the guard lifted show why it is there: the cortex would grow by > 10 %
    forced = postprocess(*refine_contours(hu, label >= 1, label == 2, spacing,
                                          Refinement(max_inplane_spacing_mm=10.0)), spacing)
    assert (forced == 1).sum() > 1.1 * (label == 1).sum()


def test_nothing_changes_without_a_cortex_and_bad_input_is_refused():
    hu, outer, _ = render(outer_mm=12.3, inner_mm=8.3)
    empty = np.zeros_like(outer)
    for periosteal, endosteal in ((empty, empty), (outer, outer)):   # no cortex predicted
        o, i = refine_contours(hu, periosteal, endosteal, SPACING)
        assert (o == periosteal).all() and (i == endosteal).all()
    with pytest.raises(ValueError, match="shapes differ"):
        refine_contours(hu[1:], outer, outer, SPACING)
    with pytest.raises(ValueError, match="spacing"):
        refine_contours(hu, outer, outer, (1.0, 1.0))
    with pytest.raises(ValueError, match="fraction of the cortical plateau"):
        Refinement(min_peak=1.5)
    with pytest.raises(ValueError, match="endosteal_passes"):
        Refinement(endosteal_passes=-1)
    with pytest.raises(ValueError, match="max_inplane_spacing_mm"):
        Refinement(max_inplane_spacing_mm=0)
    assert Refinement().to_dict() == {"min_peak": 0.5, "other_bone_margin": 3, "endosteal_passes": 2,
                                      "soft_tissue_max_hu": 200.0, "plateau_percentile": 95.0,
                                      "min_plateau_hu": 700.0, "max_inplane_spacing_mm": 2.5}
