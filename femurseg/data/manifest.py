"""The cohort manifest: one CSV row per subject (DESIGN.md §4).

Columns: ``subject_id,image,label`` or ``subject_id,image,periosteal,endosteal``;
optional ``side`` (``left``/``right``) and ``group`` (stratum for folds). Paths are
relative to the manifest's folder. This module owns the format: :func:`read_manifest`
reads it and :func:`write_manifest` writes it (the synthetic cohort, ``cv``'s
evaluation sets).

Examples
--------
>>> records = read_manifest("cohort/manifest.csv")  # doctest: +SKIP
>>> records[0].subject_id, records[0].image.name     # doctest: +SKIP
('phantom_00000', 'phantom_00000.nii.gz')
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> rows = [ManifestRecord("s1", Path("images/s1.nii.gz"), Path("labels/s1.nii.gz"), side="left")]
>>> print(write_manifest(folder / "manifest.csv", rows).read_text())
subject_id,image,label,side,group
s1,images/s1.nii.gz,labels/s1.nii.gz,left,
<BLANKLINE>
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from femurseg.atomic import atomic_write_csv
from femurseg.errors import ManifestError

__all__ = ["ManifestRecord", "read_manifest", "parse_manifest", "check_subject_id", "write_manifest"]

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_EXTRA = "\0extra"  # csv restkey: fields beyond the header's columns
_SIDES = {"", "left", "right"}


@dataclass(frozen=True)
class ManifestRecord:
    """One subject of a cohort.

    Attributes
    ----------
    subject_id
        Unique id, safe as a file name.
    image
        CT image file or DICOM folder.
    label
        0/1/2 label map, or ``None`` when two binary masks (or no reference) are given.
    periosteal, endosteal
        Binary masks used instead of ``label``.
    side
        ``"left"``, ``"right"`` or ``None`` when unknown.
    group
        Stratum for fold assignment, or ``None``.
    """

    subject_id: str
    image: Path
    label: Path | None = None
    periosteal: Path | None = None
    endosteal: Path | None = None
    side: str | None = None
    group: str | None = None

    @property
    def has_reference(self) -> bool:
        """Whether the record gives a reference segmentation."""
        return self.label is not None or (self.periosteal is not None and self.endosteal is not None)

    @property
    def files(self) -> dict[str, Path]:
        """The record's files by column name."""
        columns = ("image", "label", "periosteal", "endosteal")
        return {c: getattr(self, c) for c in columns if getattr(self, c) is not None}


def check_subject_id(subject_id: str) -> str | None:
    """Return why ``subject_id`` is unsafe as a file name, or ``None`` if it is fine."""
    if not subject_id:
        return "empty subject id"
    if "/" in subject_id or "\\" in subject_id or ".." in subject_id:
        return f"subject id {subject_id!r} contains a path separator or '..'"
    if not _SAFE_ID.match(subject_id):
        return f"subject id {subject_id!r} must use only letters, digits, '.', '_' and '-'"
    return None


def write_manifest(path: str | os.PathLike[str], records: Sequence[ManifestRecord]) -> Path:
    """Write ``records`` as a manifest CSV, atomically; return ``path``.

    Columns: ``subject_id,image``, then ``label`` if any record has one,
    ``periosteal,endosteal`` if any record gives masks, then ``side,group``; a value
    a record lacks is an empty field. Paths are written as the records hold them: a
    relative path is read back relative to the manifest's folder.
    """
    references = [c for c in ("label", "periosteal", "endosteal") if any(getattr(r, c) is not None for r in records)]
    columns = ["subject_id", "image", *references, "side", "group"]
    rows = [{"subject_id": r.subject_id, **{c: p.as_posix() for c, p in r.files.items()}, "side": r.side,
             "group": r.group} for r in records]
    return atomic_write_csv(path, rows, columns)


def read_manifest(path: str | os.PathLike[str], require_reference: bool = True) -> list[ManifestRecord]:
    """Parse and structurally validate a manifest CSV.

    Checks columns, subject ids (unique, safe as file names), ``side`` values and
    that every listed file exists. All problems are collected and raised together.
    The files' contents are checked by :func:`femurseg.data.validate.validate_manifest`.

    Parameters
    ----------
    path
        The manifest CSV.
    require_reference
        If true, each row must give ``label`` or both ``periosteal`` and ``endosteal``.

    Returns
    -------
    list of ManifestRecord
        In file order.

    Raises
    ------
    ManifestError
        Listing every problem, each naming the subject and the file.
    """
    path = Path(path)
    records, problems = parse_manifest(path, require_reference)
    if problems:
        summary = f"manifest {path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems)
        raise ManifestError(summary, problems)
    return records


