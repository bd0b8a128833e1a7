"""One bad-input case per validation rule: the message names subject and problem, nothing is written."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.data.datamodule import FemurDataModule
from femurseg.commands.check import main
from femurseg.data.validate import ValidationSettings, read_image_info, validate_manifest
from femurseg.errors import ManifestError

SHAPE = (10, 12, 12)  # (z, y, x)


def phantom_arrays() -> tuple[np.ndarray, np.ndarray]:
    """A tiny CT (air, fat, cortical shell, trabecular core) and its 0/1/2 label."""
    label = np.zeros(SHAPE, np.uint8)
    label[2:8, 3:9, 3:9] = 1
    label[3:7, 4:8, 4:8] = 2
    image = np.full(SHAPE, -1000, np.int16)
    image[1:9, 1:11, 1:11] = -100
    image[label == 1] = 1200
    image[label == 2] = 200
    return image, label


def to_image(array: np.ndarray, spacing=(0.8, 0.8, 1.5), origin=(10.0, -20.0, 5.0), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def write_manifest(root: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    path = root / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def good_subject(root: Path, subject: str) -> dict[str, str]:
    image, label = phantom_arrays()
    sitk.WriteImage(to_image(image), str(root / f"{subject}.nii.gz"))
    sitk.WriteImage(to_image(label), str(root / f"{subject}_label.nii.gz"))
    return {"subject_id": subject, "image": f"{subject}.nii.gz", "label": f"{subject}_label.nii.gz"}


def two_mask_subject(root: Path, subject: str, endosteal: np.ndarray | None = None) -> dict[str, str]:
    image, label = phantom_arrays()
    sitk.WriteImage(to_image(image), str(root / f"{subject}.nii.gz"))
    sitk.WriteImage(to_image((label >= 1).astype(np.uint8)), str(root / f"{subject}_peri.nii.gz"))
    inner = (label == 2).astype(np.uint8) if endosteal is None else endosteal
    sitk.WriteImage(to_image(inner), str(root / f"{subject}_endo.nii.gz"))
    return {"subject_id": subject, "image": f"{subject}.nii.gz",
            "periosteal": f"{subject}_peri.nii.gz", "endosteal": f"{subject}_endo.nii.gz"}


# each case writes a cohort (one good subject "ok" plus a bad one) and returns
# (rows, subject named in the message, phrase naming the problem)
Case = Callable[[Path], tuple[list[dict[str, str]], str, str]]


def _label_variant(root: Path, subject: str, **geometry) -> dict[str, str]:
    row = good_subject(root, subject)
    sitk.WriteImage(to_image(phantom_arrays()[1], **geometry), str(root / row["label"]))
    return row


def _image_variant(root: Path, subject: str, array: np.ndarray) -> dict[str, str]:
    row = good_subject(root, subject)
    sitk.WriteImage(to_image(array), str(root / row["image"]))
    return row


def case_missing_file(root):
    row = good_subject(root, "bad")
    (root / row["image"]).unlink()
    return [row], "bad", "file not found"


def case_unreadable_file(root):
    row = good_subject(root, "bad")
    (root / row["label"]).write_bytes(b"this is not an image")
    return [row], "bad", "unreadable"


def case_not_3d(root):
    row = good_subject(root, "bad")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((12, 12), np.int16)), str(root / row["image"]))
    return [row], "bad", "not a 3D scalar image (2D"


def case_vector_image(root):
    row = good_subject(root, "bad")
    rgb = sitk.GetImageFromArray(np.zeros((*SHAPE, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(root / row["image"]))
    return [row], "bad", "3 component(s)"


def case_too_many_voxels(root):  # the data module runs with max_voxels=2000: "ok" has 1,440
    row = good_subject(root, "bad")
    for column in ("image", "label"):
        sitk.WriteImage(to_image(np.zeros((20, 12, 12), np.int16)), str(root / row[column]))
    return [row], "bad", "header declares 2,880 voxels (12x12x20), more than the limit of 2,000"


def case_size_mismatch(root):
    row = good_subject(root, "bad")
    sitk.WriteImage(to_image(np.zeros((10, 12, 13), np.uint8)), str(root / row["label"]))
    return [row], "bad", "size (13, 12, 10) differs"


def case_spacing_mismatch(root):
    return [_label_variant(root, "bad", spacing=(0.8, 0.8, 1.51))], "bad", "spacing (0.8, 0.8, 1.51) mm differs"


def case_origin_mismatch(root):
    return [_label_variant(root, "bad", origin=(10.0, -20.0, 5.01))], "bad", "origin"


def case_direction_mismatch(root):
    flipped = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    return [_label_variant(root, "bad", direction=flipped)], "bad", "direction"


def case_label_values(root):
    row = good_subject(root, "bad")
    label = phantom_arrays()[1]
    label[0, 0, :3] = 3
    sitk.WriteImage(to_image(label), str(root / row["label"]))
    return [row], "bad", "label values outside {0, 1, 2}: 3 (3 voxels)"


def case_endosteal_outside(root):
    inner = (phantom_arrays()[1] == 2).astype(np.uint8)
    inner[0, 0, 0] = 1
    return [two_mask_subject(root, "bad", inner)], "bad", "1 endosteal voxels lie outside the periosteal mask"


def case_mask_not_binary(root):
    inner = (phantom_arrays()[1] == 2).astype(np.uint8)
    inner[4, 5, 5] = 7
    return [two_mask_subject(root, "bad", inner)], "bad", "mask is not binary"


def case_empty_periosteal(root):
    row = good_subject(root, "bad")
    sitk.WriteImage(to_image(np.zeros(SHAPE, np.uint8)), str(root / row["label"]))
    return [row], "bad", "empty periosteal mask"


def case_empty_endosteal(root):
    row = good_subject(root, "bad")
    sitk.WriteImage(to_image(np.minimum(phantom_arrays()[1], 1)), str(root / row["label"]))
    return [row], "bad", "empty endosteal mask"


def case_duplicate_id(root):
    row = good_subject(root, "ok")
    return [row], "ok", "duplicate subject id"


def case_unsafe_id_dotdot(root):
    row = good_subject(root, "bad")
    return [{**row, "subject_id": "../bad"}], "../bad", "path separator or '..'"


def case_unsafe_id_separator(root):
    row = good_subject(root, "bad")
    return [{**row, "subject_id": "site1\\bad"}], "site1\\bad", "path separator"


def case_nan(root):
    image = phantom_arrays()[0].astype(np.float32)
    image[5, 5, 5] = np.nan
    return [_image_variant(root, "bad", image)], "bad", "1 NaN and 0 infinite voxels"


def case_inf(root):
    image = phantom_arrays()[0].astype(np.float32)
    image[5, 5, :2] = np.inf
    return [_image_variant(root, "bad", image)], "bad", "0 NaN and 2 infinite voxels"


def case_mri_like(root):
    image = (phantom_arrays()[0].astype(np.float32) + 1000) / 2200  # values in [0, 1]
    return [_image_variant(root, "bad", image)], "bad", "cannot be CT in HU"


def case_raw_dicom_values(root):
    image = phantom_arrays()[0] + 1024  # rescale intercept lost: raw values from 24
    return [_image_variant(root, "bad", image)], "bad", "cannot be CT in HU"


def case_no_reference(root):
    row = good_subject(root, "bad")
    return [{**row, "label": ""}], "bad", "no reference"


CASES: dict[str, Case] = {name.removeprefix("case_"): f for name, f in globals().items() if name.startswith("case_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_before_anything_is_written(tmp_path, name):
    data = tmp_path / "data"
    data.mkdir()
    bad_rows, subject, phrase = CASES[name](data)
    manifest = write_manifest(data, [good_subject(data, "ok"), *bad_rows])
    dm = FemurDataModule(
        manifest=str(manifest), experiment_dir=str(tmp_path / "exp"), num_folds=1, test_fraction=0.0,
        cache_dir=str(tmp_path / "cache"), max_voxels=2000 if name == "too_many_voxels" else 10**8,
    )
    with pytest.raises(ManifestError) as error:
        dm.prepare_data()
    messages = [p for p in error.value.problems if f"subject {subject!r}" in p]
    assert any(phrase in p for p in messages), error.value.problems
    assert name == "duplicate_id" or not any("'ok'" in p for p in error.value.problems), error.value.problems
    assert not (tmp_path / "exp").exists() and not (tmp_path / "cache").exists()
    with pytest.raises(ManifestError):
        dm.setup("fit")  # setup without a trainer validates too
    assert not (tmp_path / "exp").exists() and not (tmp_path / "cache").exists()


def test_problems_name_the_file_and_are_reported_together(tmp_path):
    rows = [good_subject(tmp_path, "ok"), *case_label_values(tmp_path)[0]]
    rows.append({**_image_variant(tmp_path, "nan", np.full(SHAPE, np.nan, np.float32)), "subject_id": "nan"})
    rows.append({**good_subject(tmp_path, "gone"), "image": "missing.nii.gz"})
    report = validate_manifest(write_manifest(tmp_path, rows))
    assert [s.ok for s in report.subjects] == [True, False, False, False]
    assert len(report.problems) == 3
    assert any("subject 'bad', label " in p and "bad_label.nii.gz" in p for p in report.problems)
    assert any("subject 'gone', image " in p and "missing.nii.gz: file not found" in p for p in report.problems)


def test_geometry_within_tolerance_passes(tmp_path):
    rows = [_label_variant(tmp_path, "s", origin=(10.0, -20.0, 5.0004), spacing=(0.8, 0.8, 1.5004))]
    assert validate_manifest(write_manifest(tmp_path, rows)).ok


def test_two_mask_manifest_passes_and_header_only_skips_content(tmp_path):
    rows = [two_mask_subject(tmp_path, "s"), *case_nan(tmp_path)[0]]
    report = validate_manifest(write_manifest(tmp_path, rows), content=False)
    assert report.ok
    assert not validate_manifest(write_manifest(tmp_path, rows)).ok


def test_too_large_is_refused_from_the_header(tmp_path):
    row = good_subject(tmp_path, "big")
    report = validate_manifest(write_manifest(tmp_path, [row]), ValidationSettings(max_voxels=100))
    assert report.subjects[0].problems[0].rule == "too_large"
    assert read_image_info(tmp_path / row["image"]).voxels == 1440


def test_check_command_prints_a_table_and_exits_nonzero(tmp_path, capsys):
    good = write_manifest(tmp_path, [good_subject(tmp_path, "s1")])
    assert main(["--manifest", str(good)]) == 0
    assert "s1" in capsys.readouterr().out
    bad_rows = [good_subject(tmp_path, "s1"), *case_mri_like(tmp_path)[0]]
    assert main(["--manifest", str(write_manifest(tmp_path, bad_rows))]) == 1
    out = capsys.readouterr().out
    assert "bad" in out and "cannot be CT" in out and "1 problem(s)" in out
