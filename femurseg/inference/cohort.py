"""Segment a cohort through ``Trainer.predict``: many scans, any number of devices.

The inputs (one scan, a folder of scans, or a manifest) become a dataset of
:class:`ScanInput`; :class:`PredictionModule` (a ``LightningModule`` holding the
ensemble) segments one scan per ``predict_step``, and :class:`SubjectWriter` (a
``BasePredictionWriter``) writes each subject's folder atomically from the rank that
segmented it. Under DDP Lightning gives each rank its own subjects (no repeats).

A scan that fails, whatever the exception (unreadable, not 3D, a bug while drawing
``qc.png``, out of memory), is recorded and skipped; the others finish. SIGTERM and
SIGINT stop the cohort at once with :class:`~femurseg.errors.Terminated` (exit status
143 or 130): the subject in progress leaves no folder, the finished ones are kept and
listed, the others are rows of ``errors.csv`` ("not segmented: stopped by SIGTERM").
A rerun into the same folder removes the temporaries a killed run left and keeps
each subject already segmented from the same scan, checkpoints and settings
(``overwrite=True`` redoes them all). At the end rank 0
writes ``summary.csv`` (one row per segmented subject) and ``errors.csv`` (one row per
failed subject, always written, possibly empty). A subject id that would collide with
those files (``summary.csv``, ``errors.csv``, any case) fails as a row of
``errors.csv`` and gets no folder. :func:`run_cohort` returns the number of failures.

Examples
--------
>>> inputs = discover_inputs("scans/")                                            # doctest: +SKIP
>>> failed = run_cohort(inputs, "out/", predictor, trainer_kwargs={"devices": 2})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from femurseg.atomic import remove_stale_temporaries
from femurseg.data.manifest import check_subject_id, read_manifest
from femurseg.data.validate import ValidationSettings, check_scan
from femurseg.errors import DataError, Terminated
from femurseg.inference.predictor import Predictor, SegmentationResult, scan_name
from femurseg.inference.writers import (
    ERROR_COLUMNS, ERRORS_FILE, QC_FILE, REPORT_FILE, SUMMARY_COLUMNS, SUMMARY_FILE, write_csv,
)
from femurseg.signals import stop_on_signals

__all__ = ["ScanInput", "SubjectOutcome", "discover_inputs", "PredictionModule", "SubjectWriter", "run_cohort",
           "output_name_problem", "write_cohort_tables"]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: errors that fail one subject: every ``Exception`` (a bug or ``MemoryError`` in one scan
#: must not lose the others); ``KeyboardInterrupt`` and ``SystemExit`` stop the run
SUBJECT_ERRORS = (Exception,)


@dataclass(frozen=True)
class ScanInput:
    """One scan to segment: its output name and its file or DICOM folder."""

    subject_id: str
    path: Path


@dataclass
class SubjectOutcome:
    """What ``predict_step`` returns: a result, or the error that stopped the subject."""

    scan: ScanInput
    result: SegmentationResult | None = None
    error: BaseException | None = None
    seconds: float = 0.0


def _safe_id(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-") or "scan"
    return cleaned.replace("..", "_")


def discover_inputs(source: str | os.PathLike[str]) -> list[ScanInput]:
    """The scans of a file, a folder or a manifest.

    - ``*.csv``: a manifest (DESIGN.md §4; references are not needed);
    - a folder with image files (NIfTI, NRRD, MHA/MHD) or sub-folders: one scan per
      file and per sub-folder (read as a DICOM series), sorted by name;
    - a folder with neither (e.g. only ``.dcm`` files): one DICOM series;
    - any other file: one scan.

    Raises
    ------
    DataError
        If the path does not exist, two scans get the same name, or a folder holds no scan.
    ManifestError
        If the manifest is invalid.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(f"input {source}: not found")
    if source.is_file() and source.suffix.lower() == ".csv":
        return [ScanInput(r.subject_id, r.image) for r in read_manifest(source, require_reference=False)]
    if source.is_file():
        return [ScanInput(_safe_id(scan_name(source)), source)]
    entries = sorted(p for p in source.iterdir() if not p.name.startswith("."))
    scans = [p for p in entries if p.is_dir() or (p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))]
    if not scans:
        if any(p.is_file() for p in entries):
            return [ScanInput(_safe_id(source.name), source)]
        raise DataError(f"input {source}: folder holds no scans")
    inputs = [ScanInput(_safe_id(scan_name(p)), p) for p in scans]
    seen: dict[str, Path] = {}
    for item in inputs:
        if item.subject_id in seen:
            raise DataError(f"input {source}: {seen[item.subject_id].name} and {item.path.name} both map to "
                            f"subject id {item.subject_id!r}")
        seen[item.subject_id] = item.path
    return inputs


