"""Tests of the synthetic QCT cohort (femurseg.data.synthetic)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.data.synthetic import GENERATOR_VERSION, PRESETS, SyntheticCase, Tissue, generate_subject, write_cohort

# The calibration phantom is outside the tight "hip" field of the tiny preset;
# this preset keeps tiny voxels but shows the whole clinical field of view.
TINY_SCAN = replace(PRESETS["tiny"], name="tiny_scan", field="scan")


@pytest.fixture(scope="module")
def case() -> SyntheticCase:
    return generate_subject(7, preset="tiny")


@pytest.fixture(scope="module")
def scan_case() -> SyntheticCase:
    return generate_subject(11, preset=TINY_SCAN)


def _arrays(case: SyntheticCase) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)


def test_api_types_and_geometry(case: SyntheticCase) -> None:
    assert case.subject_id == "phantom_00007"
    assert case.image.GetPixelID() == sitk.sitkInt16
    assert case.label.GetPixelID() == sitk.sitkUInt8
    assert case.image.GetDimension() == 3
    assert case.image.GetSize() == case.label.GetSize()
    assert case.image.GetSpacing() == case.label.GetSpacing()
    assert case.image.GetOrigin() == case.label.GetOrigin()
    assert all(30 <= n <= 60 for n in case.image.GetSize())
    json.dumps(case.meta)  # serialisable
    assert case.meta["side"] in ("left", "right")
    assert case.meta["preset"] == "tiny" and case.meta["generator_version"] == GENERATOR_VERSION


def test_labels_nested_and_consistent_with_meta(case: SyntheticCase) -> None:
    image, label = _arrays(case)
    assert set(np.unique(label)) == {0, 1, 2}
    voxel_cm3 = float(np.prod(case.image.GetSpacing())) / 1000.0
    volumes = case.meta["volumes_cm3"]
    assert volumes["cortical"] == pytest.approx((label == 1).sum() * voxel_cm3)
    assert volumes["trabecular"] == pytest.approx((label == 2).sum() * voxel_cm3)
    assert volumes["periosteal"] == pytest.approx((label >= 1).sum() * voxel_cm3)
    # Endosteal inside periosteal: no trabecular voxel touches the background.
    from scipy import ndimage

    touching = ndimage.binary_dilation(label == 0) & (label == 2)
    assert touching.sum() == 0


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_cohort(tmp_path / "a", n=2, seed=5, preset="tiny")
    b = write_cohort(tmp_path / "b", n=2, seed=5, preset="tiny", workers=2)
    for rel in ("manifest.csv", "images/phantom_00005.nii.gz", "labels/phantom_00006.nii.gz",
                "meta/phantom_00006.json"):
        assert (a.parent / rel).read_bytes() == (b.parent / rel).read_bytes(), rel
    assert not list((tmp_path / "a").rglob("*.tmp*"))


def test_manifest_layout(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path, n=2, seed=0, preset="tiny")
    rows = list(csv.DictReader(manifest.open()))
    assert list(rows[0]) == ["subject_id", "image", "label", "side", "group"]
    assert [r["subject_id"] for r in rows] == ["phantom_00000", "phantom_00001"]
    for row in rows:
        assert (manifest.parent / row["image"]).is_file()
        assert (manifest.parent / row["label"]).is_file()
        assert row["group"] in ("normal", "osteopenic", "osteoporotic")
        meta = json.loads((manifest.parent / "meta" / f"{row['subject_id']}.json").read_text())
        assert meta["side"] == row["side"]
    image = sitk.ReadImage(str(manifest.parent / rows[0]["image"]))
    case = generate_subject(0, "tiny")
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(case.image))


def test_left_right_mirror() -> None:
    left = generate_subject(3, "tiny", side="left")
    right = generate_subject(3, "tiny", side="right")
    li, ll = _arrays(left)
    ri, rl = _arrays(right)
    assert np.array_equal(ll[:, :, ::-1], rl)
    assert np.array_equal(li[:, :, ::-1], ri)
    nx, sx = left.image.GetSize()[0], left.image.GetSpacing()[0]
    assert right.image.GetOrigin()[0] == pytest.approx(-(left.image.GetOrigin()[0] + (nx - 1) * sx))
    assert left.meta["volumes_cm3"] == right.meta["volumes_cm3"]
    # The femoral head is on the patient's own side (+x is the patient's left).
    centre_x = lambda c: np.mean(np.nonzero(sitk.GetArrayFromImage(c.label))[2])  # noqa: E731
    assert left.image.TransformContinuousIndexToPhysicalPoint((centre_x(left), 0, 0))[0] > -50
    assert right.image.TransformContinuousIndexToPhysicalPoint((centre_x(right), 0, 0))[0] < 50


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="quick"):
        generate_subject(0, preset="huge")
    with pytest.raises(ValueError):
        generate_subject(-1, preset="tiny")


def test_pelvis_present_outside_label(case: SyntheticCase) -> None:
    image, label = _arrays(case)
    pelvis = case.tissue == Tissue.PELVIS
    assert pelvis.sum() * np.prod(case.image.GetSpacing()) > 20_000  # > 20 cm3 of hip bone
    assert not np.any(label[pelvis] > 0)
    assert np.median(image[pelvis]) > 150


def test_tissue_hu_ranges(scan_case: SyntheticCase) -> None:
    image, label = _arrays(scan_case)
    from scipy import ndimage

    def core(code: int) -> np.ndarray:
        return ndimage.binary_erosion(scan_case.tissue == code, iterations=1)

    meta = scan_case.meta["tissues"]
    assert -120 <= meta["fat_hu"] <= -80 and 35 <= meta["muscle_hu"] <= 65
    assert -130 <= image[core(Tissue.FAT)].mean() <= -70
    assert 25 <= image[core(Tissue.MUSCLE)].mean() <= 75
    assert image[core(Tissue.AIR)].mean() < -950
    cal = scan_case.meta["calibration"]
    cortical_true = cal["intercept"] + cal["slope"] * meta["cortical_density"]
    assert 700 <= cortical_true <= 1800


def test_rods_at_stated_hu(scan_case: SyntheticCase) -> None:
    image, _ = _arrays(scan_case)
    cal = scan_case.meta["calibration"]
    assert [r["density_mg_cm3"] for r in cal["rods"]] == [0.0, 50.0, 100.0, 200.0]
    z = image.shape[0] // 2
    for rod in cal["rods"]:
        x, y = rod["x_mm"], rod["y_mm"]
        idx = scan_case.image.TransformPhysicalPointToIndex((x, y, scan_case.image.GetOrigin()[2]))
        patch = image[z - 2:z + 3, idx[1], idx[0]]
        assert abs(patch.mean() - rod["hu"]) < 20, (rod, patch)
    assert cal["slope"] > 0.9


def test_cortical_thickness_by_region() -> None:
    from femurseg.data.synthetic.measure import cortical_thickness, head_radius

    fine = replace(PRESETS["quick"], name="fine", field="hip", inplane=(1.0, 1.0), slices=(1.0,), min_cortex_voxels=0.0)
    case = generate_subject(2, preset=fine)
    femur = case.meta["femur"]
    assert 4.0 <= femur["cortex_shaft"] <= 7.0 and 2.0 <= femur["cortex_calcar"] <= 4.0
    assert 0.5 <= femur["cortex_neck_superior"] <= 2.0 and 0.3 <= femur["cortex_head"] <= 1.0
    measured = cortical_thickness(case)
    voxel = 1.0  # label-measured thickness is bounded below by one voxel
    assert 2.0 - voxel <= measured["calcar"]["median"] <= 4.0 + voxel
    assert measured["neck_superior"]["median"] <= 2.0 + voxel
    assert measured["head"]["median"] <= 1.0 + voxel
    assert measured["trochanter"]["median"] <= 1.0 + voxel
    assert measured["calcar"]["median"] > measured["neck_superior"]["median"]
    if "shaft" in measured:
        assert 4.0 - voxel <= measured["shaft"]["median"] <= 7.0 + voxel
    assert head_radius(case) == pytest.approx(femur["head_radius"], abs=1.5)


def test_quick_preset_shows_the_clinical_field_of_view() -> None:
    # the quick start must see skin, air and the calibration phantom, as real hip CT does
    assert PRESETS["quick"].field == "scan"
    case = generate_subject(0, preset="quick")
    hu = sitk.GetArrayFromImage(case.image)
    assert (hu < -900).mean() > 0.02                       # air around the body
    for rod in case.meta["calibration"]["rods"]:                 # every rod inside the image
        index = case.image.TransformPhysicalPointToIndex((rod["x_mm"], rod["y_mm"], case.image.GetOrigin()[2]))
        assert all(0 <= i < n for i, n in zip(index[:2], case.image.GetSize()[:2])), rod
