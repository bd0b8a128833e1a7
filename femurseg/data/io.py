"""Reading and writing images with SimpleITK, and building the 0/1/2 label map.

Formats read: NIfTI (``.nii``, ``.nii.gz``), NRRD, MHA/MHD and DICOM series
folders. Every error names the file.

Incomplete files are refused, never read with zeros in place of the missing data:
ITK's NIfTI reader fills a truncated ``.nii`` or ``.nii.gz`` with zeros without an
error (NRRD and MetaImage readers do raise), so :func:`verify_complete` checks,
before ITK reads, that a gzip stream decompresses to its end with a valid CRC and
length, and that a NIfTI file holds as many bytes as its header declares.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from femurseg.atomic import atomic_path
from femurseg.errors import DataError

if TYPE_CHECKING:
    from femurseg.data.manifest import ManifestRecord

__all__ = ["read_image", "read_label", "write_image", "merge_masks", "verify_complete"]

_CHUNK = 1 << 22


def _nifti_data_end(header: bytes) -> int | None:
    """Bytes a single-file NIfTI-1/2 must hold (``vox_offset`` + voxel data), or ``None`` if not NIfTI."""
    for endian in ("<", ">"):
        sizeof_hdr = struct.unpack(f"{endian}i", header[:4])[0] if len(header) >= 4 else 0
        if len(header) >= 348 and sizeof_hdr == 348:
            dims = struct.unpack(f"{endian}8h", header[40:56])
            bitpix = struct.unpack(f"{endian}h", header[72:74])[0]
            offset = int(struct.unpack(f"{endian}f", header[108:112])[0])
            break
        if len(header) >= 540 and sizeof_hdr == 540:
            bitpix = struct.unpack(f"{endian}h", header[14:16])[0]
            dims = struct.unpack(f"{endian}8q", header[16:80])
            offset = struct.unpack(f"{endian}q", header[168:176])[0]
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0 or any(d < 0 for d in dims[1:ndim + 1]):
        return None  # malformed: left to ITK's own checks
    voxels = 1
    for d in dims[1:ndim + 1]:
        voxels *= max(int(d), 1)
    return max(offset, sizeof_hdr) + voxels * bitpix // 8


def verify_complete(path: str | os.PathLike[str]) -> None:
    """Refuse a truncated or corrupt file before it is read.

    - a gzip-compressed file (``*.gz``): the whole stream is decompressed (not
      kept); a missing end, a CRC or length mismatch or a corrupt block is an error;
    - a NIfTI file (``.nii``, ``.nii.gz``): the (decompressed) file must hold the
      ``vox_offset + voxels × bitpix / 8`` bytes that its header declares.

    Other files and folders pass: their readers detect truncation themselves.

    Raises
    ------
    DataError
        Naming the file and what is missing.
    """
    path = Path(path)
    name = path.name.lower()
    if path.is_dir() or not name.endswith((".gz", ".nii")):
        return
    if name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as stream:
                head = stream.read(540)
                size = len(head)
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
        except EOFError as error:
            raise DataError(f"{path}: truncated gzip file (the compressed stream ends early: {error}); "
                            "the file is incomplete, copy it again") from error
        except (gzip.BadGzipFile, zlib.error) as error:
            raise DataError(f"{path}: corrupt gzip file ({error}); copy it again") from error
        except OSError as error:
            raise DataError(f"{path}: unreadable ({error})") from error
    else:
        with path.open("rb") as handle:
            head = handle.read(540)
        size = path.stat().st_size
    if name.endswith((".nii", ".nii.gz")):
        needed = _nifti_data_end(head)
        if needed is not None and size < needed:
            raise DataError(f"{path}: truncated NIfTI file: its header declares {needed:,} bytes of header and "
                            f"voxels but the {'decompressed ' if name.endswith('.gz') else ''}file holds "
                            f"{size:,}; the file is incomplete, copy it again")


def read_image(path: str | os.PathLike[str]) -> sitk.Image:
    """Read a 3D image file or a DICOM series folder.

    Parameters
    ----------
    path
        File (NIfTI, NRRD, MHA/MHD, ...) or a folder holding one DICOM series.

    Raises
    ------
    DataError
        If the path does not exist, cannot be read, or is truncated or corrupt
        (:func:`verify_complete`).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    verify_complete(path)
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
        raise DataError(f"{path}: unreadable ({_itk_reason(error)})") from error


def _itk_reason(error: RuntimeError) -> str:
    """ITK's last two message lines without its source location (``File cannot be read: ...; Reason: ...``)."""
    lines = [line.strip() for line in str(error).strip().splitlines()[1:] if line.strip()]
    lines = [line.split("): ", 1)[1] if line.startswith("ITK ERROR:") and "): " in line else line for line in lines]
    return "; ".join(lines[-2:]) or (str(error).strip() or "unknown error")


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