class _Scans(Dataset):
    def __init__(self, inputs: Sequence[ScanInput]) -> None:
        self.inputs = list(inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> ScanInput:
        return self.inputs[index]


def _single(batch: list[ScanInput]) -> ScanInput:
    return batch[0]


class PredictionModule(pl.LightningModule):
    """``Trainer.predict`` wrapper: one scan per step, read and segmented on this rank's device.

    Parameters
    ----------
    predictor
        The ensemble; its network becomes a submodule, so Lightning moves it to the device.
    checks
        Rules each scan must pass before it is segmented (those of ``femurseg check``
        plus the resampled-grid limit at the checkpoints' spacing; see
        :func:`femurseg.data.validate.check_scan`).
    """

    def __init__(self, predictor: Predictor, checks: ValidationSettings | None = None) -> None:
        super().__init__()
        self.predictor = predictor
        self.network = predictor.network
        self.checks = checks or ValidationSettings()

    def transfer_batch_to_device(self, batch: ScanInput, device: Any, dataloader_idx: int) -> ScanInput:
        """A batch is a file reference; the scan is read inside the step."""
        return batch

    def predict_step(self, batch: ScanInput, batch_idx: int, dataloader_idx: int = 0) -> SubjectOutcome:
        start = time.perf_counter()
        try:
            spacing = self.predictor.checkpoints.preprocessing.spacing
            image = check_scan(batch.path, self.checks, spacing)  # before any resampling
            result = self.predictor.predict(image, batch.subject_id, str(batch.path))
        except SUBJECT_ERRORS as error:
            return SubjectOutcome(batch, error=error, seconds=time.perf_counter() - start)
        return SubjectOutcome(batch, result=result, seconds=time.perf_counter() - start)


class SubjectWriter(BasePredictionWriter):
    """Writes each subject's folder when its step ends; rank 0 writes the cohort CSVs at the end.

    Parameters
    ----------
    output
        Cohort output folder.
    qc
        Whether to draw ``qc.png``.
    rejected, kept
        Error rows of subjects refused before segmenting, and summary rows of
        subjects kept from an earlier run; rank 0 adds them to the cohort CSVs.
    exports
        Optional :class:`~femurseg.export.outputs.ExportRequest` written per subject.
    """

    def __init__(self, output: str | os.PathLike[str], qc: bool = True,
                 rejected: Sequence[dict[str, Any]] = (), kept: Sequence[dict[str, Any]] = (),
                 exports: Any = None) -> None:
        super().__init__(write_interval="batch")
        self.output = Path(output)
        self.qc = qc
        self.exports = exports
        self.rejected = list(rejected)
        self.kept = list(kept)
        self.rows: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.failed = 0
        self._parts: Path | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows, self.errors = [], []
        token = trainer.strategy.broadcast(f"{os.getpid()}-{time.time_ns()}")
        self._parts = self.output / f".parts-{token}"

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: SubjectOutcome,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        outcome = prediction
        row = None
        if outcome.result is not None:
            try:
                outcome.result.write(self.output, qc=self.qc, exports=self.exports)
                row = _summary_row(outcome)
            except SUBJECT_ERRORS as error:
                outcome.error = error
        if row is None:
            self.errors.append(_error_row(outcome))
        else:
            self.rows.append(row)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._parts is not None
        self._parts.mkdir(parents=True, exist_ok=True)
        part = self._parts / f"rank{trainer.global_rank}.json"
        part.write_text(json.dumps({"rows": self.rows, "errors": self.errors}))
        trainer.strategy.barrier("femurseg-segment-parts")
        failed = 0
        if trainer.is_global_zero:
            rows, errors = list(self.kept), list(self.rejected)
            for path in sorted(self._parts.glob("rank*.json")):
                data = json.loads(path.read_text())
                rows += data["rows"]
                errors += data["errors"]
            shutil.rmtree(self._parts, ignore_errors=True)
            failed = write_cohort_tables(self.output, rows, errors)
        self.failed = int(trainer.strategy.broadcast(failed))


def _summary_row(outcome: SubjectOutcome) -> dict[str, Any]:
    assert outcome.result is not None
    return _report_row(outcome.scan, outcome.result.report, outcome.seconds)


def _report_row(scan: ScanInput, report: dict[str, Any], seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"subject_id": scan.subject_id, "image": str(scan.path),
                           "uncertainty": report.get("uncertainty"), "qc_flag": report.get("qc_flag"),
                           "seconds": round(float(seconds), 2)}
    if "qc" in report:
        row["qc_pass"] = report["qc"]["pass"]
        row["qc_flags"] = " ".join(report["qc"]["flags"])
        row.update({k: (report["qc"].get("ensemble") or {}).get(k) for k in ("member_dice_min", "volume_cv")})
    for name in ("periosteal", "cortical", "trabecular"):
        row[f"volume_{name}_cm3"] = report["volume_cm3"][name]
        row[f"mean_hu_{name}"] = report["mean_hu"][name]
        if "vbmd_mg_cm3" in report:
            row[f"vbmd_{name}_mg_cm3"] = report["vbmd_mg_cm3"][name]
    if "bmc_g" in report:
        row["bmc_periosteal_g"] = report["bmc_g"]["periosteal"]
    femurs = report.get("femurs", [])
    row["femurs"] = len(femurs)
    row["sides"] = " ".join(f["side"] for f in femurs)
    for femur in femurs:  # one femur per side (a bilateral scan has both)
        for name in ("periosteal", "cortical", "trabecular"):
            row[f"{femur['side']}_volume_{name}_cm3"] = femur["volume_cm3"][name]
    return row


def _error_row(outcome: SubjectOutcome) -> dict[str, Any]:
    error = outcome.error
    message = str(error).strip().replace("\n", " ") or type(error).__name__
    if not message.startswith("subject "):
        message = f"subject {outcome.scan.subject_id!r}: {message}"
    return {"subject_id": outcome.scan.subject_id, "image": str(outcome.scan.path),
            "error_type": type(error).__name__, "message": message}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def completed_row(output: Path, scan: ScanInput, predictor: Predictor, qc: bool,
                  exports: Any = None) -> dict[str, Any] | None:
    """The summary row of a subject already segmented into ``output`` the same way, or ``None``.

    Complete means: ``report.json`` (written last) is readable, and records this
    scan, these checkpoints and these settings (and the same export request, if
    any); ``qc.png`` is there if asked for.
    """
    folder = output / scan.subject_id
    try:
        report = json.loads((folder / REPORT_FILE).read_text())
        same = (report.get("image") == str(scan.path)
                and report.get("checkpoints") == _plain(predictor.checkpoints.describe())
                and report.get("settings") == _plain(predictor.settings.to_dict())
                and (not qc or (folder / QC_FILE).is_file())
                and (report.get("exports") or {}).get("request") == (
                    exports.to_dict() if exports is not None and not exports.empty else None))
        return _report_row(scan, report, report.get("seconds") or 0.0) if same else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_cohort_tables(output: str | os.PathLike[str], rows: Sequence[dict[str, Any]],
                        errors: Sequence[dict[str, Any]]) -> int:
    """Write ``summary.csv`` and ``errors.csv`` atomically; return the number of errors.

    Summary rows are sorted with the scans that failed QC (``qc_pass`` false) first,
    then by subject; errors by subject.
    """
    output = Path(output)
    write_csv(output / SUMMARY_FILE, sorted(rows, key=lambda r: (r.get("qc_pass") is not False, r["subject_id"])),
              SUMMARY_COLUMNS)
    write_csv(output / ERRORS_FILE, sorted(errors, key=lambda r: r["subject_id"]), ERROR_COLUMNS)
    return len(errors)


def output_name_problem(subject_id: str) -> str | None:
    """Why ``subject_id`` cannot name a subject folder of a cohort output, or ``None``.

    Ids must be safe file names (:func:`~femurseg.data.manifest.check_subject_id`) and
    must not collide with the cohort's own files (``summary.csv``, ``errors.csv``),
    compared without case so that case-insensitive file systems are safe too.
    """
    if (reason := check_subject_id(subject_id)) is not None:
        return reason
    if subject_id.casefold() in {SUMMARY_FILE.casefold(), ERRORS_FILE.casefold()}:
        return f"subject id {subject_id!r} is the name of a cohort output file; rename the subject"
    return None


def run_cohort(
    inputs: Sequence[ScanInput],
    output: str | os.PathLike[str],
    predictor: Predictor,
    trainer_kwargs: dict[str, Any] | None = None,
    qc: bool = True,
    checks: ValidationSettings | None = None,
    overwrite: bool = False,
    exports: Any = None,
) -> int:
    """Segment every scan, write the subject folders and the cohort CSVs; return the number of failures.

    Parameters
    ----------
    inputs
        Scans (:func:`discover_inputs`).
    output
        Output folder.
    predictor
        The ensemble.
    trainer_kwargs
        ``lightning.pytorch.Trainer`` arguments (``accelerator``, ``devices``,
        ``strategy``, ...); logging and checkpointing are off.
    qc
        Whether to draw ``qc.png`` per subject.
    checks
        Thresholds of the scan rules (minimum size, physical extent, resampled grid,
        HU range, ...); a scan that breaks one fails as a row of ``errors.csv``.
    overwrite
        Segment every scan again. By default a subject whose folder is complete and
        was made from the same scan, checkpoints and settings is kept (a rerun after
        a crash or a signal only does the rest); its row is rebuilt from its
        ``report.json``.
    exports
        Optional :class:`~femurseg.export.outputs.ExportRequest`: surface meshes (and
        the other exports) written into each subject's folder.

    Temporary folders and files that a killed run left in ``output`` are removed first.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output)
    rejected: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    todo: list[ScanInput] = []
    for item in inputs:
        if (reason := output_name_problem(item.subject_id)) is not None:
            rejected.append(_error_row(SubjectOutcome(item, error=DataError(f"input {item.path}: {reason}"))))
        elif not overwrite and (row := completed_row(output, item, predictor, qc, exports)) is not None:
            kept.append(row)
        else:
            todo.append(item)
    if not todo:
        return write_cohort_tables(output, kept, rejected)
    writer = SubjectWriter(output, qc=qc, rejected=rejected, kept=kept, exports=exports)
    kwargs = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
              "enable_model_summary": False, "enable_progress_bar": False, **(trainer_kwargs or {})}
    kwargs["callbacks"] = [*kwargs.get("callbacks", []), writer]
    trainer = pl.Trainer(**kwargs)
    loader = DataLoader(_Scans(todo), batch_size=1, shuffle=False, num_workers=0, collate_fn=_single)
    try:
        with stop_on_signals():
            trainer.predict(PredictionModule(predictor, checks), loader, return_predictions=False)
    except Terminated as stop:
        if trainer.world_size == 1:  # record what was finished; the rest is listed as not segmented
            finished = {r["subject_id"] for r in writer.rows + writer.errors}
            stopped = [_error_row(SubjectOutcome(item, error=DataError(f"not segmented: {stop}")))
                       for item in todo if item.subject_id not in finished]
            for row in stopped:
                row["error_type"] = type(stop).__name__
            write_cohort_tables(output, [*kept, *writer.rows], [*rejected, *writer.errors, *stopped])
        raise
    return writer.failed
