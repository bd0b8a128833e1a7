"""Every export of one label map in one call: what ``femurseg export`` and ``segment --meshes ...`` run.

:class:`ExportRequest` lists the outputs asked for (each one opt-in);
:func:`export_outputs` checks the label map against the scan, writes the files
into a folder and returns a report (also written as ``export.json``).

Examples
--------
>>> request = ExportRequest(meshes=("stl", "vtp"))             # doctest: +SKIP
>>> report = export_outputs(label, "out/", request, image=scan)  # doctest: +SKIP
>>> report["meshes"]["periosteal"]["volume_difference"]         # doctest: +SKIP
-0.0003
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from femurseg.atomic import atomic_write_json
from femurseg.errors import DataError
from femurseg.export.fefiles import FE_FORMATS, FESettings, export_fe
from femurseg.export.meshes import MESH_FORMATS, MeshSettings, export_meshes
from femurseg.labels import LABEL_VALUES

__all__ = ["ExportRequest", "export_outputs", "check_label", "EXPORT_REPORT_FILE", "parse_formats"]

EXPORT_REPORT_FILE = "export.json"


def parse_formats(text: str | None, valid: tuple[str, ...], option: str) -> tuple[str, ...]:
    """``"stl,vtp"`` → ``("stl", "vtp")``; ``ValueError`` naming ``option`` and the valid formats."""
    if not text:
        return ()
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in valid]
    if unknown:
        raise ValueError(f"{option}: unknown format(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return formats


@dataclass(frozen=True)
class ExportRequest:
    """The outputs to write (all off by default).

    Parameters
    ----------
    meshes
        Surface mesh formats (``stl``, ``ply``, ``vtp``): ``periosteal.*`` and ``endosteal.*``.
    mesh_settings
        :class:`~femurseg.export.meshes.MeshSettings` (frame, smoothing, decimation).
    seg_nrrd
        ``segmentation.seg.nrrd`` for 3D Slicer (:mod:`~femurseg.export.slicer`).
    dicom_seg
        ``seg.dcm`` DICOM Segmentation (:mod:`~femurseg.export.dicomseg`), referencing
        the scan's DICOM series, or a derived series ``ct/`` for other inputs.
    fe
        FE model formats (``vtu``, ``inp``; :mod:`~femurseg.export.fefiles`) with
        ``materials.csv``, built as ``fe_settings`` says.
    density
        Density image (mg/cm³, on the scan's grid) for the FE materials, or
    hu_to_density
        ``(slope, intercept)``: density = slope · HU + intercept of the scan.
    """

    meshes: tuple[str, ...] = ()
    mesh_settings: MeshSettings = field(default_factory=MeshSettings)
    seg_nrrd: bool = False
    dicom_seg: bool = False
    fe: tuple[str, ...] = ()
    fe_settings: FESettings = field(default_factory=FESettings)
    density: str | None = None
    hu_to_density: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        parse_formats(",".join(self.meshes), MESH_FORMATS, "meshes")
        parse_formats(",".join(self.fe), FE_FORMATS, "fe")
        if self.density is not None and self.hu_to_density is not None:
            raise ValueError("give a density image or a HU -> density line, not both")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (recorded in ``report.json`` by ``segment``)."""
        return json.loads(json.dumps(asdict(self)))

    @property
    def empty(self) -> bool:
        """Whether nothing is asked for."""
        return not (self.meshes or self.seg_nrrd or self.dicom_seg or self.fe)

    def missing_packages(self) -> list[str]:
        """Optional packages the request needs that are not installed (extras ``export``, ``dicom``)."""
        needed = (["trimesh", "fast_simplification"] if self.meshes else []) + (["nrrd"] if self.seg_nrrd else []) \
            + (["highdicom", "pydicom"] if self.dicom_seg else [])
        return [name for name in needed if importlib.util.find_spec(name) is None]


def check_label(label: sitk.Image, image: sitk.Image | None = None, tolerance: float = 1e-3) -> sitk.Image:
    """The label map as ``uint8`` after checking its values (0/1/2) and its geometry against ``image``.

    Raises
    ------
    DataError
        If the label is not 3D, holds other values, or its size, spacing, origin or
        direction differ from the image's (beyond ``tolerance``).
    """
    if label.GetDimension() != 3 or label.GetNumberOfComponentsPerPixel() != 1:
        raise DataError("label map: not a 3D scalar image")
    values = np.unique(sitk.GetArrayViewFromImage(label))
    extra = sorted(set(values.tolist()) - set(LABEL_VALUES))
    if extra:
        raise DataError(f"label map: values {extra[:5]} outside {list(LABEL_VALUES)} (0 background, 1 cortical, "
                        "2 trabecular)")
    if image is not None:
        if tuple(image.GetSize()) != tuple(label.GetSize()):
            raise DataError(f"label map: size {label.GetSize()} differs from the scan's {image.GetSize()}")
        for name in ("Spacing", "Origin", "Direction"):
            a, b = getattr(image, f"Get{name}")(), getattr(label, f"Get{name}")()
            if np.max(np.abs(np.subtract(a, b))) > tolerance:
                raise DataError(f"label map: {name.lower()} {tuple(round(v, 4) for v in b)} differs from the scan's "
                                f"{tuple(round(v, 4) for v in a)} (tolerance {tolerance:g})")
    return sitk.Cast(label, sitk.sitkUInt8)


def export_outputs(
    label: sitk.Image,
    output: str | os.PathLike[str],
    request: ExportRequest,
    image: sitk.Image | None = None,
    source: str = "",
    write_report: bool = True,
) -> dict[str, Any]:
    """Write the requested outputs of ``label`` into ``output`` and return their report.

    Parameters
    ----------
    label
        0/1/2 label map (ours, a reference or another tool's).
    output
        Folder (created if needed).
    request
        :class:`ExportRequest`.
    image
        The scan in HU, on the label's grid (checked when given).
    source
        The scan's path (file metadata; a DICOM folder is referenced by DICOM-SEG).
    write_report
        Also write ``export.json``.

    Raises
    ------
    DataError
        If the label map is invalid or does not match the scan.
    """
    label = check_label(label, image)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"source": source}
    if request.meshes:
        report["meshes"] = export_meshes(label, output, request.meshes, request.mesh_settings, source=source)
    if request.seg_nrrd:
        from femurseg.export.slicer import SEG_NRRD_FILE, write_seg_nrrd

        report["seg_nrrd"] = {"file": write_seg_nrrd(label, output / SEG_NRRD_FILE).name}
    if request.dicom_seg:
        from femurseg.export.dicomseg import DICOM_SEG_FILE, write_dicom_seg

        report["dicom_seg"] = write_dicom_seg(label, output / DICOM_SEG_FILE, image=image, source=source or None)
    if request.fe:
        density = None
        if request.density is not None:
            from femurseg.data.io import read_image

            density = read_image(request.density)
            check_label(sitk.Cast(label, sitk.sitkUInt8), density)  # the same grid
        report["fe"] = export_fe(label, output, request.fe, request.fe_settings, density=density,
                                 hu_to_density=request.hu_to_density, image=image, source=source)
    if write_report:
        atomic_write_json(output / EXPORT_REPORT_FILE, report, indent=1)
    return report
