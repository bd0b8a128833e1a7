"""Writers: atomic subject folders, reports, QC picture, CSVs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.inference.contours import geometry_of, label_contours
from femurseg.inference.report import Calibration, compartment_report
from femurseg.inference.writers import subject_folder, write_csv, write_subject


def _scan():
    label = np.zeros((10, 20, 20), np.uint8)
    label[2:8, 4:16, 4:16] = 1
    label[3:7, 6:14, 6:14] = 2
    hu = np.where(label == 1, 1000, np.where(label == 2, 200, -100)).astype(np.int16)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.5, 0.5, 2.0))
    label_image = sitk.GetImageFromArray(label)
    label_image.CopyInformation(image)
    return image, label_image, label


def test_report_volumes_hu_and_density():
    image, label_image, label = _scan()
    report = compartment_report(image, label_image, Calibration(slope=0.5, intercept=10.0))
    voxel = 0.5 * 0.5 * 2.0 / 1000
    assert report["volume_cm3"]["trabecular"] == pytest.approx((label == 2).sum() * voxel)
    assert report["volume_cm3"]["periosteal"] == pytest.approx((label > 0).sum() * voxel)
    assert report["mean_hu"]["cortical"] == 1000 and report["mean_hu"]["trabecular"] == 200
    assert report["vbmd_mg_cm3"]["trabecular"] == pytest.approx(110.0)
    assert report["bmc_g"]["cortical"] == pytest.approx(510.0 * report["volume_cm3"]["cortical"] / 1000)


def test_write_subject_folder(tmp_path):
    image, label_image, label = _scan()
    report = compartment_report(image, label_image)
    contours = label_contours(label, geometry_of(label_image))
    folder = write_subject(tmp_path, "S1", image, label_image, report, contours)
    assert sorted(p.name for p in folder.iterdir()) == ["contours.json", "qc.png", "report.json", "segmentation.nii.gz"]
    written = sitk.ReadImage(str(folder / "segmentation.nii.gz"))
    assert written.GetSpacing() == label_image.GetSpacing()
    assert (sitk.GetArrayFromImage(written) == label).all()
    assert json.loads((folder / "report.json").read_text())["volume_cm3"] == report["volume_cm3"]
    assert [p.name for p in tmp_path.iterdir()] == ["S1"]   # no temporary left


def test_failure_mid_subject_leaves_no_half_folder_and_keeps_the_old_one(tmp_path):
    with subject_folder(tmp_path, "S1") as folder:
        (folder / "report.json").write_text("{}")
    with pytest.raises(RuntimeError), subject_folder(tmp_path, "S1") as folder:
        (folder / "segmentation.nii.gz").write_text("partial")
        raise RuntimeError("crash while writing")
    with pytest.raises(RuntimeError), subject_folder(tmp_path, "S2") as folder:
        raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S1"]
    assert [p.name for p in (tmp_path / "S1").iterdir()] == ["report.json"]


def test_csv_is_written_with_header_and_blanks(tmp_path):
    path = write_csv(tmp_path / "errors.csv", [{"subject_id": "A", "message": "bad, file"}], ["subject_id", "message", "x"])
    rows = list(csv.DictReader(path.open()))
    assert rows == [{"subject_id": "A", "message": "bad, file", "x": ""}]
