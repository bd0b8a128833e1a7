"""``femurseg segment --analyze``: the command hands each written segmentation to femurseg.analysis."""

from __future__ import annotations

import json

import SimpleITK as sitk

from femurseg.commands.segment import _analyze, build_parser
from femurseg.inference.cohort import ScanInput


def test_segment_has_the_flag():
    assert build_parser().parse_args(["scan.nii.gz", "--output", "out", "--analyze"]).analyze


def test_each_segmentation_is_analysed(quick_left, tmp_path):
    scan = tmp_path / "scan.nii.gz"
    sitk.WriteImage(quick_left.image, str(scan))
    out = tmp_path / "out"
    (out / "scan").mkdir(parents=True)
    sitk.WriteImage(quick_left.label, str(out / "scan" / "segmentation.nii.gz"))  # as segment writes it
    missing = ScanInput("failed_scan", scan)  # a scan whose segmentation failed: skipped
    assert _analyze([ScanInput("scan", scan), missing], out) == 0
    calibration = json.loads((out / "scan" / "analysis" / "calibration.json").read_text())
    assert calibration["method"] == "phantom"
    assert (out / "scan" / "analysis" / "landmarks.json").exists()
    assert not (out / "failed_scan").exists()
