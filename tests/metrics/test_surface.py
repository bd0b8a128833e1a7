"""Surface metrics against MONAI (``monai.metrics``) on random blobs, anisotropic voxels, empty masks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from femurseg.metrics.surface import (
    assd,
    hausdorff_distance,
    hd95,
    surface_dice,
    surface_distances,
    surface_metrics,
    surface_voxels,
)

monai_metrics = pytest.importorskip("monai.metrics")
torch = pytest.importorskip("torch")

SPACINGS = [(1.0, 1.0, 1.0), (2.5, 0.7, 0.7), (0.6, 1.3, 3.0)]
ATOL_MM = 1e-3


def random_blob(rng: np.random.Generator, shape: tuple[int, ...] = (24, 28, 20), fill: float = 0.5) -> np.ndarray:
    """A smooth random blob (thresholded, blurred noise), sometimes in several pieces."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.5, 3.0))
    return noise > np.quantile(noise, 1.0 - fill * rng.uniform(0.2, 0.6))


def _batch(mask: np.ndarray) -> "torch.Tensor":
    return torch.from_numpy(mask[None, None].astype(np.float32))


def monai_reference(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], tol: float) -> dict[str, float]:
    p, r = _batch(pred), _batch(ref)
    kwargs = {"include_background": True, "spacing": list(spacing)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "hd_mm": float(monai_metrics.compute_hausdorff_distance(p, r, **kwargs)),
            "hd95_mm": float(monai_metrics.compute_hausdorff_distance(p, r, percentile=95, **kwargs)),
            "assd_mm": float(monai_metrics.compute_average_surface_distance(p, r, symmetric=True, **kwargs)),
            "surface_dice": float(monai_metrics.compute_surface_dice(p, r, [tol], **kwargs)),
        }


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("seed", range(4))
def test_matches_monai_on_random_blobs(seed: int, spacing: tuple[float, ...]) -> None:
    rng = np.random.default_rng(seed)
    ref = random_blob(rng)
    pred = ndimage.binary_dilation(ref, iterations=int(rng.integers(0, 2))) ^ (random_blob(rng, fill=0.1) & ref)
    tol = float(rng.choice([0.5, 1.0, 2.2]))
    ours = surface_metrics(pred, ref, spacing, tolerance_mm=tol)
    theirs = monai_reference(pred, ref, spacing, tol)
    for key in ("hd_mm", "hd95_mm", "assd_mm"):
        assert ours[key] == pytest.approx(theirs[key], abs=ATOL_MM), key
    assert ours["surface_dice"] == pytest.approx(theirs["surface_dice"], abs=1e-4)


def test_matches_monai_when_masks_touch_the_border() -> None:
    rng = np.random.default_rng(7)
    ref = random_blob(rng, shape=(16, 18, 12), fill=1.2)
    pred = np.roll(ref, 2, axis=1)
    ref[:, :, 0] = True  # a face on the array border is surface
    ours = surface_metrics(pred, ref, (0.8, 0.8, 2.0), tolerance_mm=1.0)
    theirs = monai_reference(pred, ref, (0.8, 0.8, 2.0), 1.0)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-4), key


def test_two_dimensional_masks_match_monai() -> None:
    rng = np.random.default_rng(3)
    ref, pred = random_blob(rng, (30, 26)), random_blob(rng, (30, 26))
    ours = surface_metrics(pred, ref, (0.5, 1.5), tolerance_mm=1.0)
    theirs = monai_reference(pred, ref, (0.5, 1.5), 1.0)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-4), key


def test_surface_voxels_match_monai_edges() -> None:
    from monai.metrics.utils import get_mask_edges

    rng = np.random.default_rng(1)
    a, b = random_blob(rng, (12, 14, 10)), random_blob(rng, (12, 14, 10))
    edges_a, edges_b = get_mask_edges(a, b, crop=False)
    np.testing.assert_array_equal(surface_voxels(a), edges_a)
    np.testing.assert_array_equal(surface_voxels(b), edges_b)


