"""Cohort inference through Trainer.predict and ``femurseg segment``: failures, atomic folders, CSVs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from femurseg.data.preprocess import Preprocessing
from femurseg.inference import writers
from femurseg.inference.cohort import discover_inputs
from femurseg.commands.segment import main
from femurseg.inference.contours import contours_to_mask
from femurseg.models import NETS


class CohortBandNet(nn.Module):
    """Foreground logit ``scale * min(x - low, high - x)``."""

    def __init__(self, *, in_channels: int, out_channels: int, low: float = -0.5, high: float = 9.0) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), self.scale * torch.minimum(x - self.low, self.high - x)], dim=1)


@pytest.fixture(autouse=True)
def _register_cohortbandnet(monkeypatch):
    """Register the test net for this module's tests only (the registry stays clean for others)."""
    monkeypatch.setitem(NETS._items, "test_cohort_band_net", CohortBandNet)


def _checkpoint(path, target, low, high):
    kwargs = {"in_channels": 1, "out_channels": 2, "low": low, "high": high}
    model = CohortBandNet(**kwargs)
    torch.save({"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
                "femurseg": {"format_version": 1, "target": target, "net": "test_cohort_band_net",
                             "net_kwargs": kwargs, "preprocessing": Preprocessing(spacing=(2.0, 2.0, 2.0)).to_dict(),
                             "patch_size": [16, 16, 16], "classes": []}}, path)
    return str(path)


def _scan(path, shift: float) -> None:
    z, y, x = np.indices((14, 24, 24))
    radius = np.sqrt((x - 12 - shift) ** 2 + (y - 12) ** 2 + ((z - 7) * 1.5) ** 2)
    hu = np.where(radius < 5, 300, np.where(radius < 8, 1400, -1000)).astype(np.int16)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((1.0, 1.0, 1.5))
    sitk.WriteImage(image, str(path))


@pytest.fixture()
def cohort(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    _scan(scans / "a.nii.gz", 0.0)
    _scan(scans / "b.nii.gz", 2.0)
    (scans / "broken.nii.gz").write_bytes(b"not a nifti file")
    checkpoints = [_checkpoint(tmp_path / "p.ckpt", "periosteal", -0.5, 9.0),
                   _checkpoint(tmp_path / "e.ckpt", "endosteal", -0.5, 0.3)]
    return scans, checkpoints


def test_inputs_from_a_folder_a_file_and_a_manifest(cohort, tmp_path):
    scans, _ = cohort
    assert [i.subject_id for i in discover_inputs(scans)] == ["a", "b", "broken"]
    assert [i.subject_id for i in discover_inputs(scans / "a.nii.gz")] == ["a"]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("subject_id,image\nS1,scans/a.nii.gz\n")
    assert [(i.subject_id, i.path.name) for i in discover_inputs(manifest)] == [("S1", "a.nii.gz")]


def test_cohort_with_a_corrupt_scan_finishes_and_reports_it(cohort, tmp_path, capsys):
    scans, checkpoints = cohort
    out = tmp_path / "out"
    code = main(["--checkpoints", *checkpoints, "--input", str(scans), "--output", str(out), "--tta", "x",
                 "--precision", "fp32", "--calibration", "0.8", "-2", "--uncertainty"])
    assert code == 1
    errors = list(csv.DictReader((out / "errors.csv").open()))
    assert [e["subject_id"] for e in errors] == ["broken"] and "broken.nii.gz" in errors[0]["message"]
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["subject_id"] for r in summary] == ["a", "b"]
    assert float(summary[0]["volume_periosteal_cm3"]) > 1.0 and summary[0]["vbmd_trabecular_mg_cm3"]
    side = summary[0]["sides"]  # one femur: its side and volumes get their own columns
    assert summary[0]["femurs"] == "1" and side in ("left", "right")
    assert summary[0][f"{side}_volume_periosteal_cm3"] == summary[0]["volume_periosteal_cm3"]
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "errors.csv", "summary.csv"]
    folder = out / "a"
    assert sorted(p.name for p in folder.iterdir()) == [
        "contours.json", "qc.json", "qc.png", "report.json", "segmentation.nii.gz", "uncertainty.nii.gz"]
    qc = json.loads((folder / "qc.json").read_text())  # with --uncertainty: the members are the two x flips
    assert qc["subject_id"] == "a" and qc["ensemble"]["members"] == 2 and 0 <= qc["ensemble"]["member_dice_min"] <= 1
    assert summary[0]["qc_pass"] == str(qc["pass"]) and summary[0]["qc_flags"] == " ".join(qc["flags"])
    label_image = sitk.ReadImage(str(folder / "segmentation.nii.gz"))
    scan = sitk.ReadImage(str(scans / "a.nii.gz"))
    assert label_image.GetSize() == scan.GetSize() and label_image.GetSpacing() == scan.GetSpacing()
    label = sitk.GetArrayFromImage(label_image)
    assert set(np.unique(label)) == {0, 1, 2}
    contours = json.loads((folder / "contours.json").read_text())
    assert (contours_to_mask(contours, "periosteal") == (label >= 1)).all()
    report = json.loads((folder / "report.json").read_text())
    assert report["checkpoints"][0]["path"] == checkpoints[0] and report["settings"]["tta"] == "x"
    assert "1 failed" in capsys.readouterr().out


def test_failure_mid_subject_leaves_no_half_written_folder(cohort, tmp_path, monkeypatch):
    scans, checkpoints = cohort
    (scans / "broken.nii.gz").unlink()
    real = writers.write_json

    def failing_write_json(path, data):
        if path.name == "report.json" and data.get("subject_id") == "b":
            raise OSError("disk full while writing report.json")
        return real(path, data)

    monkeypatch.setattr(writers, "write_json", failing_write_json)
    out = tmp_path / "out"
    assert main(["--checkpoints", *checkpoints, "--input", str(scans), "--output", str(out), "--tta", "none",
                 "--no-qc"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a", "errors.csv", "summary.csv"]   # no b, no temporary
    errors = list(csv.DictReader((out / "errors.csv").open()))
    assert [(e["subject_id"], e["error_type"]) for e in errors] == [("b", "OSError")]


def test_invalid_checkpoints_exit_with_2(cohort, tmp_path, capsys):
    scans, checkpoints = cohort
    assert main(["--periosteal", checkpoints[0], "--input", str(scans), "--output", str(tmp_path / "o")]) == 2
    assert "need endosteal" in capsys.readouterr().err
