"""``analyze``: a scan and a 0/1/2 label map to calibrated bone density, geometry and thickness.

Everything is computed before anything is written: :func:`analyze` returns an
:class:`AnalysisResult` held in memory, and :meth:`AnalysisResult.write` writes
each file atomically. A bad input (no femur, a label map from another grid, no
calibration) raises before a file exists.

Examples
--------
>>> from femurseg.data.synthetic import generate_subject
>>> case = generate_subject(1, "quick")
>>> result = analyze(case.image, case.label)                       # doctest: +SKIP
>>> result.calibration.method, result.report["densitometry"]["integral"]["vbmd_mg_cm3"]  # doctest: +SKIP
('phantom', 402.1)
>>> result.write("out/phantom_00001")                               # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from femurseg.analysis.calibration import CalibrationGates, CalibrationLine, calibrate
from femurseg.analysis.densitometry import compartment_table, density_image, voxel_cm3
from femurseg.analysis.dxa import dxa_projection
from femurseg.analysis.geometry import hip_geometry
from femurseg.analysis.qc import render_analysis_qc
from femurseg.analysis.regions import REGION_LABELS, TOTAL_HIP, region_map
from femurseg.analysis.sides import check_inputs, split_femora
from femurseg.analysis.profile_fit import ProfileFitSettings
from femurseg.analysis.thickness import cortical_thickness, merge_surfaces
from femurseg.atomic import atomic_path, atomic_write_csv, atomic_write_json
from femurseg.errors import AnalysisError

__all__ = ["AnalysisSettings", "AnalysisResult", "analyze", "FILES"]

#: the files :meth:`AnalysisResult.write` may write
FILES = {
    "calibration": "calibration.json", "density": "density.nii.gz", "report": "report.json",
    "summary": "summary.csv", "landmarks": "landmarks.json", "regions": "regions.nii.gz",
    "thickness": "thickness.vtp", "qc": "analysis_qc.png",
}


@dataclass(frozen=True)
class AnalysisSettings:
    """How to calibrate and what to compute (the options of ``femurseg analyze``).

    Parameters
    ----------
    phantom
        Registered phantom name or JSON definition file (rods in this scan).
    densities
        Rod densities given by the user (mg/cm³ of ``material``).
    material
        Material of ``densities`` or of a given line.
    calibration_json
        Asynchronous line from a JSON file.
    phantom_scan
        Separate phantom scan (path) for an asynchronous line.
    given
        ``(slope, intercept)`` in ``HU = intercept + slope * rho``.
    internal
        Phantomless calibration.
    gates
        Calibration quality gates.
    thickness
        Measure the cortical thickness map (``thickness.vtp``, per-region statistics).
    profile_fit
        With ``thickness``, also measure the thickness by a model fit of the CT profile
        (cortical bone mapping, :mod:`femurseg.analysis.profile_fit`); ``None`` skips it.
    dxa
        DXA-equivalent areal BMD of the neck and total hip.
    qc
        Draw ``analysis_qc.png``.
    """

    phantom: str | None = None
    densities: tuple[float, ...] | None = None
    material: str = "k2hpo4"
    calibration_json: str | None = None
    phantom_scan: str | None = None
    given: tuple[float, float] | None = None
    internal: bool = False
    gates: CalibrationGates = field(default_factory=CalibrationGates)
    thickness: bool = True
    profile_fit: ProfileFitSettings | None = field(default_factory=ProfileFitSettings)
    dxa: bool = True
    qc: bool = True


@dataclass
class AnalysisResult:
    """Everything ``analyze`` measured, in memory until :meth:`write`."""

    subject: str
    calibration: CalibrationLine
    density: sitk.Image
    report: dict[str, Any]
    summary: dict[str, Any]
    landmarks: dict[str, Any] | None = None
    regions: sitk.Image | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write the outputs into ``folder`` (created), each file atomically; returns their paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [
            atomic_write_json(folder / FILES["calibration"], self.calibration.to_dict(), default=_plain),
            _write_image(self.density, folder / FILES["density"]),
            atomic_write_json(folder / FILES["report"], self.report, default=_plain),
            atomic_write_csv(folder / FILES["summary"], [self.summary], list(self.summary)),
        ]
        if self.landmarks is not None:
            written.append(atomic_write_json(folder / FILES["landmarks"], self.landmarks, default=_plain))
        if self.regions is not None:
            written.append(_write_image(self.regions, folder / FILES["regions"]))
        for name, writer in self.extras.items():
            path = folder / FILES[name]
            with atomic_path(path, suffix=f".tmp{path.suffix}") as tmp:
                writer(tmp)
            written.append(path)
        return written


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")



def _write_image(image: sitk.Image, path: Path) -> Path:
    with atomic_path(path, suffix=".tmp.nii.gz") as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return path


def _read(image: sitk.Image | str | os.PathLike[str]) -> sitk.Image:
    if isinstance(image, sitk.Image):
        return image
    from femurseg.data.io import read_image

    return read_image(image)


def analyze(image: sitk.Image | str | os.PathLike[str], label: sitk.Image | str | os.PathLike[str],
            settings: AnalysisSettings | None = None, subject: str | None = None, **options: Any) -> AnalysisResult:
    """Calibrate ``image`` and measure the femur (or femora) of ``label``.

    Parameters
    ----------
    image
        The CT in HU (image or path).
    label
        0/1/2 label map on the image's grid (image or path).
    settings
        Calibration choice and options; keyword ``options`` override its fields
        (``analyze(image, label, phantom="qrm_bdc_3")``).
    subject
        Name written into the report (default: the image file's stem, or ``"scan"``).

    Returns
    -------
    AnalysisResult

    Raises
    ------
    AnalysisError
        Label map from another grid, values outside 0/1/2, no femur.
    CalibrationError
        No trustworthy calibration (see :func:`~femurseg.analysis.calibration.calibrate`).
    """
    if subject is None:
        subject = Path(str(image)).name.split(".")[0] if not isinstance(image, sitk.Image) else "scan"
    settings = settings or AnalysisSettings()
    if options:
        from dataclasses import replace

        settings = replace(settings, **options)
    image, label = _read(image), _read(label)
    check_inputs(image, label)
    label = sitk.Cast(label, sitk.sitkUInt8) if label.GetPixelID() != sitk.sitkUInt8 else label
    line = calibrate(image, label, phantom=settings.phantom,
                     densities=list(settings.densities) if settings.densities else None,
                     calibration_json=settings.calibration_json,
                     phantom_scan=_read(settings.phantom_scan) if settings.phantom_scan else None,
                     given=settings.given, internal=settings.internal, material=settings.material,
                     gates=settings.gates)
    density = density_image(image, line)
    rho = sitk.GetArrayViewFromImage(density)
    hu = sitk.GetArrayViewFromImage(image)
    labels = sitk.GetArrayViewFromImage(label)
    v = voxel_cm3(image)
    femora = split_femora(label)
    sides, landmarks, warnings, surfaces, pictures = [], [], list(line.warnings), [], []
    regions = np.zeros(labels.shape, np.uint8)
    for femur in femora:
        part = np.where(femur.mask, labels, 0).astype(np.uint8)
        entry: dict[str, Any] = {"side": femur.side, "centre_mm": [round(c, 2) for c in femur.centre_mm],
                                 "densitometry": compartment_table(rho, part, v, hu=hu)}
        try:
            geometry = hip_geometry(femur.mask, image, side=femur.side if len(femora) == 2 else None)
        except AnalysisError as error:
            warnings.append(f"{femur.side} femur: no hip geometry or regions ({error})")
            sides.append(entry)
            continue
        if len(femora) == 1 and geometry.side != femur.side:
            entry["side"] = femur.side = geometry.side
        marks = geometry.landmarks()
        landmarks.append(marks)
        entry["geometry"] = {k: marks[k] for k in GEOMETRY_COLUMNS}
        own = region_map(femur.mask, image, geometry)
        regions = np.where(own > 0, own, regions)
        entry["regions"] = region_tables(rho, part, own, v, hu)
        if settings.dxa:
            projection = dxa_projection(rho, part, own, image, geometry)
            entry["dxa"] = projection.numbers
            pictures.append({"landmarks": marks, "dxa": projection})
        else:
            pictures.append({"landmarks": marks})
        if settings.thickness:
            surface = cortical_thickness(part, image, own, settings.profile_fit)
            entry["thickness"] = surface.summary()
            if surface.fit is not None:
                fit = surface.fit
                entry["thickness_profile_fit"] = {
                    **surface.summary("profile_fit"),
                    "model": {"cortical_hu": _finite(fit.cortical_hu), "sigma_mm": _finite(fit.sigma_mm),
                              "estimated_from_vertices": fit.estimated_from}}
                if not np.isfinite(fit.cortical_hu):
                    warnings.append(f"{entry['side']} femur: no cortex of 3.5 mm or more to estimate the cortical HU "
                                    "from; profile-fit thickness not measured (give --cortical-hu)")
            surfaces.append(surface)
        sides.append(entry)
    sides.sort(key=lambda e: e["side"] != "right")
    landmarks.sort(key=lambda m: m["side"] != "right")
    report: dict[str, Any] = {
        "subject": subject,
        "calibration": {k: line.to_dict()[k] for k in ("method", "slope", "intercept", "r2", "material")},
        "units": {"volume": "cm3", "vbmd": f"mg/cm3 {line.material}", "bmc": f"mg {line.material}"},
        "densitometry": compartment_table(rho, labels, v, hu=hu),
        "sides": sides,
        "warnings": warnings,
    }
    summary = _summary_row(subject, line, report)
    region_image = None
    if landmarks:
        region_image = sitk.GetImageFromArray(regions)
        region_image.CopyInformation(label)
    marks_out = None if not landmarks else landmarks[0] if len(landmarks) == 1 else {"sides": landmarks}
    extras = {}
    if surfaces:
        merged = merge_surfaces(surfaces)
        extras["thickness"] = merged.write_vtp
    if settings.qc:
        pictures.sort(key=lambda f: f["landmarks"]["side"] != "right")
        shown = regions if landmarks else None
        extras["qc"] = lambda path: render_analysis_qc(path, image, line, shown, pictures, title=subject)
    return AnalysisResult(subject, line, density, report, summary, landmarks=marks_out, regions=region_image,
                          extras=extras)


#: geometry numbers copied into ``report.json`` sides and ``summary.csv``
GEOMETRY_COLUMNS = ("head_radius_mm", "neck_shaft_angle_deg", "neck_axis_length_mm", "min_neck_area_mm2")


def _finite(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def region_tables(rho: np.ndarray, part: np.ndarray, regions: np.ndarray, v: float,
                  hu: np.ndarray) -> dict[str, Any]:
    """Densitometry per hip region (and ``total_hip``) × compartment of one femur."""
    out = {name: compartment_table(rho, part, v, hu=hu, within=regions == value)
           for name, value in REGION_LABELS.items()}
    total = np.isin(regions, [REGION_LABELS[n] for n in TOTAL_HIP])
    out["total_hip"] = compartment_table(rho, part, v, hu=hu, within=total)
    return out


def _summary_row(subject: str, line: CalibrationLine, report: dict[str, Any]) -> dict[str, Any]:
    """The ``summary.csv`` row: calibration, then compartment columns, then per-side ones."""
    row: dict[str, Any] = {"subject": subject, "calibration_method": line.method, "slope": round(line.slope, 6),
                           "intercept": round(line.intercept, 4), "r2": None if line.r2 is None else round(line.r2, 6),
                           "n_femora": len(report["sides"]), "sides": "+".join(s["side"] for s in report["sides"])}
    _flatten(row, "", report["densitometry"])
    for side in report["sides"]:
        _flatten(row, f"{side['side']}_", side["densitometry"])
        for key in ("geometry", "regions"):
            if key in side:
                _flatten(row, f"{side['side']}_", side[key])
        if "dxa" in side:
            _flatten(row, f"{side['side']}_dxa_", side["dxa"])
        if "thickness" in side:
            _flatten(row, f"{side['side']}_thickness_", side["thickness"])
        if "thickness_profile_fit" in side:
            fitted = {k: v for k, v in side["thickness_profile_fit"].items() if k != "model"}
            _flatten(row, f"{side['side']}_thickness_fit_", fitted)
    row["warnings"] = len(report["warnings"])
    return row


def _flatten(row: dict[str, Any], prefix: str, data: dict[str, Any], keys: Sequence[str] | None = None) -> None:
    for name, value in data.items():
        if isinstance(value, dict):
            _flatten(row, f"{prefix}{name}_", value, keys)
        elif not isinstance(value, (list, tuple)):
            row[f"{prefix}{name}"] = value
