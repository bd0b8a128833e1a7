"""``femurseg export`` and the export flags of ``femurseg segment``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

pytest.importorskip("trimesh")
pytest.importorskip("fast_simplification")

from femurseg.commands.export import main  # noqa: E402
from femurseg.data.preprocess import Preprocessing  # noqa: E402
from femurseg.models import NETS  # noqa: E402


def _scan_and_label(folder):
    z, y, x = np.indices((20, 30, 30))
    r = np.sqrt((x - 15) ** 2 + (y - 15) ** 2 + ((z - 10) * 1.5) ** 2)
    hu = np.where(r < 6, 300, np.where(r < 9, 1400, -1000)).astype(np.int16)
    label = np.where(r < 6, 2, np.where(r < 9, 1, 0)).astype(np.uint8)
    paths = []
    for name, array in (("scan.nii.gz", hu), ("label.nii.gz", label)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.0, 1.5))
        image.SetOrigin((5.0, -20.0, 100.0))
        sitk.WriteImage(image, str(folder / name))
        paths.append(folder / name)
    return paths


def test_export_writes_meshes_and_a_report(tmp_path, capsys):
    scan, label = _scan_and_label(tmp_path)
    code = main(["--image", str(scan), "--label", str(label), "--output", str(tmp_path / "out"),
                 "--meshes", "stl,vtp,ply", "--frame", "RAS"])
    assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["endosteal.ply", "endosteal.stl", "endosteal.vtp", "export.json",
                     "periosteal.ply", "periosteal.stl", "periosteal.vtp"]
    report = json.loads((tmp_path / "out" / "export.json").read_text())
    assert report["meshes"]["periosteal"]["frame"] == "RAS" and report["meshes"]["periosteal"]["watertight"]
    assert "closed" in capsys.readouterr().out


def test_export_refuses_bad_inputs(tmp_path, capsys):
    scan, label = _scan_and_label(tmp_path)
    assert main(["--image", str(scan), "--label", str(label), "--output", str(tmp_path / "o")]) == 2
    assert "nothing to export" in capsys.readouterr().err
    assert main(["--image", str(scan), "--label", str(label), "--output", str(tmp_path / "o"), "--meshes", "obj"]) == 2
    assert "--meshes: unknown format(s) obj" in capsys.readouterr().err
    other = sitk.ReadImage(str(label))
    other.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(other, str(tmp_path / "moved.nii.gz"))
    assert main(["--image", str(scan), "--label", str(tmp_path / "moved.nii.gz"), "--output", str(tmp_path / "o"),
                 "--meshes", "stl"]) == 2
    assert "spacing" in capsys.readouterr().err
    wrong = sitk.GetArrayFromImage(other)
    wrong[0, 0, 0] = 7
    bad = sitk.GetImageFromArray(wrong)
    bad.CopyInformation(sitk.ReadImage(str(scan)))
    sitk.WriteImage(bad, str(tmp_path / "bad.nii.gz"))
    assert main(["--image", str(scan), "--label", str(tmp_path / "bad.nii.gz"), "--output", str(tmp_path / "o"),
                 "--meshes", "stl"]) == 2
    assert "values [7]" in capsys.readouterr().err


class _BandNet(nn.Module):
    """Foreground logit ``20 * min(x - low, high - x)`` (a threshold 'network')."""

    def __init__(self, *, in_channels: int, out_channels: int, low: float = -0.5, high: float = 9.0) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), self.scale * torch.minimum(x - self.low, self.high - x)], dim=1)


def _checkpoint(path, target, low, high):
    kwargs = {"in_channels": 1, "out_channels": 2, "low": low, "high": high}
    model = _BandNet(**kwargs)
    torch.save({"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
                "femurseg": {"format_version": 1, "target": target, "net": "test_export_band_net",
                             "net_kwargs": kwargs, "preprocessing": Preprocessing(spacing=(2.0, 2.0, 2.0)).to_dict(),
                             "patch_size": [16, 16, 16], "classes": []}}, path)
    return str(path)


def test_segment_writes_the_exports_into_each_subject_folder(tmp_path, monkeypatch):
    from femurseg.commands.segment import main as segment

    monkeypatch.setitem(NETS._items, "test_export_band_net", _BandNet)
    scan, _ = _scan_and_label(tmp_path)
    args = ["--periosteal", _checkpoint(tmp_path / "p.ckpt", "periosteal", -0.5, 9.0),
            "--endosteal", _checkpoint(tmp_path / "e.ckpt", "endosteal", -0.5, 0.3),
            "--input", str(scan), "--output", str(tmp_path / "seg"), "--no-qc", "--refine", "none"]
    assert segment([*args, "--meshes", "stl"]) == 0
    folder = tmp_path / "seg" / "scan"
    assert (folder / "periosteal.stl").is_file() and (folder / "endosteal.stl").is_file()
    report = json.loads((folder / "report.json").read_text())
    assert report["exports"]["request"]["meshes"] == ["stl"]
    assert report["exports"]["meshes"]["periosteal"]["watertight"]
    # a rerun asking for another format is not "already done"
    assert segment([*args, "--meshes", "vtp"]) == 0
    assert (folder / "periosteal.vtp").is_file()


def test_segment_parses_the_export_flags_and_uses_its_calibration_for_fe():
    from femurseg.commands.export import request_from_args
    from femurseg.commands.segment import build_parser

    args = build_parser().parse_args(["scan.nii.gz", "--output", "out", "--calibration", "0.8", "-2",
                                      "--fe", "inp,vtu", "--fe-coarsen", "2", "--seg-nrrd", "--meshes", "ply"])
    request = request_from_args(args)
    assert request.fe == ("inp", "vtu") and request.fe_settings.coarsen == 2
    assert request.hu_to_density == (0.8, -2.0) and request.seg_nrrd and request.meshes == ("ply",)
    assert not request.dicom_seg and not request.empty
    plain = build_parser().parse_args(["scan.nii.gz", "--output", "out"])
    assert request_from_args(plain).empty
