"""Manifests that used to end in a traceback give a clear error instead (issue 15.7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from femurseg.data.manifest import parse_manifest, read_manifest
from femurseg.commands.check import main as check_main
from femurseg.errors import ManifestError


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "a.nii.gz").write_bytes(b"")
    (tmp_path / "b.nii.gz").write_bytes(b"")
    return tmp_path


def test_a_row_with_more_fields_than_the_header_is_a_problem_of_that_row(folder):
    manifest = folder / "manifest.csv"
    manifest.write_text("subject_id,image\nS1,a.nii.gz\nS2,b.nii.gz,x,y\n")
    records, problems = parse_manifest(manifest, require_reference=False)
    assert [r.subject_id for r in records] == ["S1", "S2"]
    (problem,) = problems
    assert "line 3" in problem and "4 fields" in problem and "2 columns" in problem
    with pytest.raises(ManifestError, match="more than the 2 columns"):
        read_manifest(manifest, require_reference=False)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig", "utf-32"])
def test_unicode_manifests_with_a_byte_order_mark_are_read(folder, encoding):
    manifest = folder / "manifest.csv"
    text = "subject_id,image\r\nS1,a.nii.gz\r\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    manifest.write_bytes(data)
    assert [r.subject_id for r in read_manifest(manifest, require_reference=False)] == ["S1"]


@pytest.mark.parametrize("data, phrase", [
    ("subject_id,image\nS\xe9,a.nii.gz\n".encode("latin-1"), "not UTF-8 text"),
    (b"subject_id,image\nS1,a.nii.gz\n\x00\x00\x00", "NUL bytes"),
])
def test_other_encodings_and_binary_files_are_refused_clearly(folder, capsys, data, phrase):
    manifest = folder / "manifest.csv"
    manifest.write_bytes(data)
    with pytest.raises(ManifestError, match=phrase):
        read_manifest(manifest, require_reference=False)
    assert check_main(["--manifest", str(manifest), "--no-reference"]) == 1
    assert phrase in " ".join(capsys.readouterr().out.split())   # rich wraps long lines
