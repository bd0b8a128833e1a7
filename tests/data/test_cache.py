"""The preprocessing cache: hits, invalidation by content and by setting, interrupted writes."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import femurseg.data.cache as cache_module
from femurseg.data.cache import SubjectCache
from femurseg.data.datamodule import load_subject
from femurseg.data.manifest import ManifestRecord
from femurseg.data.preprocess import Preprocessing

SETTINGS = Preprocessing(spacing=(3.0, 3.0, 3.0))


@pytest.fixture()
def records(tiny_records, tmp_path) -> list[ManifestRecord]:
    """Two subjects copied into a folder the test may modify."""
    copies = []
    for record in tiny_records[:2]:
        files = {}
        for column, path in record.files.items():
            files[column] = tmp_path / "data" / f"{record.subject_id}_{column}.nii.gz"
            files[column].parent.mkdir(exist_ok=True)
            shutil.copy(path, files[column])
        copies.append(dataclasses.replace(record, **files))
    return copies


def entries(root) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_second_run_is_a_hit_and_nothing_is_rewritten(records, tmp_path):
    first = SubjectCache(tmp_path / "cache", SETTINGS)
    stamps = [(first.get(r).path / "image.npy").stat().st_mtime_ns for r in records]
    assert first.computed == 2
    again = SubjectCache(tmp_path / "cache", SETTINGS)
    assert [(again.get(r).path / "image.npy").stat().st_mtime_ns for r in records] == stamps
    assert again.computed == 0 and len(entries(tmp_path / "cache")) == 2


def test_cached_subject_equals_direct_preprocessing_and_is_lazy(records, tmp_path):
    subject = SubjectCache(tmp_path / "cache", SETTINGS).get(records[0]).subject()
    assert not subject["image"]._loaded and not subject["label"]._loaded
    direct = load_subject(records[0], SETTINGS)
    assert torch.equal(subject["image"].data, direct["image"].data)
    assert torch.equal(subject["label"].data, direct["label"].data)
    assert subject["label"].data.dtype == torch.uint8
    np.testing.assert_allclose(subject["image"].affine, direct["image"].affine)
    assert subject["subject_id"] == records[0].subject_id


def test_changed_file_invalidates_only_its_entry(records, tmp_path):
    SubjectCache(tmp_path / "cache", SETTINGS).get(records[0])
    SubjectCache(tmp_path / "cache", SETTINGS).get(records[1])
    image = sitk.ReadImage(str(records[1].image))
    sitk.WriteImage(image + 10, str(records[1].image))  # new content
    cache = SubjectCache(tmp_path / "cache", SETTINGS)
    for record in records:
        cache.get(record)
    assert cache.computed == 1 and len(entries(tmp_path / "cache")) == 3


def test_changed_setting_invalidates_and_old_entries_stay_valid(records, tmp_path):
    SubjectCache(tmp_path / "cache", SETTINGS).get(records[0])
    other = SubjectCache(tmp_path / "cache", dataclasses.replace(SETTINGS, hu_window=(-500.0, 1500.0)))
    other.get(records[0])
    half = SubjectCache(tmp_path / "cache", SETTINGS, dtype="float16")
    half.get(records[0])
    back = SubjectCache(tmp_path / "cache", SETTINGS)
    back.get(records[0])
    assert (other.computed, half.computed, back.computed) == (1, 1, 0)
    assert len(entries(tmp_path / "cache")) == 3


def test_float16_entries_are_close(records, tmp_path):
    full = SubjectCache(tmp_path / "cache", SETTINGS).get(records[0]).subject()["image"].data
    half = SubjectCache(tmp_path / "cache", SETTINGS, dtype="float16").get(records[0])
    assert np.load(half.path / "image.npy", mmap_mode="r").dtype == np.float16
    assert (half.subject()["image"].data - full).abs().max() < 1e-3


def test_interrupted_write_is_never_read_and_is_recomputed(records, tmp_path, monkeypatch):
    real_save = np.save
    calls = []

    def failing_save(path, array):
        calls.append(path)
        if len(calls) == 2:  # image written, crash while writing the label
            raise KeyboardInterrupt("simulated crash mid-write")
        real_save(path, array)

    monkeypatch.setattr(cache_module.np, "save", failing_save)
    cache = SubjectCache(tmp_path / "cache", SETTINGS)
    with pytest.raises(KeyboardInterrupt):
        cache.get(records[0])
    monkeypatch.setattr(cache_module.np, "save", real_save)
    assert cache.lookup(records[0]) is None and entries(tmp_path / "cache") == []
    assert cache.get(records[0]).has_label and cache.computed == 1


def test_folder_without_marker_is_ignored_and_replaced(records, tmp_path):
    cache = SubjectCache(tmp_path / "cache", SETTINGS)
    path = cache.entry_path(records[0])
    path.mkdir(parents=True)
    np.save(path / "image.npy", np.zeros((2, 2, 2), np.float32))  # a crash of an older writer, say
    assert cache.lookup(records[0]) is None
    entry = cache.get(records[0])
    assert entry.path == path and cache.computed == 1 and entry.meta["shape"][0] > 2


def test_crop_keeps_the_femur_in_place(records, tmp_path):
    settings = dataclasses.replace(SETTINGS, crop_margin_mm=3.0)
    cache = SubjectCache(tmp_path / "cache", settings)
    full, cropped = cache.get(records[0]).subject(), cache.get(records[0], crop=True).subject()
    assert cache.computed == 2
    assert all(c <= f for c, f in zip(cropped["label"].shape, full["label"].shape))
    assert int((cropped["label"].data > 0).sum()) == int((full["label"].data > 0).sum())
    x0, y0, z0 = cache.get(records[0], crop=True).meta["crop_box"][:3]
    np.testing.assert_allclose(cropped["image"].affine[:3, 3], full["image"].affine[:3, :3] @ [x0, y0, z0]
                               + full["image"].affine[:3, 3], atol=1e-4)
    assert torch.equal(cropped["label"].data, full["label"].data[:, x0:x0 + cropped.shape[1],
                                                                   y0:y0 + cropped.shape[2], z0:z0 + cropped.shape[3]])
