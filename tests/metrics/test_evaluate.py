"""evaluate_label_maps per target, evaluate_cohort on a tiny temporary cohort, and the CLI main."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from femurseg.errors import DataError
from femurseg.commands.evaluate import main
from femurseg.metrics.evaluate import METRICS, TARGETS, evaluate_cohort, evaluate_label_maps
from femurseg.metrics.overlap import overlap_metrics
from femurseg.metrics.surface import surface_metrics
from femurseg.metrics.volume import volume_cm3

sitk = pytest.importorskip("SimpleITK")

SPACING_XYZ = (0.7, 0.7, 1.5)


def femur_like(shift: int = 0, shape: tuple[int, int, int] = (14, 20, 20)) -> np.ndarray:
    """A 0/1/2 map in (z, y, x): a cylinder of cortical bone around a trabecular core."""
    z, y, x = np.indices(shape)
    r = np.hypot(y - 10 - shift, x - 10)
    labels = np.zeros(shape, np.uint8)
    labels[(r <= 7) & (z >= 2) & (z < 12)] = 1
    labels[(r <= 4) & (z >= 3) & (z < 11)] = 2
    return labels


def test_label_maps_give_every_target_and_metric() -> None:
    ref, pred = femur_like(), femur_like(shift=1)
    row = evaluate_label_maps(pred, ref, SPACING_XYZ[::-1], tolerance_mm=1.0)
    assert set(row) == {f"{t}_{m}" for t in TARGETS for m in METRICS}
    for target, select in TARGETS.items():
        p, r = select(pred), select(ref)
        expected = {**overlap_metrics(p, r), **surface_metrics(p, r, SPACING_XYZ[::-1], 1.0)}
        for metric, value in expected.items():
            assert row[f"{target}_{metric}"] == value
        assert row[f"{target}_volume_ref_cm3"] == volume_cm3(r, SPACING_XYZ[::-1])
    assert row["periosteal_volume_ref_cm3"] == pytest.approx(
        row["cortical_volume_ref_cm3"] + row["endosteal_volume_ref_cm3"]
    )
    assert 0.0 < row["periosteal_dice"] < 1.0
    assert row["periosteal_hd_mm"] == pytest.approx(0.7)  # shifted one voxel along y (0.7 mm)


def test_label_maps_match_monai_dice_and_hd95() -> None:
    monai_metrics = pytest.importorskip("monai.metrics")
    torch = pytest.importorskip("torch")
    ref, pred = femur_like(), femur_like(shift=2)
    spacing = SPACING_XYZ[::-1]
    row = evaluate_label_maps(pred, ref, spacing)
    for target, select in TARGETS.items():
        p = torch.from_numpy(select(pred)[None, None].astype(np.float32))
        r = torch.from_numpy(select(ref)[None, None].astype(np.float32))
        assert row[f"{target}_dice"] == pytest.approx(float(monai_metrics.compute_dice(p, r)), abs=1e-4)
        hd95 = monai_metrics.compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=spacing)
        assert row[f"{target}_hd95_mm"] == pytest.approx(float(hd95), abs=1e-3)


def test_label_maps_reject_bad_values_and_shapes() -> None:
    ref = femur_like()
    with pytest.raises(ValueError, match=r"prediction label map has values \[3\] outside"):
        evaluate_label_maps(np.where(ref == 2, 3, ref), ref, 1.0)
    with pytest.raises(ValueError, match="differs from reference shape"):
        evaluate_label_maps(ref[1:], ref, 1.0)


def _write(labels: np.ndarray, path: Path, spacing: tuple[float, float, float] = SPACING_XYZ) -> None:
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(spacing)
    image.SetOrigin((-5.0, 3.0, 10.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


@pytest.fixture()
def cohort(tmp_path: Path) -> tuple[Path, Path]:
    """Manifest of four subjects; predictions: perfect, shifted, missing, wrong spacing."""
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    lines = ["subject_id,image,label"]
    for subject in ("s1", "s2", "s3", "s4"):
        _write(femur_like(), ref_dir / f"{subject}_label.nii.gz")
        _write(np.zeros((14, 20, 20), np.int16), ref_dir / f"{subject}_ct.nii.gz")
        lines.append(f"{subject},ref/{subject}_ct.nii.gz,ref/{subject}_label.nii.gz")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    _write(femur_like(), pred_dir / "s1" / "segmentation.nii.gz")
    _write(femur_like(shift=1), pred_dir / "s2" / "segmentation.nii.gz")
    _write(femur_like(), pred_dir / "s4" / "segmentation.nii.gz", spacing=(0.8, 0.7, 1.5))
    return pred_dir, tmp_path / "manifest.csv"


@pytest.mark.parametrize("workers", [1, 2])
def test_cohort_rows_summary_and_files(cohort: tuple[Path, Path], tmp_path: Path, workers: int) -> None:
    pred_dir, manifest = cohort
    out = tmp_path / "results" / "metrics.csv"
    rows, summary = evaluate_cohort(pred_dir, manifest, out, tolerance_mm=1.0, workers=workers, show=False)

    assert [r["subject_id"] for r in rows] == ["s1", "s2", "s3", "s4"]
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "error"]
    assert rows[0]["periosteal_dice"] == 1.0 and rows[0]["endosteal_hd95_mm"] == 0.0
    assert rows[1]["periosteal_dice"] < 1.0
    assert "subject 's3'" in rows[2]["error"] and "segmentation.nii.gz not found" in rows[2]["error"]
    assert "subject 's4'" in rows[3]["error"] and "spacing (0.8, 0.7, 1.5) vs (0.7, 0.7, 1.5)" in rows[3]["error"]
    assert "s4_label.nii.gz" in rows[3]["error"]

    with out.open(newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [r["status"] for r in written] == ["ok", "ok", "error", "error"]
    assert float(written[1]["periosteal_dice"]) == pytest.approx(rows[1]["periosteal_dice"], rel=1e-7)

    on_disk = json.loads((out.parent / "metrics_summary.json").read_text())
    assert on_disk == summary
    assert (summary["n_subjects"], summary["n_ok"], summary["n_failed"]) == (4, 2, 2)
    dice = summary["metrics"]["periosteal_dice"]
    assert dice["mean"] == pytest.approx((1.0 + rows[1]["periosteal_dice"]) / 2)
    assert dice["worst"][0] == {"subject_id": "s2", "value": rows[1]["periosteal_dice"]}
    assert summary["metrics"]["periosteal_hd95_mm"]["worst"][0]["subject_id"] == "s2"
    assert [f["subject_id"] for f in summary["failed"]] == ["s3", "s4"]
    assert not list(out.parent.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_infinite_distances_are_strict_json(cohort: tuple[Path, Path], tmp_path: Path) -> None:
    pred_dir, manifest = cohort
    no_core = femur_like()
    no_core[no_core == 2] = 1  # predicts no endosteal region: distances are inf
    _write(no_core, pred_dir / "s2" / "segmentation.nii.gz")
    rows, summary = evaluate_cohort(pred_dir, manifest, tmp_path / "m.csv", show=False)
    assert math.isinf(rows[1]["endosteal_hd_mm"]) and rows[1]["endosteal_dice"] == 0.0
    hd = summary["metrics"]["endosteal_hd_mm"]
    assert (hd["n"], hd["n_inf"]) == (1, 1)
    assert hd["worst"][0] == {"subject_id": "s2", "value": "inf"}
    json.loads((tmp_path / "m_summary.json").read_text())  # parses: no bare Infinity/NaN


def test_cli_main_exit_codes(cohort: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred_dir, manifest = cohort
    out = tmp_path / "cli" / "metrics.csv"
    code = main(["--pred", str(pred_dir), "--ref", str(manifest), "--out", str(out), "--tolerance-mm", "0.5"])
    assert code == 1  # s3 and s4 failed
    assert out.is_file() and (out.parent / "metrics_summary.json").is_file()
    printed = capsys.readouterr().out
    assert "periosteal_dice" in printed and "s3" in printed

    (pred_dir / "s3").mkdir()
    (pred_dir / "s3" / "segmentation.nii.gz").write_bytes((pred_dir / "s1" / "segmentation.nii.gz").read_bytes())
    _write(femur_like(), pred_dir / "s4" / "segmentation.nii.gz")
    assert main(["--pred", str(pred_dir), "--ref", str(manifest), "--out", str(out)]) == 0

    assert main(["--pred", str(tmp_path / "nowhere"), "--ref", str(manifest), "--out", str(out)]) == 2
    assert "prediction folder" in capsys.readouterr().err


def test_missing_prediction_folder_raises(cohort: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="prediction folder .* not found"):
        evaluate_cohort(tmp_path / "nowhere", cohort[1], tmp_path / "m.csv", show=False)


def test_label_maps_do_not_depend_on_empty_margins() -> None:
    """Cropping to the union's bounding box is exact: padding the grid changes nothing."""
    ref, pred = femur_like(), femur_like(shift=1)
    pred[0, 0, 0] = 2  # a stray voxel on the grid corner widens the box to the border
    pad = ((4, 1), (0, 6), (3, 3))
    spacing = SPACING_XYZ[::-1]
    assert evaluate_label_maps(np.pad(pred, pad), np.pad(ref, pad), spacing) == evaluate_label_maps(pred, ref, spacing)
