"""Overlap metrics against MONAI (compute_dice, compute_iou, confusion-matrix metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from femurseg.metrics.overlap import dice, iou, overlap_counts, overlap_metrics, precision, sensitivity

monai_metrics = pytest.importorskip("monai.metrics")
torch = pytest.importorskip("torch")


def random_blob(rng: np.random.Generator, shape: tuple[int, ...] = (20, 24, 16)) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    return noise > np.quantile(noise, rng.uniform(0.6, 0.9))


def monai_overlap(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    r = torch.from_numpy(ref[None, None].astype(np.float32))
    cm = monai_metrics.get_confusion_matrix(p, r)
    return {
        "dice": float(monai_metrics.compute_dice(p, r, ignore_empty=False)),
        "iou": float(monai_metrics.compute_iou(p, r, ignore_empty=False)),
        "sensitivity": float(monai_metrics.compute_confusion_matrix_metric("sensitivity", cm)),
        "precision": float(monai_metrics.compute_confusion_matrix_metric("precision", cm)),
    }


@pytest.mark.parametrize("seed", range(6))
def test_matches_monai_on_random_blobs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, ref = random_blob(rng), random_blob(rng)
    ours, theirs = overlap_metrics(pred, ref), monai_overlap(pred, ref)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-4), key
    assert (dice(pred, ref), iou(pred, ref)) == (ours["dice"], ours["iou"])
    assert (sensitivity(pred, ref), precision(pred, ref)) == (ours["sensitivity"], ours["precision"])


def test_dice_and_iou_are_related() -> None:
    rng = np.random.default_rng(9)
    pred, ref = random_blob(rng), random_blob(rng)
    d, j = dice(pred, ref), iou(pred, ref)
    assert d == pytest.approx(2 * j / (1 + j))


def test_both_empty_is_perfect_agreement() -> None:
    empty = np.zeros((5, 5, 5), bool)
    assert overlap_metrics(empty, empty) == {"dice": 1.0, "iou": 1.0, "sensitivity": 1.0, "precision": 1.0}
    theirs = monai_overlap(empty, empty)
    assert (theirs["dice"], theirs["iou"]) == (1.0, 1.0)  # MONAI with ignore_empty=False


def test_empty_reference() -> None:
    pred = np.zeros((5, 5, 5), bool)
    pred[1:3, 1:3, 1:3] = True
    ours, theirs = overlap_metrics(pred, np.zeros_like(pred)), monai_overlap(pred, np.zeros_like(pred))
    assert (ours["dice"], ours["iou"], ours["precision"]) == (0.0, 0.0, 0.0)
    assert math.isnan(ours["sensitivity"]) and math.isnan(theirs["sensitivity"])
    assert theirs["dice"] == 0.0 and theirs["precision"] == 0.0


def test_empty_prediction() -> None:
    ref = np.zeros((5, 5, 5), bool)
    ref[1:3, 1:3, 1:3] = True
    ours, theirs = overlap_metrics(np.zeros_like(ref), ref), monai_overlap(np.zeros_like(ref), ref)
    assert (ours["dice"], ours["iou"], ours["sensitivity"]) == (0.0, 0.0, 0.0)
    assert math.isnan(ours["precision"]) and math.isnan(theirs["precision"])
    assert theirs["sensitivity"] == 0.0


def test_accepts_integer_masks_and_checks_shapes() -> None:
    assert overlap_counts(np.array([0, 2, 1]), np.array([1, 1, 0])) == (1, 2, 2)
    with pytest.raises(ValueError, match=r"prediction shape \(3,\) differs from reference shape \(2,\)"):
        dice([1, 0, 1], [1, 0])
