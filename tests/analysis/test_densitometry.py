"""Tests of femurseg.analysis.densitometry and the analyze pipeline's densitometry outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.analysis import analyze, compartment_table
from femurseg.analysis.densitometry import density_image
from femurseg.analysis.calibration import given_line
from femurseg.cli import main
from femurseg.errors import AnalysisError


def test_compartment_table_by_hand():
    label = np.zeros((3, 3, 3), np.uint8)
    label[1, 1, :] = [1, 2, 2]
    density = np.full(label.shape, 7.0, np.float32)
    density[1, 1, :] = [800.0, 100.0, 300.0]
    table = compartment_table(density, label, voxel_cm3=0.5)
    assert table["integral"] == {"volume_cm3": 1.5, "vbmd_mg_cm3": 400.0, "bmc_mg": 600.0}
    assert table["cortical"]["bmc_mg"] + table["trabecular"]["bmc_mg"] == pytest.approx(table["integral"]["bmc_mg"])
    within = np.zeros_like(label, bool)
    within[1, 1, 0] = True
    assert compartment_table(density, label, 0.5, within=within)["trabecular"] == {
        "volume_cm3": 0.0, "vbmd_mg_cm3": None, "bmc_mg": 0.0}


def test_density_image_is_float32_on_the_grid(quick_left):
    density = density_image(quick_left.image, given_line(1.25, 5.0))
    assert density.GetPixelID() == sitk.sitkFloat32 and density.GetSize() == quick_left.image.GetSize()
    assert density.GetOrigin() == quick_left.image.GetOrigin()


@pytest.mark.parametrize("side", ["left", "right"])
def test_vbmd_on_true_masks_matches_the_true_line(side, quick_left, quick_right, analysed):
    case = quick_left if side == "left" else quick_right
    result = analysed[side]
    hu = sitk.GetArrayFromImage(case.image).astype(np.float64)
    label = sitk.GetArrayFromImage(case.label)
    truth = case.meta["calibration"]
    voxel = float(np.prod(case.image.GetSpacing())) / 1000.0
    for name, mask in (("integral", label > 0), ("cortical", label == 1), ("trabecular", label == 2)):
        expected = float(np.mean((hu[mask] - truth["intercept"]) / truth["slope"]))
        row = result.report["densitometry"][name]
        assert row["vbmd_mg_cm3"] == pytest.approx(expected, rel=0.02), name
        assert row["bmc_mg"] == pytest.approx(expected * mask.sum() * voxel, rel=0.02), name
        assert row["volume_cm3"] == pytest.approx(case.meta["volumes_cm3"]["periosteal" if name == "integral" else name],
                                                  rel=1e-6)
    assert [s["side"] for s in result.report["sides"]] == [side]


def test_outputs_on_disk_and_command(quick_left, tmp_path):
    image, label = tmp_path / "scan.nii.gz", tmp_path / "label.nii.gz"
    sitk.WriteImage(quick_left.image, str(image))
    sitk.WriteImage(quick_left.label, str(label))
    assert main(["analyze", "--image", str(image), "--label", str(label), "--output", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["method"] == "phantom" and calibration["convention"].startswith("HU = intercept")
    report = json.loads((out / "report.json").read_text())
    assert report["subject"] == "scan" and set(report["densitometry"]) == {"integral", "cortical", "trabecular"}
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 1 and float(rows[0]["integral_vbmd_mg_cm3"]) == pytest.approx(
        report["densitometry"]["integral"]["vbmd_mg_cm3"])
    density = sitk.ReadImage(str(out / "density.nii.gz"))
    assert density.GetPixelID() == sitk.sitkFloat32
    # a given line through the command
    assert main(["analyze", "--image", str(image), "--label", str(label), "--output", str(tmp_path / "given"),
                 "--calibration", "1.25", "0", "--no-thickness", "--no-dxa", "--no-qc"]) == 0
    assert not (tmp_path / "given" / "thickness.vtp").exists() and not (tmp_path / "given" / "analysis_qc.png").exists()
    assert json.loads((tmp_path / "given" / "calibration.json").read_text())["method"] == "given"


def test_bad_inputs_write_nothing(quick_left, tmp_path, capsys):
    image, label = tmp_path / "scan.nii.gz", tmp_path / "label.nii.gz"
    sitk.WriteImage(quick_left.image, str(image))
    shifted = sitk.Image(quick_left.label)
    shifted.SetOrigin(tuple(o + 5.0 for o in shifted.GetOrigin()))
    sitk.WriteImage(shifted, str(label))
    out = tmp_path / "out"
    assert main(["analyze", "--image", str(image), "--label", str(label), "--output", str(out)]) == 2
    assert "another grid: origin" in capsys.readouterr().err and not out.exists()
    empty = sitk.Image(quick_left.label.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(quick_left.label)
    with pytest.raises(AnalysisError, match="no femur found"):
        analyze(quick_left.image, empty)
    bad = sitk.Image(quick_left.label) + 0
    bad[0, 0, 0] = 3
    with pytest.raises(AnalysisError, match=r"values \[3\]"):
        analyze(quick_left.image, bad)
    assert main(["analyze", "--image", str(image), "--label", str(image), "--output", str(out)]) == 2
    assert "is it a label map?" in capsys.readouterr().err
    sitk.WriteImage(quick_left.label, str(label))
    assert main(["analyze", "--image", str(image), "--label", str(label), "--output", str(out),
                 "--phantom", "no_such_phantom"]) == 2
    assert "unknown phantom" in capsys.readouterr().err and not out.exists()
