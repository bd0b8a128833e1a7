"""``seg.dcm``: the label map as a DICOM Segmentation object (highdicom), referencing its CT series.

- **DICOM input** (the scan is a DICOM series folder): the SEG references the
  source series (its Study, Series and SOP Instance UIDs, Frame of Reference,
  patient and study attributes are taken over), with one frame per source slice
  and segment; its frames are in the order SimpleITK reads the series, so they
  line up with the label map voxel for voxel.
- **Any other input** (NIfTI, NRRD, MHA): a self-consistent derived object. The
  scan is first written as a CT series (``ct/``: one CT Image Storage file per
  slice, int16 HU with rescale slope 1, new Study / Series / Frame of Reference
  UIDs, patient "anonymous"), and the SEG references that series, so that a viewer
  (3D Slicer, OHIF, ...) can load the two together.

Segments: 1 cortical, 2 trabecular bone with the codes of
:mod:`~femurseg.export.segments`; BINARY segmentation, empty frames omitted,
algorithm type AUTOMATIC named ``femurseg``. highdicom and pydicom are MIT
licensed (extra ``femurseg[dicom]``).

Examples
--------
>>> write_dicom_seg(label, "out/seg.dcm", image=scan, source="scans/case01/")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from femurseg.atomic import atomic_path
from femurseg.errors import DataError
from femurseg.export.segments import SegmentDefinition, segment_definitions

__all__ = ["DICOM_SEG_FILE", "DERIVED_CT_FOLDER", "write_dicom_seg", "write_ct_series", "read_dicom_series"]

DICOM_SEG_FILE = "seg.dcm"
DERIVED_CT_FOLDER = "ct"
_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _modules() -> tuple[Any, Any]:
    try:
        import highdicom
        import pydicom
    except ImportError as error:  # pragma: no cover - exercised without the extra
        raise ImportError("DICOM-SEG needs highdicom and pydicom: pip install 'femurseg[dicom]'") from error
    return highdicom, pydicom


def read_dicom_series(folder: str | os.PathLike[str]) -> list[Any]:
    """The datasets of the one DICOM series in ``folder``, in the order SimpleITK stacks them (its z order)."""
    _, pydicom = _modules()
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if len(series) != 1:
        raise DataError(f"{folder}: expected one DICOM series, found {len(series)}")
    return [pydicom.dcmread(name) for name in reader.GetGDCMSeriesFileNames(str(folder), series[0])]


def write_ct_series(image: sitk.Image, folder: str | os.PathLike[str], description: str = "femurseg derived CT") -> list[Any]:
    """Write ``image`` (HU) as a CT Image Storage series, one file per slice, and return its datasets.

    The slices carry the image's geometry (Image Position/Orientation (Patient),
    Pixel Spacing, Slice Thickness = z spacing); values are stored as int16 with
    Rescale Slope 1 and Intercept 0, clipped to the int16 range.
    """
    _, pydicom = _modules()
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hu = np.clip(np.rint(sitk.GetArrayViewFromImage(image)), -32768, 32767).astype(np.int16)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    sx, sy, sz = image.GetSpacing()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    now = datetime.datetime.now()
    datasets = []
    for k in range(hu.shape[0]):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = _CT_IMAGE_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = _CT_IMAGE_STORAGE, ds.file_meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "anonymous^", "anonymous", "", ""
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = "CT", "femurseg", 1, k + 1
        ds.SeriesDescription = description
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = _ds(image.TransformIndexToPhysicalPoint((0, 0, k)))
        ds.ImageOrientationPatient = _ds((*direction[:, 0], *direction[:, 1]))
        ds.PixelSpacing = _ds((sy, sx))  # row spacing (between rows: y), column spacing (x)
        ds.SliceThickness = _ds((sz,))[0]
        ds.Laterality, ds.PatientPosition = "", ""  # type 2C: unknown for a converted volume
        ds.KVP, ds.AcquisitionNumber = "", 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = np.ascontiguousarray(hu[k]).tobytes()
        with atomic_path(folder / f"{k + 1:05d}.dcm", suffix=".tmp.dcm") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        datasets.append(ds)
    return datasets


def write_dicom_seg(
    label: sitk.Image,
    path: str | os.PathLike[str],
    image: sitk.Image | None = None,
    source: str | os.PathLike[str] | None = None,
    segments: Sequence[SegmentDefinition] | None = None,
) -> dict[str, Any]:
    """Write ``label`` as DICOM-SEG ``path``, referencing the DICOM series ``source`` or a derived one.

    Parameters
    ----------
    label
        0/1/2 label map on the scan's grid.
    path
        Output file (``seg.dcm``).
    image
        The scan in HU (needed when ``source`` is not a DICOM folder: it becomes the derived series).
    source
        The scan's path; a folder is read as the DICOM series to reference.
    segments
        Segment definitions (default :func:`~femurseg.export.segments.segment_definitions`).

    Returns
    -------
    dict
        ``file``, ``references`` (``"source series"`` or ``"derived series ct/"``), the
        referenced ``series_instance_uid``, ``segments`` written and ``frames``.

    Raises
    ------
    DataError
        If the DICOM series does not match the label map's grid.
    """
    hd, pydicom = _modules()
    from pydicom.sr.coding import Code
    from pydicom.uid import generate_uid

    path = Path(path)
    segments = list(segments or segment_definitions())
    array = sitk.GetArrayFromImage(label).astype(np.uint8)
    if source is not None and Path(source).is_dir():
        sources = read_dicom_series(source)
        rows, columns = int(sources[0].Rows), int(sources[0].Columns)
        if (len(sources), rows, columns) != array.shape:
            raise DataError(f"{source}: DICOM series of {len(sources)} × {rows} × {columns} does not match the "
                            f"label map's {array.shape[0]} × {array.shape[1]} × {array.shape[2]}")
        references = "source series"
    else:
        if image is None:
            raise ValueError("a DICOM-SEG of a non-DICOM scan needs the scan (image) to derive its CT series")
        sources = write_ct_series(image, path.parent / DERIVED_CT_FOLDER)
        references = f"derived series {DERIVED_CT_FOLDER}/"
    present = [s for s in segments if (array == s.label_value).any()]
    if not present:
        raise ValueError("the label map holds no segment: nothing to write as DICOM-SEG")
    remap = np.zeros(256, np.uint8)
    for number, segment in enumerate(present, 1):
        remap[segment.label_value] = number
    algorithm = hd.AlgorithmIdentificationSequence(name="femurseg", version=_version(),
                                                   family=Code("123110", "DCM", "Artificial Intelligence"))
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=segment.name,
            segmented_property_category=Code(segment.category.value, segment.category.scheme, segment.category.meaning),
            segmented_property_type=Code(segment.type.value, segment.type.scheme, segment.type.meaning),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            anatomic_regions=[Code(segment.region.value, segment.region.scheme, segment.region.meaning)],
            display_color=hd.color.CIELabColor.from_rgb(*segment.color),
        )
        for number, segment in enumerate(present, 1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=remap[array], segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=300,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="femurseg",
        manufacturer_model_name="femurseg", software_versions=_version(), device_serial_number="none",
        content_description="femur: cortical and trabecular bone", content_label="FEMUR",
        series_description="femurseg segmentation",
    )
    with atomic_path(path, suffix=".tmp.dcm") as tmp:
        seg.save_as(tmp)
    return {"file": path.name, "references": references, "series_instance_uid": str(sources[0].SeriesInstanceUID),
            "segments": [s.name for s in present], "frames": int(seg.NumberOfFrames)}


def _ds(values: Sequence[float]) -> list[Any]:
    """Decimal strings of at most 16 characters (the DS limit), as precise as that allows."""
    from pydicom.valuerep import DSfloat

    return [DSfloat(float(v), auto_format=True) for v in values]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("femurseg")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"
