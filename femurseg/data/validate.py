"""Validation of a cohort before any training: every problem, found at once.

Two passes. The **header pass** reads only each file's header
(``ImageFileReader.ReadImageInformation``; for a DICOM folder, every slice's
header): a missing or unreadable file, an image that is not 3D, one that declares
more voxels than ``max_voxels`` (refused before any voxel is read), a scan too small
to segment or larger than a patient (physical extent), a DICOM series with missing
or uneven slices, image/label geometry that differs. The **content pass** then reads
the voxels of the subjects whose headers passed: NaN/inf intensities, intensities
that cannot be CT, label values outside {0, 1, 2}, masks that are not binary,
endosteal voxels outside the periosteal mask, empty masks. Manifest rows (columns,
subject ids, sides) are checked first by :func:`parse_manifest`.

Each problem names the subject, the file and what is wrong; the rules are listed
in ``docs/data.md``. ``femurseg check --manifest M`` runs this alone.
``femurseg segment`` applies the same scan rules to every scan it reads
(:func:`check_scan`), plus a limit on the grid the scan is resampled to.

Examples
--------
>>> report = validate_manifest("cohort/manifest.csv")   # doctest: +SKIP
>>> report.ok, [str(p) for p in report.problems][:1]    # doctest: +SKIP
(False, ["subject 's01', label s01_label.nii.gz: label values outside {0, 1, 2}: 3 (17 voxels)"])
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from femurseg.data.io import read_image
from femurseg.data.manifest import ManifestRecord, parse_manifest
from femurseg.errors import DataError, ManifestError

__all__ = [
    "ImageInfo",
    "Problem",
    "SubjectReport",
    "ValidationReport",
    "ValidationSettings",
    "read_image_info",
    "image_info",
    "scan_geometry_problems",
    "dicom_slice_problems",
    "check_scan",
    "check_image",
    "validate_manifest",
    "validate_records",
]

#: the default voxel limit: 2**28 voxels, 1 GiB as float32 (a 512×512×250 scan has 65.5 M)
DEFAULT_MAX_VOXELS = 2**28
#: largest physical extent in mm along the patient's x (left-right), y (front-back) and z
#: (head-foot) axes: a body is under 600 mm across; 2000 mm lets a whole-body CT pass
DEFAULT_MAX_EXTENT_MM = (600.0, 600.0, 2000.0)
#: largest grid a scan may be resampled to (at the model's spacing): 2·10⁸ voxels, 0.8 GB as float32
DEFAULT_MAX_GRID_VOXELS = 200_000_000


@dataclass(frozen=True)
class ValidationSettings:
    """Thresholds of the validation rules.

    Parameters
    ----------
    max_voxels
        A header declaring more voxels than this is refused before reading.
    geometry_tolerance
        Largest allowed difference of spacing (mm), origin (mm) and direction
        cosines between an image and its label or masks.
    ct_low_hu
        A CT scan's minimum must be at or below this: every hip CT holds fat
        (-120 to -80 HU) or air (-1000 HU); an MRI, or a DICOM whose rescale
        intercept was lost (raw values from 0), does not.
    ct_bone_hu
        A CT scan's maximum must be at or above this (bone is in the field of view).
    min_size
        Fewest voxels a scan may have along each axis (a 3D model cannot segment a
        single slice).
    min_extent_mm
        Smallest physical extent of a scan along each axis (a proximal femur is
        about 50 mm across).
    max_extent_mm
        Largest physical extent in mm along the patient's x, y and z axes.
    max_grid_voxels
        Largest number of voxels of the grid a scan is resampled to (checked where
        the model's spacing is known: ``segment``).
    slice_gap_tolerance
        A DICOM series whose slice steps differ from their median by more than
        this fraction has missing, duplicate or uneven slices.
    """

    max_voxels: int = DEFAULT_MAX_VOXELS
    geometry_tolerance: float = 1e-3
    ct_low_hu: float = -100.0
    ct_bone_hu: float = 300.0
    min_size: int = 4
    min_extent_mm: float = 8.0
    max_extent_mm: tuple[float, float, float] = DEFAULT_MAX_EXTENT_MM
    max_grid_voxels: int = DEFAULT_MAX_GRID_VOXELS
    slice_gap_tolerance: float = 0.25


@dataclass(frozen=True)
class Problem:
    """One problem: which subject, which file (column and path), what is wrong."""

    subject: str
    column: str
    file: str
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"subject {self.subject!r}" if self.subject else "manifest"
        if self.file:
            where += f", {self.column} {self.file}"
        return f"{where}: {self.message}"


@dataclass
class SubjectReport:
    """The problems of one subject (empty when it passed)."""

    subject_id: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ValidationReport:
    """Result of validating a manifest: manifest-level and per-subject problems."""

    manifest: Path
    manifest_problems: list[str] = field(default_factory=list)
    subjects: list[SubjectReport] = field(default_factory=list)
    records: list[ManifestRecord] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every problem, one line each, manifest-level first."""
        return self.manifest_problems + [str(p) for s in self.subjects for p in s.problems]

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_problems(self) -> None:
        """Raise :class:`ManifestError` listing every problem, if there is any."""
        problems = self.problems
        if problems:
            summary = f"manifest {self.manifest}: {len(problems)} problem(s):\n  " + "\n  ".join(problems)
            raise ManifestError(summary, problems)


@dataclass(frozen=True)
class ImageInfo:
    """Geometry and pixel type from an image's header, in SimpleITK's (x, y, z) order."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    components: int
    pixel_type: str

    @property
    def voxels(self) -> int:
        return int(np.prod(self.size, dtype=np.int64))


def read_image_info(path: str | os.PathLike[str]) -> ImageInfo:
    """Read an image's header without its voxels (a file or a DICOM series folder).

    Raises
    ------
    DataError
        If the path is missing or its header cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        if path.is_dir():
            return _dicom_info(path)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
    except RuntimeError as error:
        lines = str(error).strip().splitlines()
        raise DataError(f"{path}: unreadable ({lines[-1] if lines else 'unknown error'})") from error
    return _info(reader)


def image_info(image: sitk.Image) -> ImageInfo:
    """The :class:`ImageInfo` of an image in memory."""
    return ImageInfo(
        size=tuple(image.GetSize()), spacing=tuple(image.GetSpacing()), origin=tuple(image.GetOrigin()),
        direction=tuple(image.GetDirection()), components=image.GetNumberOfComponentsPerPixel(),
        pixel_type=image.GetPixelIDTypeAsString(),
    )


def _info(reader: sitk.ImageFileReader) -> ImageInfo:
    return ImageInfo(
        size=tuple(reader.GetSize()), spacing=tuple(reader.GetSpacing()), origin=tuple(reader.GetOrigin()),
        direction=tuple(reader.GetDirection()), components=reader.GetNumberOfComponents(),
        pixel_type=sitk.GetPixelIDValueAsString(reader.GetPixelID()),
    )


def _dicom_info(folder: Path) -> ImageInfo:
    """Header of a DICOM series as ``ImageSeriesReader`` would assemble it."""
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if len(series) != 1:
        raise DataError(f"{folder}: folder holds {len(series)} DICOM series; expected one")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    headers = []
    for name in files[:2]:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        reader.ReadImageInformation()
        headers.append(_info(reader))
    first = headers[0]
    if len(first.size) == 3 and first.size[2] > 1:  # a multi-frame file: its own header is the volume's
        return first
    z_spacing = first.spacing[2] if len(first.spacing) > 2 else 1.0
    if len(headers) == 2:
        z_spacing = float(np.linalg.norm(np.subtract(headers[1].origin, first.origin))) or z_spacing
    return ImageInfo(
        size=(*first.size[:2], len(files)), spacing=(*first.spacing[:2], z_spacing), origin=first.origin,
        direction=first.direction, components=first.components, pixel_type=first.pixel_type,
    )


# scan rules shared by check and segment ----------------------------------------------------
def _fmt(values: Sequence[float], digits: str = ".4g") -> str:
    return " x ".join(f"{v:{digits}}" for v in values)


def scan_geometry_problems(
    info: ImageInfo, settings: ValidationSettings, spacing: Sequence[float] | None = None
) -> list[tuple[str, str]]:
    """Size rules of a 3D scan, from its header alone (nothing is read or resampled).

    Parameters
    ----------
    info
        The scan's header (:func:`read_image_info` or :func:`image_info`).
    settings
        ``min_size``, ``min_extent_mm``, ``max_extent_mm``, ``max_grid_voxels``.
    spacing
        The spacing (x, y, z mm) the scan will be resampled to; ``None`` skips the
        grid rule.

    Returns
    -------
    list of (rule, message)
        ``too_small``, ``too_large_extent``, ``too_large_grid``.
    """
    size = np.asarray(info.size, dtype=np.float64)
    voxel = np.asarray(info.spacing, dtype=np.float64)
    problems = []
    if size.min() < settings.min_size or (size * voxel).min() < settings.min_extent_mm:
        problems.append(("too_small", (
            f"scan of {_fmt(info.size, 'g')} voxels ({_fmt(size * voxel, '.1f')} mm) is too small to segment: "
            f"it needs at least {settings.min_size} voxels and {settings.min_extent_mm:g} mm along every axis")))
    # extents along the patient's axes: the bounding box of the voxels, direction applied
    direction = np.abs(np.asarray(info.direction, dtype=np.float64).reshape(3, 3))
    extent = direction @ (size * voxel)
    limit = np.asarray(settings.max_extent_mm, dtype=np.float64)
    if (extent > limit).any():
        problems.append(("too_large_extent", (
            f"scan covers {_fmt(extent, '.0f')} mm (x, y, z), more than the limit of {_fmt(limit, 'g')} mm: "
            "is the voxel spacing in the header right? (raise max_extent_mm if it is)")))
    if spacing is not None:
        centres = direction @ ((size - 1) * voxel)
        grid = [int(np.floor(c / s + 1e-6)) + 1 for c, s in zip(centres, spacing)]
        voxels = int(np.prod(grid, dtype=np.float64))
        if voxels > settings.max_grid_voxels:
            problems.append(("too_large_grid", (
                f"scan resampled to the model's {_fmt(spacing, 'g')} mm spacing would be a grid of {_fmt(grid, 'd')} = "
                f"{voxels:,} voxels, more than the limit of {settings.max_grid_voxels:,} "
                "(raise max_grid_voxels if this is right)")))
    return problems


def dicom_slice_problems(folder: str | os.PathLike[str], tolerance: float = 0.25) -> list[tuple[str, str]]:
    """Missing, duplicate or unevenly spaced slices of a DICOM series folder.

    ITK assembles a series onto a uniform grid whatever the slice positions (with
    only a warning), so a gap of missing slices would be segmented squeezed. The
    positions (``0020|0032``) are projected on the slice normal (from
    ``0020|0037``); every step must lie within ``tolerance`` of the median step.
    Series without these tags pass (nothing to check).

    Returns
    -------
    list of (rule, message)
        ``dicom_slices`` when the steps are uneven.
    """
    folder = Path(folder)
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if len(series) != 1:
        return []
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    if len(files) < 3:
        return []
    positions, normal = [], None
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
            position = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
            if normal is None:
                cosines = [float(v) for v in reader.GetMetaData("0020|0037").split("\\")]
                normal = np.cross(cosines[:3], cosines[3:6])
        except (RuntimeError, ValueError):
            return []  # no positions to check (e.g. a multi-frame or non-image file)
        positions.append(position)
    along = np.sort(np.asarray(positions) @ np.asarray(normal))
    steps = np.diff(along)
    median = float(np.median(steps))
    if median <= 0:
        return [("dicom_slices", f"DICOM series of {len(files)} slices: most slices share one position "
                                 "(duplicate slices?)")]
    uneven = np.flatnonzero(np.abs(steps - median) > tolerance * median)
    if uneven.size == 0:
        return []
    k = int(uneven[np.argmax(np.abs(steps[uneven] - median))])
    return [("dicom_slices", (
        f"DICOM series slices are not evenly spaced: {uneven.size} step(s) differ from the median "
        f"{median:.3g} mm, e.g. {steps[k]:.3g} mm between slices {k + 1} and {k + 2} of {len(files)} "
        "(missing or duplicate slices?)"))]


def check_image(
    image: sitk.Image,
    settings: ValidationSettings | None = None,
    spacing: Sequence[float] | None = None,
    source: str = "image",
) -> None:
    """Refuse an image in memory that :func:`check_scan` would refuse (all but the file rules).

    NaN and inf voxels are found only if the array still holds them (SimpleITK's
    NIfTI reader turns them into 0: use :func:`check_scan` on files).

    Raises
    ------
    DataError
        Listing every problem, prefixed with ``source``.
    """
    settings = settings or ValidationSettings()
    info = image_info(image)
    if len(info.size) != 3 or info.components != 1:
        raise DataError(f"{source}: not a 3D scalar image ({len(info.size)}D, {info.components} component(s))")
    problems = scan_geometry_problems(info, settings, spacing)
    if not problems:
        problems = _intensity_problems(sitk.GetArrayViewFromImage(image), settings, None)
    if problems:
        raise DataError(f"{source}: " + "; ".join(message for _, message in problems))


def check_scan(
    path: str | os.PathLike[str],
    settings: ValidationSettings | None = None,
    spacing: Sequence[float] | None = None,
) -> sitk.Image:
    """Read a scan to segment, refusing what ``femurseg check`` refuses in an image.

    Header rules first, before any voxel is read (not 3D, ``max_voxels``, too small,
    physical extent, resampled grid at ``spacing``, DICOM slice gaps); then the file
    is read (truncation is detected: :func:`femurseg.data.io.read_image`) and its
    intensities checked (NaN/inf in the file, HU range of a CT).

    Parameters
    ----------
    path
        Image file or DICOM series folder.
    settings
        Rule thresholds.
    spacing
        The model's spacing (x, y, z mm), for the resampled-grid limit.

    Returns
    -------
    SimpleITK.Image
        The scan.

    Raises
    ------
    DataError
        Naming the file and listing every problem found.
    """
    settings = settings or ValidationSettings()
    path = Path(path)
    info = read_image_info(path)
    if len(info.size) != 3 or info.components != 1:
        raise DataError(f"{path}: not a 3D scalar image ({len(info.size)}D, size {_fmt(info.size, 'g')}, "
                        f"{info.components} component(s))")
    problems = []
    if info.voxels > settings.max_voxels:
        problems.append(("too_large", f"header declares {info.voxels:,} voxels, more than the limit of "
                                      f"{settings.max_voxels:,}"))
    problems += scan_geometry_problems(info, settings, spacing)
    if path.is_dir():
        problems += dicom_slice_problems(path, settings.slice_gap_tolerance)
    if problems:
        raise DataError(f"{path}: " + "; ".join(message for _, message in problems))
    image = read_image(path)
    problems = _intensity_problems(sitk.GetArrayViewFromImage(image), settings, path)
    if problems:
        raise DataError(f"{path}: " + "; ".join(message for _, message in problems))
    return image


# the header pass --------------------------------------------------------------------------
def _header_problems(
    record: ManifestRecord, settings: ValidationSettings
) -> tuple[list[Problem], dict[str, ImageInfo]]:
    problems: list[Problem] = []
    infos: dict[str, ImageInfo] = {}
    for column, path in record.files.items():
        def problem(rule: str, message: str, column: str = column, path: Path = path) -> Problem:
            return Problem(record.subject_id, column, str(path), rule, message)

        if not path.exists():
            problems.append(problem("missing", "file not found"))
            continue
        try:
            info = read_image_info(path)
        except DataError as error:
            problems.append(problem("unreadable", str(error).removeprefix(f"{path}: ")))
            continue
        if len(info.size) != 3 or info.components != 1:
            shape = "x".join(map(str, info.size))
            problems.append(
                problem("not_3d", f"not a 3D scalar image ({len(info.size)}D, size {shape}, {info.components} component(s))")
            )
            continue
        if info.voxels > settings.max_voxels:
            problems.append(
                problem("too_large", f"header declares {info.voxels:,} voxels ({'x'.join(map(str, info.size))}), "
                        f"more than the limit of {settings.max_voxels:,} (raise max_voxels if this is right)")
            )
            continue
        if column == "image":
            found = scan_geometry_problems(info, settings)
            if path.is_dir():
                found += dicom_slice_problems(path, settings.slice_gap_tolerance)
            problems += [problem(rule, message) for rule, message in found]
        infos[column] = info
    image = infos.get("image")
    if image is not None:
        for column in ("label", "periosteal", "endosteal"):
            if column in infos:
                for rule, message in _geometry_differences(image, infos[column], settings.geometry_tolerance):
                    problems.append(Problem(record.subject_id, column, str(record.files[column]), rule, message))
    return problems, infos


def _geometry_differences(image: ImageInfo, other: ImageInfo, tolerance: float) -> list[tuple[str, str]]:
    def fmt(values: tuple) -> str:
        return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"

    differences = []
    if image.size != other.size:
        differences.append(("geometry_size", f"size {fmt(other.size)} differs from the image's {fmt(image.size)}"))
    for name, unit in (("spacing", " mm"), ("origin", " mm"), ("direction", "")):
        a, b = getattr(image, name), getattr(other, name)
        if np.max(np.abs(np.subtract(a, b))) > tolerance:
            differences.append(
                (f"geometry_{name}", f"{name} {fmt(b)}{unit} differs from the image's {fmt(a)}{unit} (tolerance {tolerance:g})")
            )
    return differences


# the content pass -------------------------------------------------------------------------
def _content_problems(record: ManifestRecord, settings: ValidationSettings) -> list[Problem]:
    problems: list[Problem] = []

    def problem(column: str, rule: str, message: str) -> Problem:
        return Problem(record.subject_id, column, str(record.files[column]), rule, message)

    arrays: dict[str, np.ndarray] = {}
    for column, path in record.files.items():
        try:
            arrays[column] = sitk.GetArrayFromImage(read_image(path))
        except DataError as error:
            problems.append(problem(column, "unreadable", str(error).removeprefix(f"{path}: ")))
    image = arrays.pop("image", None)
    if image is not None:
        found = _intensity_problems(image, settings, record.image)
        problems += [problem("image", rule, message) for rule, message in found]
    if "label" in arrays:
        label = arrays["label"]
        values, counts = np.unique(label, return_counts=True)
        bad = [(v, c) for v, c in zip(values.tolist(), counts.tolist()) if v not in (0, 1, 2)]
        if bad:
            listed = ", ".join(f"{v:g} ({c} voxels)" for v, c in bad[:5])
            problems.append(problem("label", "label_values", f"label values outside {{0, 1, 2}}: {listed}"))
        present = set(values.tolist())
        if not present & {1, 2}:
            problems.append(problem("label", "empty_periosteal", "empty periosteal mask (no voxel labelled 1 or 2)"))
        elif 2 not in present:
            problems.append(problem("label", "empty_endosteal", "empty endosteal mask (no voxel labelled 2)"))
    for column in ("periosteal", "endosteal"):
        if column in arrays:
            values = np.unique(arrays[column])
            if np.count_nonzero(values) > 1:
                listed = ", ".join(f"{v:g}" for v in values[:6].tolist())
                problems.append(problem(column, "mask_values", f"mask is not binary: values {listed}"))
            if not np.any(values):
                problems.append(problem(column, f"empty_{column}", f"empty {column} mask"))
    if "periosteal" in arrays and "endosteal" in arrays and arrays["periosteal"].shape == arrays["endosteal"].shape:
        outside = int(np.count_nonzero((arrays["endosteal"] != 0) & (arrays["periosteal"] == 0)))
        if outside:
            problems.append(
                problem("endosteal", "endosteal_outside", f"{outside} endosteal voxels lie outside the periosteal mask")
            )
    return problems


def _intensity_problems(image: np.ndarray, settings: ValidationSettings, path: Path | None) -> list[tuple[str, str]]:
    if np.issubdtype(image.dtype, np.floating):
        values = image
        if path is not None and path.name.endswith((".nii", ".nii.gz")):
            # SimpleITK's NIfTI reader silently turns NaN and inf into 0: count them in the file itself
            import nibabel

            values = np.asanyarray(nibabel.load(str(path)).dataobj)
        if not np.isfinite(values).all():
            n_nan, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
            return [("non_finite", f"intensities contain {n_nan} NaN and {n_inf} infinite voxels")]
    low, high = float(image.min()), float(image.max())
    if low > settings.ct_low_hu or high < settings.ct_bone_hu:
        return [(
            "not_ct",
            f"intensities [{low:g}, {high:g}] cannot be CT in HU: a CT of the hip reaches "
            f"<= {settings.ct_low_hu:g} HU (fat, air) and >= {settings.ct_bone_hu:g} HU (bone); "
            "is it another modality, or a DICOM without its rescale slope/intercept?",
        )]
    return []


# entry points -----------------------------------------------------------------------------
def validate_records(
    records: list[ManifestRecord],
    settings: ValidationSettings | None = None,
    content: bool = True,
    skip_content: Collection[str] = (),
) -> list[SubjectReport]:
    """Check each record's files: the header pass for all, then the content pass.

    Parameters
    ----------
    records
        Subjects to check (files already known to exist or reported missing here).
    settings
        Rule thresholds.
    content
        If false, only the header pass runs.
    skip_content
        Subject ids whose content pass is skipped (e.g. already validated and cached
        with the same file fingerprints).

    Returns
    -------
    list of SubjectReport
        One per record, in order.
    """
    settings = settings or ValidationSettings()
    reports = []
    for record in records:
        problems, _ = _header_problems(record, settings)
        reports.append(SubjectReport(record.subject_id, problems))
    if content:
        for record, report in zip(records, reports):
            if report.ok and record.subject_id not in skip_content:
                report.problems += _content_problems(record, settings)
    return reports


def validate_manifest(
    path: str | os.PathLike[str],
    settings: ValidationSettings | None = None,
    require_reference: bool = True,
    content: bool = True,
    skip_content: Collection[str] = (),
) -> ValidationReport:
    """Validate a manifest and every file it lists; never raises on bad data.

    Returns
    -------
    ValidationReport
        ``report.ok``, ``report.problems`` (one line each) and
        ``report.raise_if_problems()``.
    """
    path = Path(path)
    records, manifest_problems = parse_manifest(path, require_reference)
    # missing files are reported by the header pass, per subject and file
    manifest_problems = [p for p in manifest_problems if not p.endswith("not found")]
    return ValidationReport(path, manifest_problems, validate_records(records, settings, content, skip_content), records)
