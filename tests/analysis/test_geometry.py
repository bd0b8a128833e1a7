"""Tests of femurseg.analysis.geometry and regions against the synthetic phantoms' truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.analysis import analyze
from femurseg.analysis.geometry import hip_geometry
from femurseg.analysis.regions import REGION_LABELS, region_map
from femurseg.data.synthetic.femur import REGIONS
from femurseg.data.synthetic.measure import region_map as true_regions, true_axes
from femurseg.errors import AnalysisError


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b), -1.0, 1.0))))


@pytest.mark.parametrize("side", ["left", "right"])
def test_landmarks_match_the_phantom(side, quick_left, quick_right):
    case = quick_left if side == "left" else quick_right
    mask = sitk.GetArrayFromImage(case.label) > 0
    g = hip_geometry(mask, case.image)
    neck, shaft = true_axes(case.meta)
    assert g.side == side
    # quick preset voxels are 1.75-2 mm; docs/analysis.md has the full-preset numbers
    assert np.linalg.norm(g.head_centre_mm - np.asarray(case.meta["head_centre_mm"])) < 1.5
    assert g.head_radius_mm == pytest.approx(case.meta["femur"]["head_radius"], abs=1.0)
    assert _angle(g.neck_axis, neck) < 3.0
    assert _angle(g.shaft_axis, shaft) < 3.0
    assert g.neck_shaft_angle_deg == pytest.approx(_angle(neck, -shaft), abs=2.5)
    assert 400 < g.min_neck_area_mm2 < 1400 and 80 < g.neck_axis_length_mm < 150


def test_regions_agree_with_the_phantom_regions(quick_left):
    label = sitk.GetArrayFromImage(quick_left.label)
    g = hip_geometry(label > 0, quick_left.image)
    ours = region_map(label > 0, quick_left.image, g)
    truth = true_regions(quick_left)  # cortical voxels of the phantom's thickness regions (left-hip order)
    assert set(np.unique(ours)) <= {0, *REGION_LABELS.values()}
    assert not ours[label == 0].any() and ours[label > 0].all()
    expected = {"head": "head", "trochanter": "trochanter", "shaft": "shaft", "neck_superior": "neck"}
    for code, name in enumerate(REGIONS):
        if name in expected:
            share = float(np.mean(ours[truth == code] == REGION_LABELS[expected[name]]))
            assert share > 0.8, (name, share)


def test_analyze_writes_landmarks_and_regions(quick_right, analysed, tmp_path):
    result = analysed["right"]
    result.write(tmp_path)
    marks = json.loads((tmp_path / "landmarks.json").read_text())
    assert marks["side"] == "right" and len(marks["head_centre_mm"]) == 3
    assert {"neck_axis", "shaft_axis", "neck_shaft_angle_deg", "neck_axis_length_mm", "min_neck_area_mm2"} <= set(marks)
    regions = sitk.ReadImage(str(tmp_path / "regions.nii.gz"))
    assert regions.GetSize() == quick_right.image.GetSize()
    side = result.report["sides"][0]
    assert set(side["regions"]) == {*REGION_LABELS, "total_hip"}
    total = side["regions"]["total_hip"]["integral"]["bmc_mg"]
    parts = sum(side["regions"][n]["integral"]["bmc_mg"] for n in ("neck", "trochanter", "intertrochanteric"))
    assert total == pytest.approx(parts, rel=1e-6)
    assert "right_neck_shaft_angle_deg" in result.summary and "right_total_hip_integral_vbmd_mg_cm3" in result.summary


def test_bilateral_label_map_gives_two_sides(quick_left):
    hu = sitk.GetArrayFromImage(quick_left.image)
    label = sitk.GetArrayFromImage(quick_left.label)
    both_hu = np.concatenate([hu[:, :, ::-1], hu], axis=2)
    both_label = np.concatenate([label[:, :, ::-1], label], axis=2)
    spacing = quick_left.image.GetSpacing()
    origin = quick_left.image.GetOrigin()
    images = []
    for array in (both_hu, both_label):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin((origin[0] - label.shape[2] * spacing[0], origin[1], origin[2]))
        images.append(image)
    truth = quick_left.meta["calibration"]
    result = analyze(images[0], images[1], given=(truth["slope"], truth["intercept"]), thickness=False, qc=False)
    assert [s["side"] for s in result.report["sides"]] == ["right", "left"]
    assert [m["side"] for m in result.landmarks["sides"]] == ["right", "left"]
    right, left = (np.asarray(m["head_centre_mm"]) for m in result.landmarks["sides"])
    assert np.linalg.norm(left) < 1.5
    assert np.linalg.norm(right - [2 * origin[0] - spacing[0], 0.0, 0.0]) < 1.5
    a, b = (s["densitometry"]["integral"]["vbmd_mg_cm3"] for s in result.report["sides"])
    assert a == pytest.approx(b, rel=1e-6)


def test_a_femur_without_head_keeps_densitometry_and_warns(quick_left):
    label = sitk.GetArrayFromImage(quick_left.label)
    shaft_only = label.copy()
    shaft_only[label.shape[0] // 3:] = 0  # keep the lowest third of the slices: shaft only
    image = sitk.GetImageFromArray(shaft_only)
    image.CopyInformation(quick_left.label)
    result = analyze(quick_left.image, image, given=(1.2, 0.0), thickness=False, dxa=False, qc=False)
    assert result.landmarks is None and result.regions is None
    assert any("no hip geometry" in w for w in result.report["warnings"])
    with pytest.raises(AnalysisError, match="head"):
        hip_geometry(shaft_only > 0, quick_left.image)
