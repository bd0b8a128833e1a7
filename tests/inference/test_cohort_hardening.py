"""Hardening of cohort inference (issue 15): every failure is a row, names never collide, reruns resume."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from femurseg.data.preprocess import Preprocessing
from femurseg.inference import writers
from femurseg.inference.cohort import ScanInput, output_name_problem
from femurseg.commands.segment import main
from femurseg.models import NETS


class HardeningBandNet(nn.Module):
    """Foreground logit ``scale * min(x - low, high - x)``: bone between two levels."""

    def __init__(self, *, in_channels: int, out_channels: int, low: float = -0.5, high: float = 9.0) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), self.scale * torch.minimum(x - self.low, self.high - x)], dim=1)


@pytest.fixture(autouse=True)
def _register_net(monkeypatch):
    monkeypatch.setitem(NETS._items, "test_hardening_band_net", HardeningBandNet)


def _checkpoint(path: Path, target: str, low: float, high: float) -> str:
    kwargs = {"in_channels": 1, "out_channels": 2, "low": low, "high": high}
    model = HardeningBandNet(**kwargs)
    torch.save({"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
                "femurseg": {"format_version": 1, "target": target, "net": "test_hardening_band_net",
                             "net_kwargs": kwargs, "preprocessing": Preprocessing(spacing=(2.0, 2.0, 2.0)).to_dict(),
                             "patch_size": [16, 16, 16], "classes": []}}, path)
    return str(path)


def write_scan(path: Path, shape: tuple[int, int, int] = (14, 24, 24), spacing=(1.0, 1.0, 1.5),
               dtype=np.int16) -> Path:
    """A bone cylinder (cortex 1400 HU around 300 HU) in air, ``shape`` as ``(z, y, x)``."""
    z, y, x = np.indices(shape)
    cy, cx = shape[1] / 2, shape[2] / 2
    radius = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    hu = np.where(radius < 5, 300, np.where(radius < 8, 1400, -1000)).astype(dtype)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture()
def checkpoints(tmp_path: Path) -> list[str]:
    return [_checkpoint(tmp_path / "p.ckpt", "periosteal", -0.5, 9.0),
            _checkpoint(tmp_path / "e.ckpt", "endosteal", -0.5, 0.3)]


def segment(checkpoints: list[str], source: Path, out: Path, *extra: str) -> int:
    return main(["--checkpoints", *checkpoints, "--input", str(source), "--output", str(out),
                 "--tta", "none", "--precision", "fp32", *extra])


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# a: every per-subject failure is a row of errors.csv ---------------------------------------
def test_an_unexpected_error_type_fails_one_subject_not_the_cohort(tmp_path, checkpoints, monkeypatch):
    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("a", "b", "c"):
        write_scan(scans / f"{name}.nii.gz")
    real = writers.write_json

    def buggy(path, data):  # a TypeError (not a FemursegError/OSError) while writing subject b
        if path.name == writers.REPORT_FILE and data.get("subject_id") == "b":
            raise TypeError("unexpected bug")
        return real(path, data)

    monkeypatch.setattr(writers, "write_json", buggy)
    out = tmp_path / "out"
    assert segment(checkpoints, scans, out, "--no-qc") == 1
    assert [r["subject_id"] for r in rows(out / "summary.csv")] == ["a", "c"]
    assert [(e["subject_id"], e["error_type"]) for e in rows(out / "errors.csv")] == [("b", "TypeError")]
    assert sorted(p.name for p in out.iterdir()) == ["a", "c", "errors.csv", "summary.csv"]


def test_a_single_slice_scan_does_not_abort_the_cohort(tmp_path, checkpoints):
    scans = tmp_path / "scans"
    scans.mkdir()
    write_scan(scans / "a.nii.gz")
    write_scan(scans / "flat.nii.gz", shape=(1, 24, 24))
    out = tmp_path / "out"
    segment(checkpoints, scans, out)   # qc.png drawn: a 1-pixel-high view must not crash the run
    assert "a" in [r["subject_id"] for r in rows(out / "summary.csv")]
    done = {r["subject_id"] for r in rows(out / "summary.csv")} | {e["subject_id"] for e in rows(out / "errors.csv")}
    assert done == {"a", "flat"}


@pytest.mark.parametrize("subject", ["errors.csv", "summary.csv", "Summary.CSV"])
def test_a_subject_named_like_a_cohort_file_is_refused_per_subject(tmp_path, checkpoints, subject):
    write_scan(tmp_path / "a.nii.gz")
    write_scan(tmp_path / "b.nii.gz")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"subject_id,image\nA,a.nii.gz\n{subject},b.nii.gz\n")
    out = tmp_path / "out"
    assert segment(checkpoints, manifest, out, "--no-qc") == 1
    assert [r["subject_id"] for r in rows(out / "summary.csv")] == ["A"]
    errors = rows(out / "errors.csv")
    assert [e["subject_id"] for e in errors] == [subject] and "cohort output file" in errors[0]["message"]
    assert (out / "errors.csv").is_file() and (out / "summary.csv").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["A", "errors.csv", "summary.csv"]


def test_output_name_problem():
    assert output_name_problem("S01") is None
    assert "cohort output file" in output_name_problem("ERRORS.csv")
    assert "path separator" in output_name_problem("../x")
    assert ScanInput("x", Path("x")).subject_id == "x"


# b: a truncated scan is an error, never segmented with zeros ------------------------------
def test_segment_refuses_a_truncated_scan(tmp_path, checkpoints):
    scans = tmp_path / "scans"
    scans.mkdir()
    write_scan(scans / "a.nii.gz")
    cut = write_scan(scans / "cut.nii.gz")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    out = tmp_path / "out"
    assert segment(checkpoints, scans, out, "--no-qc") == 1
    errors = rows(out / "errors.csv")
    assert [e["subject_id"] for e in errors] == ["cut"]
    assert "cut.nii.gz" in errors[0]["message"] and "truncated" in errors[0]["message"]
    assert not (out / "cut").exists()


# c, d: segment applies check's image rules and a size guard before resampling --------------
def _write_dicom_series(image: sitk.Image, folder: Path, skip: tuple[int, ...] = ()) -> Path:
    """One DICOM file per slice with position and orientation tags; slices in ``skip`` are left out."""
    folder.mkdir(parents=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1.2"
    for k in range(image.GetDepth()):
        if k in skip:
            continue
        plane = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {"0008|0060": "CT", "0020|000d": series + ".0", "0020|000e": series, "0020|0013": str(k + 1),
                "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0032": "\\".join(f"{v:.6g}" for v in position),
                "0028|1052": "0", "0028|1053": "1", "0008|0018": f"{series}.{k + 1}"}
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{k:04d}.dcm"))
        writer.Execute(plane)
    return folder


def _bad_scans(scans: Path) -> None:
    write_scan(scans / "good.nii.gz")
    nan = sitk.GetImageFromArray(np.where(np.indices((14, 24, 24))[0] == 3, np.nan, 1400.0).astype(np.float32))
    nan.SetSpacing((1.0, 1.0, 1.5))
    sitk.WriteImage(nan, str(scans / "nan.nii.gz"))
    write_scan(scans / "uint8.nii.gz", dtype=np.uint8)            # 0-255 (the -1000 air wraps): not HU
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(scans / "uint8.nii.gz")))
    assert array.min() >= 0 and array.max() <= 255
    write_scan(scans / "tiny.nii.gz", shape=(2, 24, 24))
    write_scan(scans / "huge.nii.gz", shape=(34, 34, 34), spacing=(50.0, 50.0, 50.0))
    _write_dicom_series(sitk.ReadImage(str(scans / "good.nii.gz")), scans / "gappy", skip=(6, 7))


def test_segment_refuses_what_check_refuses_and_oversized_scans(tmp_path, checkpoints):
    import time

    scans = tmp_path / "scans"
    scans.mkdir()
    _bad_scans(scans)
    out = tmp_path / "out"
    start = time.perf_counter()
    assert segment(checkpoints, scans, out, "--no-qc") == 1
    assert time.perf_counter() - start < 60   # the 1700 mm scan is refused, not resampled
    assert [r["subject_id"] for r in rows(out / "summary.csv")] == ["good"]
    messages = {e["subject_id"]: e["message"] for e in rows(out / "errors.csv")}
    assert set(messages) == {"nan", "uint8", "tiny", "huge", "gappy"}
    assert "NaN" in messages["nan"] and "nan.nii.gz" in messages["nan"]
    assert "cannot be CT" in messages["uint8"]
    assert "too small" in messages["tiny"]
    assert "1700 x 1700 x 1700 mm" in messages["huge"] and "limit" in messages["huge"]
    assert "not evenly spaced" in messages["gappy"]
    assert sorted(p.name for p in out.iterdir()) == ["errors.csv", "good", "summary.csv"]


def test_the_size_limits_are_configurable_and_sized_for_hip_and_whole_body_ct(tmp_path, checkpoints):
    from femurseg.data.validate import ImageInfo, ValidationSettings, scan_geometry_problems
    from femurseg.inference import InferenceSettings, Predictor, load_checkpoints
    from femurseg.inference.cohort import discover_inputs, run_cohort

    def info(size, spacing):
        return ImageInfo(size, spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), 1, "16-bit signed integer")

    defaults = ValidationSettings()
    assert scan_geometry_problems(info((512, 512, 300), (0.8, 0.8, 1.0)), defaults, (1.0, 1.0, 1.0)) == []
    assert scan_geometry_problems(info((512, 512, 1500), (0.9, 0.9, 1.0)), defaults, (2.0, 2.0, 2.0)) == []
    rules = [r for r, _ in scan_geometry_problems(info((34, 34, 34), (50.0,) * 3), defaults, (0.75,) * 3)]
    assert rules == ["too_large_extent", "too_large_grid"]
    scans = tmp_path / "scans"
    scans.mkdir()
    write_scan(scans / "a.nii.gz")
    predictor = Predictor(load_checkpoints(checkpoints=checkpoints), InferenceSettings(tta="none", precision="fp32"))
    out = tmp_path / "out"
    assert run_cohort(discover_inputs(scans), out, predictor, qc=False,
                      checks=ValidationSettings(max_grid_voxels=100)) == 1
    assert "more than the limit of 100" in rows(out / "errors.csv")[0]["message"]


def test_check_reports_tiny_scans_and_dicom_gaps(tmp_path):
    from femurseg.data.validate import validate_manifest

    write_scan(tmp_path / "tiny.nii.gz", shape=(2, 24, 24))
    label = sitk.GetImageFromArray(np.ones((2, 24, 24), np.uint8))
    label.SetSpacing((1.0, 1.0, 1.5))
    sitk.WriteImage(label, str(tmp_path / "tiny_label.nii.gz"))
    _write_dicom_series(sitk.ReadImage(str(write_scan(tmp_path / "g.nii.gz"))), tmp_path / "gappy", skip=(5,))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("subject_id,image,label\ntiny,tiny.nii.gz,tiny_label.nii.gz\ngappy,gappy,g.nii.gz\n")
    problems = validate_manifest(manifest, content=False).problems
    assert any("'tiny'" in p and "too small" in p for p in problems), problems
    assert any("'gappy'" in p and "not evenly spaced" in p for p in problems), problems


# e: SIGTERM / SIGINT stop a cohort with a non-zero status and never leave half a subject ----
@pytest.mark.parametrize("signum", [15, 2])
def test_a_signal_stops_the_cohort_at_once_and_marks_nothing_unfinished_done(tmp_path, checkpoints, monkeypatch,
                                                                           signum):
    import os

    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("a", "b", "c"):
        write_scan(scans / f"{name}.nii.gz")
    real = writers.write_json

    def killed_while_writing_b(path, data):
        if path.name == writers.REPORT_FILE and data.get("subject_id") == "b":
            os.kill(os.getpid(), signum)
        return real(path, data)

    monkeypatch.setattr(writers, "write_json", killed_while_writing_b)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        segment(checkpoints, scans, out, "--no-qc")
    assert stop.value.code == 128 + signum
    assert sorted(p.name for p in out.iterdir()) == ["a", "errors.csv", "summary.csv"]   # no b, no temporary
    assert [r["subject_id"] for r in rows(out / "summary.csv")] == ["a"]
    errors = rows(out / "errors.csv")
    assert [(e["subject_id"], e["error_type"]) for e in errors] == [("b", "Terminated"), ("c", "Terminated")]
    assert "not segmented: stopped by SIG" in errors[0]["message"]


# g: reruns resume, stale temporaries go, files honour the umask ------------------------------
def test_a_rerun_keeps_complete_subjects_and_removes_stale_temporaries(tmp_path, checkpoints):
    import os

    from femurseg.inference import InferenceSettings, Predictor, load_checkpoints
    from femurseg.inference.cohort import discover_inputs, run_cohort

    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("a", "b"):
        write_scan(scans / f"{name}.nii.gz")
    out = tmp_path / "out"
    assert segment(checkpoints, scans, out, "--no-qc") == 0
    stamp = (out / "a" / "report.json").stat().st_mtime_ns
    def volumes():
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows(out / "summary.csv")]

    summary = volumes()
    # what a SIGKILL leaves: a subject's temporary folder, an old-format one, a temporary file, CSV parts
    dead = 2**22 + 12345   # above the default pid_max: no such process
    for name in (f".b.tmp-{dead}-x1", ".b.tmp-oldformat", f".parts-{dead}-1"):
        (out / name).mkdir()
        (out / name / "segmentation.nii.gz").write_bytes(b"half")
    (out / f".summary.csv.{dead}.abc.tmp").write_text("half")
    live = out / f".c.tmp-{os.getpid()}-x"   # a temporary of a running process is kept
    live.mkdir()
    assert segment(checkpoints, scans, out, "--no-qc") == 0
    assert (out / "a" / "report.json").stat().st_mtime_ns == stamp          # kept, not redone
    assert volumes() == summary                                               # rows rebuilt from report.json
    assert sorted(p.name for p in out.iterdir()) == sorted(["a", "b", "errors.csv", "summary.csv", live.name])
    assert segment(checkpoints, scans, out, "--no-qc", "--tta", "x") == 0     # other settings: redone
    assert (out / "a" / "report.json").stat().st_mtime_ns != stamp
    stamp = (out / "a" / "report.json").stat().st_mtime_ns
    predictor = Predictor(load_checkpoints(checkpoints=checkpoints),
                          InferenceSettings(tta="x", precision="fp32"))
    assert run_cohort(discover_inputs(scans), out, predictor, qc=False, overwrite=True) == 0
    assert (out / "a" / "report.json").stat().st_mtime_ns != stamp


def test_outputs_honour_the_umask(tmp_path, checkpoints):
    import os
    import stat

    write_scan(tmp_path / "a.nii.gz")
    old = os.umask(0o022)
    try:
        assert segment(checkpoints, tmp_path / "a.nii.gz", tmp_path / "out", "--no-qc") == 0
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path / "out").as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in (tmp_path / "out").rglob("*")}
    assert modes["a"] == 0o755 and modes["summary.csv"] == 0o644
    assert modes["a/segmentation.nii.gz"] == 0o644 and modes["a/report.json"] == 0o644