def parse_manifest(
    path: str | os.PathLike[str], require_reference: bool = True
) -> tuple[list[ManifestRecord], list[str]]:
    """Parse a manifest CSV without raising on its problems.

    Returns
    -------
    records, problems
        One record per row (also for rows with problems, so that a validator can
        go on checking their files), and one line per problem, each naming the
        manifest line, the subject and, where one is concerned, the file.

    Raises
    ------
    ManifestError
        Only if the manifest file itself does not exist or is not a readable CSV
        text (encoding other than UTF-8 or UTF-16/32 with a byte-order mark, NUL
        bytes, a malformed quote). A row with more fields than the header is a
        problem of that row.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path}: file not found")
    root = path.parent
    text = _read_text(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        raw_rows = list(reader)
    except csv.Error as error:
        raise ManifestError(f"manifest {path}: not a readable CSV file (line {reader.line_num}: {error})") from error
    problems = _check_columns(path, columns, require_reference)
    if problems:
        return [], problems
    rows = []
    for line, row in enumerate(raw_rows, start=2):
        extra = [v for v in row.pop(_EXTRA, None) or [] if v.strip()]
        if extra:
            problems.append(f"manifest {path.name} line {line}: {len(columns) + len(extra)} fields, more than the "
                            f"{len(columns)} columns of the header ({', '.join(columns)}): extra {extra[:3]} "
                            "(a comma inside a path? quote the field)")
        rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})

    records: list[ManifestRecord] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        subject = row.get("subject_id", "")
        where = f"manifest {path.name} line {line}, subject {subject!r}"
        if (reason := check_subject_id(subject)) is not None:
            problems.append(f"{where}: {reason}")
        elif subject in seen:
            problems.append(f"{where}: duplicate subject id (first on line {seen[subject]})")
        else:
            seen[subject] = line
        side = row.get("side", "").lower()
        if side not in _SIDES:
            problems.append(f"{where}: side {row.get('side')!r} must be 'left' or 'right'")
        files = {c: (root / row[c]) if row.get(c) else None for c in ("image", "label", "periosteal", "endosteal")}
        if files["image"] is None:
            problems.append(f"{where}: no image given")
        if require_reference and files["label"] is None and None in (files["periosteal"], files["endosteal"]):
            problems.append(f"{where}: no reference: give 'label' or both 'periosteal' and 'endosteal'")
        for column, file in files.items():
            if file is not None and not file.exists():
                problems.append(f"{where}: {column} file {file} not found")
        records.append(
            ManifestRecord(
                subject_id=subject,
                image=files["image"] or root,
                label=files["label"],
                periosteal=files["periosteal"] if files["label"] is None else None,
                endosteal=files["endosteal"] if files["label"] is None else None,
                side=side or None,
                group=row.get("group") or None,
            )
        )
    if not records and not problems:
        problems.append(f"manifest {path}: no subjects")
    return records, problems


def _read_text(path: Path) -> str:
    """The manifest's text: UTF-8 (with or without BOM), or UTF-16/32 with a BOM (Excel's "Unicode text").

    Raises
    ------
    ManifestError
        If the file is in another encoding or holds NUL bytes (not a text file).
    """
    data = path.read_bytes()
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            break
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise ManifestError(
            f"manifest {path}: not {encoding.upper().removesuffix('-SIG')} text (byte {error.start}: {error.reason}); "
            "save it as a UTF-8 CSV") from error
    if "\0" in text:
        raise ManifestError(f"manifest {path}: holds NUL bytes: not a text CSV file (save it as a UTF-8 CSV)")
    return text


def _check_columns(path: Path, columns: list[str], require_reference: bool) -> list[str]:
    problems = []
    if "subject_id" not in columns or "image" not in columns:
        problems.append(f"manifest {path}: needs columns 'subject_id' and 'image' (found {columns})")
    has_label = "label" in columns
    has_masks = "periosteal" in columns and "endosteal" in columns
    if require_reference and not (has_label or has_masks):
        problems.append(
            f"manifest {path}: needs a 'label' column or both 'periosteal' and 'endosteal' columns"
        )
    return problems
