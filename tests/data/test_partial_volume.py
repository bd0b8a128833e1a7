"""Partial-volume fractions: preprocessing, cache, training subjects, augmentation, soft targets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torchio as tio

from femurseg.data.augment import make_augmentation
from femurseg.data.cache import SubjectCache
from femurseg.data.datamodule import load_subject
from femurseg.data.preprocess import Preprocessing, label_fractions, preprocess_image, preprocess_label
from femurseg.models.module import make_soft_target, make_target

SETTINGS = Preprocessing(spacing=(3.0, 3.0, 3.0))


def shell_label(spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    """A 0/1/2 ball: trabecular core (radius 8 mm) inside a 3 mm cortex, on a 1 mm grid."""
    z, y, x = np.indices((40, 40, 40))
    radius = np.sqrt((x - 19.3) ** 2 + (y - 20.1) ** 2 + (z - 19.7) ** 2)
    label = sitk.GetImageFromArray(np.where(radius < 8, 2, np.where(radius < 11, 1, 0)).astype(np.uint8))
    label.SetSpacing(spacing)
    return label


def test_fractions_are_nested_and_preserve_the_volumes_better_than_nearest_neighbour():
    label = shell_label()
    reference = preprocess_image(sitk.Cast(label, sitk.sitkInt16) * 500 - 1000, Preprocessing(spacing=(2.6,) * 3))
    fractions = sitk.GetArrayFromImage(label_fractions(label, reference))          # (z, y, x, 2)
    outer, inner = fractions[..., 0], fractions[..., 1]
    assert fractions.dtype == np.float32 and outer.min() >= 0 and outer.max() <= 1
    assert (inner <= outer + 1e-6).all()
    nearest = sitk.GetArrayFromImage(preprocess_label(label, reference))
    true = sitk.GetArrayFromImage(label)
    voxel = 2.6**3
    for soft, hard, region in ((outer, nearest >= 1, true >= 1), (inner, nearest == 2, true == 2)):
        soft_error = abs(soft.sum() * voxel - region.sum()) / region.sum()
        hard_error = abs(hard.sum() * voxel - region.sum()) / region.sum()
        assert soft_error < 0.03 and soft_error < hard_error


def test_cache_and_direct_loading_give_the_same_fractions(tiny_records, tmp_path):
    record = tiny_records[0]
    settings = dataclasses.replace(SETTINGS, crop_margin_mm=3.0)
    cache = SubjectCache(tmp_path / "cache", settings)
    for crop in (False, True):
        cached = cache.get(record, crop=crop).subject(fractions=True)
        direct = load_subject(record, settings, crop=crop, fractions=True)
        assert cached["fractions"].shape == (2, *cached["label"].shape[1:])
        assert torch.allclose(cached["fractions"].data, direct["fractions"].data, atol=0.5 / 255 + 1e-6)
        np.testing.assert_allclose(cached["fractions"].affine, cached["label"].affine)
        label = cached["label"].data[0]
        outer = cached["fractions"].data[0]
        # where the nearest-neighbour label is deep inside or far outside, the fraction agrees
        assert outer[label >= 1].mean() > 0.8 and outer[label == 0].mean() < 0.1
    assert "fractions" not in cache.get(record).subject()   # only when asked for (training subjects)


def test_intensity_augmentation_leaves_the_fractions_alone():
    label = torch.zeros(1, 32, 32, 32, dtype=torch.uint8)
    label[:, 8:24, 8:24, 8:24] = 1
    fractions = torch.cat([label.float(), torch.zeros_like(label, dtype=torch.float32)])
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    subject = tio.Subject(image=tio.ScalarImage(tensor=label.float() - 0.5, affine=affine),
                          label=tio.LabelMap(tensor=label, affine=affine),
                          fractions=tio.ScalarImage(tensor=fractions, affine=affine))
    torch.manual_seed(0)
    noisy = tio.Compose([t for t in make_augmentation("heavy") if not isinstance(
        t, (tio.RandomFlip, tio.RandomAffine, tio.RandomElasticDeformation))])(subject)
    assert torch.equal(noisy["fractions"].data, fractions)
    torch.manual_seed(1)
    moved = tio.RandomAffine(degrees=(20, 20), p=1.0)(subject)   # spatial: fractions move with the label
    overlap = (moved["fractions"].data[0] > 0.5) == (moved["label"].data[0] == 1)
    assert overlap.float().mean() > 0.98


@pytest.mark.parametrize("target", ["periosteal", "endosteal", "compartments"])
def test_soft_targets_of_whole_voxels_are_the_one_hot_of_the_hard_target(target):
    label = torch.tensor([0, 1, 2, 2, 1, 0], dtype=torch.uint8).view(1, 6, 1, 1)
    fractions = torch.stack([(label >= 1).float(), (label == 2).float()], dim=1)
    soft = make_soft_target(fractions, target)
    hard = make_target(label, target)
    assert torch.equal(soft, torch.nn.functional.one_hot(hard, soft.shape[1]).movedim(-1, 1).float())
    partial = make_soft_target(torch.tensor([0.6, 0.25]).view(1, 2, 1, 1, 1), target)
    assert torch.allclose(partial.sum(dim=1), torch.ones(1))
    expected = {"periosteal": [0.4, 0.6], "endosteal": [0.75, 0.25], "compartments": [0.4, 0.35, 0.25]}[target]
    assert torch.allclose(partial.flatten(), torch.tensor(expected))