def test_cropping_does_not_change_distances() -> None:
    """The bounding-box crop gives the same distances as the full volume (padded far away)."""
    rng = np.random.default_rng(5)
    ref, pred = random_blob(rng, (14, 14, 14)), random_blob(rng, (14, 14, 14))
    small = surface_distances(pred, ref, (1.0, 0.5, 2.0))
    padded = [np.pad(m, ((3, 9), (0, 5), (7, 1))) for m in (pred, ref)]
    large = surface_distances(*padded, (1.0, 0.5, 2.0))
    np.testing.assert_allclose(np.sort(small.pred_to_ref), np.sort(large.pred_to_ref))
    np.testing.assert_allclose(np.sort(small.ref_to_pred), np.sort(large.ref_to_pred))


def test_single_functions_agree_with_surface_metrics() -> None:
    rng = np.random.default_rng(11)
    ref, pred = random_blob(rng, (16, 16, 16)), random_blob(rng, (16, 16, 16))
    spacing = (2.0, 0.7, 0.7)
    m = surface_metrics(pred, ref, spacing, tolerance_mm=1.5)
    assert hausdorff_distance(pred, ref, spacing) == m["hd_mm"]
    assert hd95(pred, ref, spacing) == m["hd95_mm"]
    assert assd(pred, ref, spacing) == m["assd_mm"]
    assert surface_dice(pred, ref, spacing, 1.5) == m["surface_dice"]


def test_known_distance_with_anisotropic_spacing() -> None:
    ref = np.zeros((10, 10, 10), bool)
    ref[2:6, 2:6, 2:6] = True
    pred = np.roll(ref, 1, axis=0)  # one voxel along the 3 mm axis
    m = surface_metrics(pred, ref, (3.0, 0.5, 0.5), tolerance_mm=2.9)
    assert m["hd_mm"] == pytest.approx(3.0)
    assert m["surface_dice"] < 1.0


def test_both_empty_is_perfect_agreement() -> None:
    empty = np.zeros((8, 8, 8), bool)
    assert surface_metrics(empty, empty, 1.0) == {"hd_mm": 0.0, "hd95_mm": 0.0, "assd_mm": 0.0, "surface_dice": 1.0}


@pytest.mark.parametrize("empty_side", ["pred", "ref"])
def test_one_empty_gives_infinite_distances_like_monai(empty_side: str) -> None:
    full = np.zeros((8, 8, 8), bool)
    full[2:5, 2:6, 3:7] = True
    empty = np.zeros_like(full)
    pred, ref = (empty, full) if empty_side == "pred" else (full, empty)
    ours = surface_metrics(pred, ref, (1.0, 2.0, 0.5))
    theirs = monai_reference(pred, ref, (1.0, 2.0, 0.5), 1.0)
    assert ours == {"hd_mm": np.inf, "hd95_mm": np.inf, "assd_mm": np.inf, "surface_dice": 0.0}
    # MONAI agrees except for HD95, where torch.quantile of all-inf distances gives nan;
    # inf is DeepMind's value and the consistent one (HD95 <= HD = inf).
    assert np.isnan(theirs.pop("hd95_mm"))
    assert theirs == {k: v for k, v in ours.items() if k != "hd95_mm"}


def test_invalid_arguments_raise_specific_errors() -> None:
    mask = np.ones((4, 4, 4), bool)
    with pytest.raises(ValueError, match="differs from reference shape"):
        surface_metrics(mask, mask[:3], 1.0)
    with pytest.raises(ValueError, match="has 2 values for a 3-D array"):
        surface_metrics(mask, mask, (1.0, 1.0))
    with pytest.raises(ValueError, match="positive and finite"):
        surface_metrics(mask, mask, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="tolerance_mm"):
        surface_metrics(mask, mask, 1.0, tolerance_mm=-1.0)
