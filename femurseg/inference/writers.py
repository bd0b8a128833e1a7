"""Atomic writers of the outputs of ``femurseg segment`` (DESIGN.md §7).

Per subject, everything is written into a hidden temporary folder beside the final
one (``<out>/.<subject_id>.tmp-<pid>-XXXX/``), which is renamed to ``<out>/<subject_id>/``
only when every file is complete: a reader never sees a half-written subject, and a
failure mid-subject leaves no ``<out>/<subject_id>/`` at all (a previous result is
replaced only by a complete new one). Single files (cohort CSVs) are written to a
temporary name and renamed.

Files of a subject folder: ``segmentation.nii.gz``, ``contours.json``,
``report.json``, ``qc.png``, ``qc.json`` (QC numbers and flags, see
:mod:`~femurseg.inference.qc`), and optionally ``probabilities.nii.gz`` (2 components:
periosteal, endosteal) and ``uncertainty.nii.gz``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from femurseg.atomic import atomic_write_csv, atomic_write_json, atomic_write_text, temporary_folder
from femurseg.data.io import write_image

__all__ = [
    "SEGMENTATION_FILE", "CONTOURS_FILE", "REPORT_FILE", "QC_FILE", "QC_REPORT_FILE", "PROBABILITIES_FILE",
    "UNCERTAINTY_FILE",
    "atomic_write_text", "write_json", "write_csv", "subject_folder", "write_subject",
    "SUMMARY_COLUMNS", "ERROR_COLUMNS", "SUMMARY_FILE", "ERRORS_FILE",
]

SEGMENTATION_FILE = "segmentation.nii.gz"
CONTOURS_FILE = "contours.json"
REPORT_FILE = "report.json"
QC_FILE = "qc.png"
QC_REPORT_FILE = "qc.json"
PROBABILITIES_FILE = "probabilities.nii.gz"
UNCERTAINTY_FILE = "uncertainty.nii.gz"
#: cohort-level files beside the subject folders (no subject may take these names)
SUMMARY_FILE = "summary.csv"
ERRORS_FILE = "errors.csv"

SUMMARY_COLUMNS = [
    "subject_id", "image", "volume_periosteal_cm3", "volume_cortical_cm3", "volume_trabecular_cm3",
    "mean_hu_periosteal", "mean_hu_cortical", "mean_hu_trabecular",
    "vbmd_periosteal_mg_cm3", "vbmd_cortical_mg_cm3", "vbmd_trabecular_mg_cm3",
    "bmc_periosteal_g", "femurs", "sides",
    "right_volume_periosteal_cm3", "right_volume_cortical_cm3", "right_volume_trabecular_cm3",
    "left_volume_periosteal_cm3", "left_volume_cortical_cm3", "left_volume_trabecular_cm3",
    "qc_pass", "qc_flags", "uncertainty", "qc_flag", "member_dice_min", "volume_cv", "seconds",
]
ERROR_COLUMNS = ["subject_id", "image", "error_type", "message"]


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write a subject's JSON output (indent 1, no NaN), atomically (:func:`femurseg.atomic.atomic_write_json`)."""
    return atomic_write_json(path, data, indent=1)


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write a cohort table (missing keys and ``None`` empty, extra keys ignored), atomically
    (:func:`femurseg.atomic.atomic_write_csv`)."""
    return atomic_write_csv(path, rows, columns)


@contextlib.contextmanager
def subject_folder(output: str | os.PathLike[str], subject_id: str) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``<output>/<subject_id>/`` when the block succeeds.

    On an exception the temporary folder is removed and an existing
    ``<output>/<subject_id>/`` is left untouched.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    tmp = temporary_folder(output, subject_id, "tmp")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = output / subject_id
    if final.exists():
        old = temporary_folder(output, subject_id, "old")
        os.replace(final, old / subject_id)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_subject(
    output: str | os.PathLike[str],
    subject_id: str,
    image: sitk.Image,
    label: sitk.Image,
    report: Mapping[str, Any],
    contours: Mapping[str, Any],
    probabilities: sitk.Image | None = None,
    uncertainty: sitk.Image | None = None,
    qc: bool = True,
    exports: Any = None,
) -> Path:
    """Write one subject's folder atomically and return its final path.

    Parameters
    ----------
    output
        Cohort output folder.
    subject_id
        Folder name (already validated as safe).
    image
        The scan in HU (for ``qc.png``).
    label
        0/1/2 ``uint8`` label map on the scan's grid.
    report, contours
        Contents of ``report.json`` and ``contours.json``.
    probabilities, uncertainty
        Optional maps on the scan's grid.
    qc
        Whether to draw ``qc.png``.
    exports
        An :class:`~femurseg.export.outputs.ExportRequest` (meshes, ...) written into
        the folder too; its report goes to ``report.json`` under ``exports``.
    """
    from femurseg.inference.qc import render_qc  # matplotlib only when drawing

    with subject_folder(output, subject_id) as folder:
        write_image(label, folder / SEGMENTATION_FILE)
        write_json(folder / CONTOURS_FILE, contours)
        if "qc" in report:
            write_json(folder / QC_REPORT_FILE, {"subject_id": subject_id, **report["qc"]})
        if probabilities is not None:
            write_image(probabilities, folder / PROBABILITIES_FILE)
        if uncertainty is not None:
            write_image(uncertainty, folder / UNCERTAINTY_FILE)
        if qc:
            volumes = report.get("volume_cm3", {})
            title = f"{subject_id}: periosteal {volumes.get('periosteal', 0):.1f} cm³"
            render_qc(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(label), label.GetSpacing(),
                      folder / QC_FILE, title=title)
        if exports is not None and not exports.empty:
            from femurseg.export.outputs import export_outputs

            done = export_outputs(label, folder, exports, image=image, source=str(report.get("image", "")),
                                  write_report=False)
            report = {**report, "exports": {"request": exports.to_dict(), **done}}
        write_json(folder / REPORT_FILE, report)  # last: its presence marks a complete folder
    return Path(output) / subject_id
