"""Truncated or corrupt image files are refused with the file named (issue 15.3)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.data.io import read_image, verify_complete
from femurseg.commands.check import main as check_main
from femurseg.data.validate import validate_manifest
from femurseg.errors import DataError


def _write(path: Path) -> Path:
    array = np.random.default_rng(0).integers(-1000, 1500, (12, 16, 16)).astype(np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def _truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.nii"])
def test_complete_files_are_read(tmp_path, name):
    path = _write(tmp_path / name)
    verify_complete(path)
    assert read_image(path).GetSize() == (16, 16, 12)


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.nii", "scan.nrrd", "scan.mha"])
def test_a_truncated_file_is_refused_naming_it(tmp_path, name):
    path = _truncate(_write(tmp_path / name))
    with pytest.raises(DataError, match=name.replace(".", r"\.")) as caught:
        read_image(path)
    assert "truncated" in str(caught.value) or "unreadable" in str(caught.value)


def test_a_gzip_with_a_complete_stream_but_missing_voxels_is_refused(tmp_path):
    path = _write(tmp_path / "scan.nii")
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(path.read_bytes()[:-100]))   # a valid gzip of a truncated NIfTI
    with pytest.raises(DataError, match=r"cut\.nii\.gz: truncated NIfTI file"):
        read_image(cut)


def test_a_gzip_with_a_bad_crc_is_refused(tmp_path):
    path = _write(tmp_path / "scan.nii.gz")
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF   # the CRC-32 of the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"scan\.nii\.gz: corrupt gzip file"):
        read_image(path)


def test_check_and_fit_validation_report_the_truncated_file(tmp_path, capsys):
    image = _truncate(_write(tmp_path / "s1.nii.gz"))
    label = tmp_path / "s1_label.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((12, 16, 16), np.uint8)), str(label))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("subject_id,image,label\ns1,s1.nii.gz,s1_label.nii.gz\n")
    report = validate_manifest(manifest)   # what fit runs before training
    assert not report.ok
    assert any("s1.nii.gz" in p and "truncated" in p for p in report.problems)
    assert check_main(["--manifest", str(manifest)]) == 1
    assert "truncated" in capsys.readouterr().out
    assert image.exists()
