"""Reading and writing images with SimpleITK, and building the 0/1/2 label map.

Formats read: NIfTI (``.nii``, ``.nii.gz``), NRRD, MHA/MHD and DICOM series
folders. Every error names the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from femurseg.atomic import atomic_path
from femurseg.errors import DataError

if TYPE_CHECKING:
    from femurseg.data.manifest import ManifestRecord

__all__ = ["read_image", "read_label", "write_image", "merge_masks"]


def read_image(path: str | os.PathLike[str]) -> sitk.Image:
    """Read a 3D image file or a DICOM series folder.

    Parameters
    ----------
    path
        File (NIfTI, NRRD, MHA/MHD, ...) or a folder holding one DICOM series.

    Raises
    ------
    DataError
        If the path does not exist or cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise DataError(f"{path}: folder holds no DICOM series")
            if len(series) > 1:
                raise DataError(f"{path}: folder holds {len(series)} DICOM series; expected one")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            return reader.Execute()
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise DataError(f"{path}: unreadable ({first_line})") from error


def merge_masks(periosteal: sitk.Image, endosteal: sitk.Image) -> sitk.Image:
    """Merge binary periosteal and endosteal masks into the 0/1/2 label map.

    Voxels of the endosteal mask outside the periosteal mask are a data error and
    are rejected by manifest validation; here they are kept as trabecular (2) so
    that the merge itself never loses information.
    """
    outer = sitk.GetArrayViewFromImage(periosteal) > 0
    inner = sitk.GetArrayViewFromImage(endosteal) > 0
    merged = np.where(inner, 2, np.where(outer, 1, 0)).astype(np.uint8)
    label = sitk.GetImageFromArray(merged)
    label.CopyInformation(periosteal)
    return label


def read_label(record: ManifestRecord) -> sitk.Image:
    """Read a subject's reference as a ``uint8`` 0/1/2 label map.

    Parameters
    ----------
    record
        A manifest record with either ``label`` or both ``periosteal`` and
        ``endosteal`` paths.

    Raises
    ------
    DataError
        If the record has no reference or a file cannot be read.
    """
    if record.label is not None:
        return sitk.Cast(read_image(record.label), sitk.sitkUInt8)
    if record.periosteal is not None and record.endosteal is not None:
        return merge_masks(read_image(record.periosteal), read_image(record.endosteal))
    raise DataError(f"subject {record.subject_id!r}: the manifest gives no reference label")


def write_image(image: sitk.Image, path: str | os.PathLike[str], compress: bool = True) -> Path:
    """Write an image atomically: to a temporary name beside ``path``, then rename.

    A reader never sees a half-written file, and an interrupted write leaves only
    a temporary file (``.*.tmp``) that is never mistaken for output.
    """
    path = Path(path)
    suffix = "".join(path.suffixes) or ".nii.gz"
    with atomic_path(path, suffix=f".tmp{suffix}") as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return path
