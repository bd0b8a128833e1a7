"""ClassBalancedSampler: patch centres follow label_probabilities, patches fit, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio

from femurseg.data.sampling import ClassBalancedSampler

PATCH = 16


def subject() -> tio.Subject:
    label = torch.zeros(1, 64, 60, 56, dtype=torch.uint8)
    label[:, 10:50, 12:48, 8:50] = 1  # common class: drawn by rejection
    label[:, 30:34, 30:33, 20:40] = 2  # rare class (240 voxels): drawn from its indices
    image = label.float() / 2
    return tio.Subject(image=tio.ScalarImage(tensor=image), label=tio.LabelMap(tensor=label), subject_id="s")


def centre_labels(sampler: ClassBalancedSampler, n: int) -> np.ndarray:
    s = subject()
    labels = []
    for patch in sampler(s, num_patches=n):
        assert patch["image"].shape == (1, PATCH, PATCH, PATCH)
        i, j, k = (int(v) for v in patch[tio.LOCATION][:3])
        assert torch.equal(patch["label"].data, s["label"].data[:, i:i + PATCH, j:j + PATCH, k:k + PATCH])
        labels.append(int(patch["label"].data[0, PATCH // 2, PATCH // 2, PATCH // 2]))
    return np.array(labels)


@pytest.mark.parametrize("probabilities", [{0: 0.2, 1: 0.5, 2: 0.3}, {0: 0.0, 1: 0.1, 2: 0.9}, {0: 1.0}])
def test_fraction_of_centres_per_class_follows_probabilities(probabilities):
    torch.manual_seed(0)
    labels = centre_labels(ClassBalancedSampler(PATCH, "label", probabilities), 1500)
    total = sum(probabilities.values())
    for value, p in probabilities.items():
        assert abs(np.mean(labels == value) - p / total) < 0.04, (value, np.mean(labels == value))


def test_absent_class_is_skipped_and_the_rest_renormalised():
    torch.manual_seed(0)
    labels = centre_labels(ClassBalancedSampler(PATCH, "label", {1: 0.5, 2: 0.25, 3: 0.25}), 600)
    assert set(labels) == {1, 2} and abs(np.mean(labels == 1) - 2 / 3) < 0.06


def test_seeded_and_matches_torchio_label_sampler_semantics():
    sampler = ClassBalancedSampler(PATCH, "label", {0: 0.2, 1: 0.4, 2: 0.4})
    torch.manual_seed(5)
    first = [p[tio.LOCATION].tolist() for p in sampler(subject(), num_patches=10)]
    torch.manual_seed(5)
    assert first == [p[tio.LOCATION].tolist() for p in sampler(subject(), num_patches=10)]
    torch.manual_seed(0)
    reference = tio.LabelSampler(PATCH, "label", label_probabilities={0: 0.2, 1: 0.4, 2: 0.4})
    ref = [int(p["label"].data[0, 8, 8, 8]) for p in reference(subject(), num_patches=600)]
    ours = centre_labels(sampler, 600)
    for value in (0, 1, 2):
        assert abs(np.mean(np.array(ref) == value) - np.mean(ours == value)) < 0.07


def test_invalid_probabilities():
    with pytest.raises(ValueError, match="label_probabilities"):
        ClassBalancedSampler(PATCH, "label", {0: 0.0, 1: 0.0})


def rare_voxel_offsets(jitter: float, n: int = 400) -> np.ndarray:
    """Where the rare class (a 4x3x20 bar at x 30-33, y 30-32) lies relative to each patch's start."""
    torch.manual_seed(1)
    sampler = ClassBalancedSampler(PATCH, "label", {2: 1.0}, centre_jitter=jitter)
    offsets = []
    for patch in sampler(subject(), num_patches=n):
        i, j, _ = (int(v) for v in patch[tio.LOCATION][:3])
        offsets.append((31.5 - i, 31.0 - j))
        assert (patch["label"].data == 2).any()  # the drawn voxel is always inside the patch
    return np.array(offsets)


def test_centre_jitter_spreads_the_structure_over_the_patch():
    still = rare_voxel_offsets(0.0)
    moved = rare_voxel_offsets(1.0)
    # without jitter the bar stays within its own half-width of the centre (8)
    assert np.abs(still - PATCH / 2).max() <= 2.0
    # with full jitter it is seen near both edges, spread roughly uniformly over the patch
    assert moved.min() < 2.5 and moved.max() > PATCH - 3.5
    assert 3.0 < moved[:, 0].std() < 6.0


def test_invalid_centre_jitter():
    with pytest.raises(ValueError, match="centre_jitter"):
        ClassBalancedSampler(PATCH, "label", {1: 1.0}, centre_jitter=1.5)
