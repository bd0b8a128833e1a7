import csv

import pytest

from femurseg.data.manifest import ManifestRecord, check_subject_id, read_manifest, write_manifest
from femurseg.errors import ManifestError


def _write(path, header, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture()
def files(tmp_path):
    for name in ("a.nii.gz", "a_label.nii.gz", "b.nii.gz", "b_label.nii.gz", "p.nii.gz", "e.nii.gz"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_reads_relative_paths_and_optional_columns(files):
    manifest = _write(files / "m.csv", ["subject_id", "image", "label", "side", "group"],
                      [["a", "a.nii.gz", "a_label.nii.gz", "Left", "op"], ["b", "b.nii.gz", "b_label.nii.gz", "", ""]])
    a, b = read_manifest(manifest)
    assert a.image == files / "a.nii.gz" and a.label == files / "a_label.nii.gz"
    assert (a.side, a.group, b.side, b.group) == ("left", "op", None, None)


def test_two_mask_columns(files):
    manifest = _write(files / "m.csv", ["subject_id", "image", "periosteal", "endosteal"], [["a", "a.nii.gz", "p.nii.gz", "e.nii.gz"]])
    (record,) = read_manifest(manifest)
    assert record.label is None and record.periosteal.name == "p.nii.gz" and record.has_reference


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([["a", "missing.nii.gz", "a_label.nii.gz"]], "subject 'a': image file"),
        ([["a", "a.nii.gz", "a_label.nii.gz"], ["a", "b.nii.gz", "b_label.nii.gz"]], "duplicate subject id"),
        ([["../evil", "a.nii.gz", "a_label.nii.gz"]], "path separator"),
        ([["a b", "a.nii.gz", "a_label.nii.gz"]], "must use only letters"),
        ([["a", "a.nii.gz", ""]], "no reference"),
    ],
)
def test_problems_name_subject_and_file(files, rows, expected):
    manifest = _write(files / "m.csv", ["subject_id", "image", "label"], rows)
    with pytest.raises(ManifestError, match="problem") as error:
        read_manifest(manifest)
    assert any(expected in p for p in error.value.problems), error.value.problems


def test_all_problems_reported_together(files):
    manifest = _write(files / "m.csv", ["subject_id", "image", "label", "side"],
                      [["a", "nope.nii.gz", "a_label.nii.gz", "up"], ["b/c", "b.nii.gz", "b_label.nii.gz", ""]])
    with pytest.raises(ManifestError) as error:
        read_manifest(manifest)
    assert len(error.value.problems) == 3
    assert "side 'up'" in str(error.value)


def test_missing_columns(files):
    manifest = _write(files / "m.csv", ["id", "image"], [["a", "a.nii.gz"]])
    with pytest.raises(ManifestError, match="needs columns 'subject_id'"):
        read_manifest(manifest)


def test_subject_id_rules():
    assert check_subject_id("phantom_00001") is None
    assert "separator" in check_subject_id("a/b")
    assert "empty" in check_subject_id("")


def test_write_manifest_round_trips_and_keeps_only_used_reference_columns(files):
    records = [ManifestRecord("a", files / "a.nii.gz", files / "a_label.nii.gz", side="left", group="op"),
               ManifestRecord("b", files / "b.nii.gz", periosteal=files / "p.nii.gz", endosteal=files / "e.nii.gz")]
    path = write_manifest(files / "written.csv", records)
    assert path.read_text().splitlines()[0] == "subject_id,image,label,periosteal,endosteal,side,group"
    assert read_manifest(path) == records
    relative = write_manifest(files / "relative.csv", [ManifestRecord("a", __import__("pathlib").Path("a.nii.gz"))])
    assert relative.read_text() == "subject_id,image,side,group\na,a.nii.gz,,\n"
    assert read_manifest(relative, require_reference=False)[0].image == files / "a.nii.gz"
