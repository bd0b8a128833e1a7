"""DICOM series, NRRD, MHA and two-mask manifests load to the same 0/1/2 map as NIfTI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from femurseg.data.datamodule import load_subject
from femurseg.data.io import read_image, read_label
from femurseg.data.manifest import read_manifest
from femurseg.data.preprocess import Preprocessing
from femurseg.data.validate import read_image_info, validate_manifest


def write_dicom_series(image: sitk.Image, folder: Path) -> Path:
    """Write a 3D int16 CT as one DICOM file per slice, with the tags a series reader needs."""
    folder.mkdir(parents=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6],
                                                  direction[1], direction[4], direction[7]))
    series = "1.2.826.0.1.3680043.2.1125.1.1"
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        tags = {
            "0008|0060": "CT", "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL",
            "0010|0020": "phantom", "0020|000d": series + ".0", "0020|000e": series,
            "0020|0013": str(k + 1), "0020|0037": orientation,
            "0020|0032": "\\".join(_ds(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0018|0050": f"{image.GetSpacing()[2]:.6f}", "0028|1052": "0", "0028|1053": "1",
            "0008|0018": f"{series}.{k + 1}",
        }
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{k:04d}.dcm"))
        writer.Execute(plane)
    return folder


def _ds(value: float) -> str:
    """A DICOM decimal string: at most 16 characters, as precise as they allow."""
    return f"{value:.15g}"[:16]


def _manifest(root: Path, header: list[str], row: list[str]) -> Path:
    path = root / f"manifest_{len(list(root.glob('manifest_*')))}.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, row])
    return path


@pytest.fixture()
def reference(tiny_records):
    record = tiny_records[1]
    return record, read_image(record.image), read_label(record)


def _same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)


def test_dicom_series_and_two_masks_load_like_nifti(reference, tmp_path):
    record, image, label = reference
    folder = write_dicom_series(image, tmp_path / "dicom")
    labels = sitk.GetArrayFromImage(label)
    for name, mask in (("peri", labels >= 1), ("endo", labels == 2)):
        out = sitk.GetImageFromArray(mask.astype(np.uint8))
        out.CopyInformation(label)
        sitk.WriteImage(out, str(tmp_path / f"{name}.nii.gz"))
    manifest = _manifest(tmp_path, ["subject_id", "image", "periosteal", "endosteal"],
                         ["s", "dicom", "peri.nii.gz", "endo.nii.gz"])
    (loaded,) = read_manifest(manifest)
    dicom = read_image(loaded.image)
    _same_geometry(dicom, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(dicom), sitk.GetArrayFromImage(image))
    merged = read_label(loaded)
    assert merged.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(merged), labels)
    # the header pass assembles the DICOM geometry without reading pixels, and the cohort validates
    info = read_image_info(folder)
    assert info.size == image.GetSize()
    np.testing.assert_allclose(info.spacing, image.GetSpacing(), atol=1e-4)
    assert validate_manifest(manifest).ok, validate_manifest(manifest).problems
    settings = Preprocessing(spacing=(3.0, 3.0, 3.0))
    a, b = load_subject(loaded, settings), load_subject(record, settings)
    assert torch.equal(a["label"].data, b["label"].data)
    assert torch.allclose(a["image"].data, b["image"].data, atol=1e-4)


@pytest.mark.parametrize("extension", [".nrrd", ".mha", ".nii"])
def test_nrrd_mha_and_plain_nifti_load_like_nifti_gz(reference, tmp_path, extension):
    record, image, label = reference
    sitk.WriteImage(image, str(tmp_path / f"image{extension}"))
    sitk.WriteImage(label, str(tmp_path / f"label{extension}"))
    manifest = _manifest(tmp_path, ["subject_id", "image", "label"], ["s", f"image{extension}", f"label{extension}"])
    (loaded,) = read_manifest(manifest)
    again = read_image(loaded.image)
    _same_geometry(again, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(again), sitk.GetArrayFromImage(image))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_label(loaded)), sitk.GetArrayFromImage(label))
    assert validate_manifest(manifest).ok
