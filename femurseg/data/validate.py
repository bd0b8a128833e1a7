"""Validation of a cohort before any training: every problem, found at once.

Two passes. The **header pass** reads only each file's header
(``ImageFileReader.ReadImageInformation``; for a DICOM folder, the first two
slices' headers and the slice count): a missing or unreadable file, an image that
is not 3D, one that declares more voxels than ``max_voxels`` (refused before any
voxel is read), image/label geometry that differs. The **content pass** then reads
the voxels of the subjects whose headers passed: NaN/inf intensities, intensities
that cannot be CT, label values outside {0, 1, 2}, masks that are not binary,
endosteal voxels outside the periosteal mask, empty masks. Manifest rows (columns,
subject ids, sides) are checked first by :func:`parse_manifest`.

Each problem names the subject, the file and what is wrong; the rules are listed
in ``docs/data.md``. ``femurseg check --manifest M`` runs this alone.

Examples
--------
>>> report = validate_manifest("cohort/manifest.csv")   # doctest: +SKIP
>>> report.ok, [str(p) for p in report.problems][:1]    # doctest: +SKIP
(False, ["subject 's01', label s01_label.nii.gz: label values outside {0, 1, 2}: 3 (17 voxels)"])
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Collection
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
    "validate_manifest",
    "validate_records",
    "main",
]

#: the default voxel limit: 2**28 voxels, 1 GiB as float32 (a 512×512×250 scan has 65.5 M)
DEFAULT_MAX_VOXELS = 2**28


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
    """

    max_voxels: int = DEFAULT_MAX_VOXELS
    geometry_tolerance: float = 1e-3
    ct_low_hu: float = -100.0
    ct_bone_hu: float = 300.0


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


def _intensity_problems(image: np.ndarray, settings: ValidationSettings, path: Path) -> list[tuple[str, str]]:
    if np.issubdtype(image.dtype, np.floating):
        values = image
        if path.name.endswith((".nii", ".nii.gz")):
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


def main(argv: list[str] | None = None) -> int:
    """``femurseg check --manifest M [--max-voxels N] [--header-only]``: print a table, exit 1 on problems."""
    parser = argparse.ArgumentParser(prog="femurseg check", description="Validate a cohort manifest and its files.")
    parser.add_argument("--manifest", required=True, type=Path, help="the cohort CSV")
    parser.add_argument("--max-voxels", type=int, default=DEFAULT_MAX_VOXELS, help="refuse larger images")
    parser.add_argument("--header-only", action="store_true", help="skip the content pass (voxels are not read)")
    parser.add_argument("--no-reference", action="store_true", help="allow rows without a reference")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    try:
        report = validate_manifest(
            args.manifest, ValidationSettings(max_voxels=args.max_voxels),
            require_reference=not args.no_reference, content=not args.header_only,
        )
    except ManifestError as error:
        console.print(f"[red]{error}[/red]", markup=True, highlight=False)
        return 1
    for line in report.manifest_problems:
        console.print(f"[red]problem[/red] {line}", highlight=False)
    table = Table(title=f"{args.manifest}: {len(report.subjects)} subjects")
    table.add_column("subject")
    table.add_column("status")
    table.add_column("problems")
    for subject in report.subjects:
        status = "[green]ok[/green]" if subject.ok else f"[red]{len(subject.problems)} problem(s)[/red]"
        details = "\n".join(f"{p.column} {Path(p.file).name}: {p.message}" for p in subject.problems)
        table.add_row(subject.subject_id, status, details)
    console.print(table)
    n = len(report.problems)
    console.print("[green]all checks passed[/green]" if n == 0 else f"[red]{n} problem(s)[/red]")
    return 0 if n == 0 else 1
