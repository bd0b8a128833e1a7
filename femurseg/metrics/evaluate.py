"""Evaluate 0/1/2 label maps per target, and a cohort of predictions (``femurseg evaluate``).

Targets (DESIGN.md §3): ``periosteal`` = label ≥ 1, ``endosteal`` = label == 2,
``cortical`` = label == 1. For each target the metrics of
:mod:`femurseg.metrics.overlap`, :mod:`~femurseg.metrics.surface` and
:mod:`~femurseg.metrics.volume` are computed; keys are ``<target>_<metric>``, e.g.
``periosteal_dice``, ``endosteal_hd95_mm``, ``cortical_volume_error_pct``.

Examples
--------
>>> import numpy as np
>>> ref = np.zeros((12, 12, 12), np.uint8); ref[2:10, 2:10, 2:10] = 1; ref[4:8, 4:8, 4:8] = 2
>>> row = evaluate_label_maps(ref, ref, spacing=(1.0, 0.7, 0.7))
>>> row["periosteal_dice"], row["endosteal_hd95_mm"], row["cortical_volume_error_pct"]
(1.0, 0.0, 0.0)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from femurseg.atomic import atomic_write_csv, atomic_write_json
from femurseg.errors import DataError, FemursegError
from femurseg.labels import MASKS
from femurseg.metrics.overlap import overlap_metrics
from femurseg.metrics.surface import surface_metrics
from femurseg.metrics.volume import Spacing, check_spacing, volume_cm3, volume_error_pct
from femurseg.voxels import bounding_box

if TYPE_CHECKING:
    import SimpleITK as sitk

    from femurseg.data.manifest import ManifestRecord

__all__ = ["TARGETS", "METRICS", "CohortEvaluation", "evaluate_label_maps", "evaluate_cohort", "summarize"]

#: target name -> binary mask from a 0/1/2 label map
TARGETS: dict[str, Callable[[np.ndarray], np.ndarray]] = MASKS

#: metric suffix -> which way is better: "high", "low", "abs" (closest to 0) or "" (no ranking)
METRICS: dict[str, str] = {
    "dice": "high",
    "iou": "high",
    "sensitivity": "high",
    "precision": "high",
    "surface_dice": "high",
    "hd_mm": "low",
    "hd95_mm": "low",
    "assd_mm": "low",
    "volume_error_pct": "abs",
    "volume_pred_cm3": "",
    "volume_ref_cm3": "",
}

PREDICTION_FILE = "segmentation.nii.gz"
_GEOMETRY_ATOL = 1e-3
_N_WORST = 3


class CohortEvaluation(NamedTuple):
    """What :func:`evaluate_cohort` returns: per-subject rows and the summary."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def metric_keys() -> list[str]:
    """All metric column names, ``<target>_<metric>``, in CSV order."""
    return [f"{target}_{metric}" for target in TARGETS for metric in METRICS]


def _check_labels(labels: np.ndarray, name: str) -> None:
    if labels.dtype.kind == "u" and labels.size and labels.max() <= 2:
        return
    bad = (labels != 0) & (labels != 1) & (labels != 2)
    if bad.any():
        values = np.unique(labels[bad])[:5].tolist()
        raise ValueError(f"{name} label map has values {values} outside {{0, 1, 2}}")


def evaluate_label_maps(
    pred: npt.ArrayLike, ref: npt.ArrayLike, spacing: Spacing | float, tolerance_mm: float = 1.0
) -> dict[str, float]:
    """All metrics for the periosteal, endosteal and cortical targets of two label maps.

    Parameters
    ----------
    pred, ref
        0/1/2 label maps (0 background, 1 cortical, 2 trabecular) of the same shape.
    spacing
        Voxel size in mm per axis, in the array's axis order (for SimpleITK arrays,
        ``image.GetSpacing()[::-1]``).
    tolerance_mm
        Surface Dice tolerance in mm.

    Returns
    -------
    dict of str to float
        ``<target>_<metric>`` for target in ``periosteal, endosteal, cortical`` and
        metric in ``dice, iou, sensitivity, precision, surface_dice, hd_mm,
        hd95_mm, assd_mm, volume_error_pct, volume_pred_cm3, volume_ref_cm3``.

    Raises
    ------
    ValueError
        On mismatched shapes, values outside {0, 1, 2}, an invalid spacing or tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.zeros((10, 10, 10), np.uint8); ref[2:8, 2:8, 2:8] = 1; ref[4:6, 4:6, 4:6] = 2
    >>> pred = ref.copy(); pred[4:6, 4:6, 4:6] = 1
    >>> out = evaluate_label_maps(pred, ref, (1.0, 1.0, 1.0))
    >>> out["periosteal_dice"], out["endosteal_dice"], out["endosteal_hd_mm"]
    (1.0, 0.0, inf)
    """
    pred_arr, ref_arr = np.asarray(pred), np.asarray(ref)
    if pred_arr.shape != ref_arr.shape:
        raise ValueError(f"prediction shape {pred_arr.shape} differs from reference shape {ref_arr.shape}")
    _check_labels(pred_arr, "prediction")
    _check_labels(ref_arr, "reference")
    sampling = check_spacing(spacing, pred_arr.ndim)
    # Every target lies inside the periosteal union: crop once (margin 1, so surfaces and
    # counts are unchanged) instead of scanning the full grid for each target and metric.
    box = bounding_box(pred_arr > 0, ref_arr > 0, margin=1)
    if box is not None:
        pred_arr, ref_arr = pred_arr[box], ref_arr[box]
    row: dict[str, float] = {}
    for target, select in TARGETS.items():
        p, r = select(pred_arr), select(ref_arr)
        values = {**overlap_metrics(p, r), **surface_metrics(p, r, sampling, tolerance_mm)}
        values["volume_pred_cm3"] = volume_cm3(p, sampling)
        values["volume_ref_cm3"] = volume_cm3(r, sampling)
        values["volume_error_pct"] = volume_error_pct(p, r, sampling)
        row.update({f"{target}_{metric}": float(values[metric]) for metric in METRICS})
    return row


def _reference_path(record: ManifestRecord) -> Path:
    return record.label if record.label is not None else Path(str(record.periosteal))


def _check_geometry(subject: str, pred_path: Path, pred: sitk.Image, ref_path: Path, ref: sitk.Image) -> None:
    problems = []
    if pred.GetDimension() != 3:
        problems.append(f"{pred.GetDimension()}-D instead of 3-D")
    elif pred.GetSize() != ref.GetSize():
        problems.append(f"size {pred.GetSize()} vs {ref.GetSize()}")
    else:
        for name in ("Spacing", "Origin", "Direction"):
            a, b = getattr(pred, f"Get{name}")(), getattr(ref, f"Get{name}")()
            if not np.allclose(a, b, rtol=0.0, atol=_GEOMETRY_ATOL):
                fmt = ", ".join
                problems.append(f"{name.lower()} ({fmt(f'{x:g}' for x in a)}) vs ({fmt(f'{x:g}' for x in b)})")
    if problems:
        raise DataError(
            f"subject {subject!r}: prediction {pred_path} does not match the grid of reference {ref_path}: "
            + "; ".join(problems)
        )


def _evaluate_subject(record: ManifestRecord, pred_dir: Path, tolerance_mm: float) -> dict[str, Any]:
    """One CSV row; failures become an error row instead of an exception."""
    import SimpleITK as sitk

    from femurseg.data.io import read_image, read_label

    subject = record.subject_id
    pred_path = pred_dir / subject / PREDICTION_FILE
    row: dict[str, Any] = {"subject_id": subject, "status": "ok", "error": ""}
    try:
        if not pred_path.is_file():
            raise DataError(f"subject {subject!r}: prediction {pred_path} not found")
        pred_img = read_image(pred_path)
        ref_img = read_label(record)
        _check_geometry(subject, pred_path, pred_img, _reference_path(record), ref_img)
        pred_arr = sitk.GetArrayViewFromImage(pred_img)
        ref_arr = sitk.GetArrayViewFromImage(ref_img)
        try:
            row.update(evaluate_label_maps(pred_arr, ref_arr, pred_img.GetSpacing()[::-1], tolerance_mm))
        except ValueError as error:
            raise DataError(f"subject {subject!r}: {pred_path}: {error}") from error
    except FemursegError as error:
        row.update(status="error", error=str(error))
    return row


def _stats(values: list[tuple[str, float]], direction: str) -> dict[str, Any]:
    finite = np.array([v for _, v in values if math.isfinite(v)], dtype=float)
    out: dict[str, Any] = {
        "n": int(finite.size),
        "n_nan": sum(math.isnan(v) for _, v in values),
        "n_inf": sum(math.isinf(v) for _, v in values),
    }
    if finite.size:
        out.update(
            mean=float(finite.mean()),
            std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
            median=float(np.median(finite)),
            min=float(finite.min()),
            max=float(finite.max()),
        )
    else:
        out.update(mean=None, std=None, median=None, min=None, max=None)
    if direction:
        badness = {"high": lambda v: -v, "low": lambda v: v, "abs": abs}[direction]
        ranked = sorted((s, v) for s, v in values if not math.isnan(v))
        ranked.sort(key=lambda item: badness(item[1]), reverse=True)
        out["worst"] = [{"subject_id": s, "value": _json_number(v)} for s, v in ranked[:_N_WORST]]
    return out


def _json_number(value: float) -> float | str | None:
    """Strict JSON: non-finite numbers become ``"inf"``/``"-inf"`` or ``null`` (nan)."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def summarize(rows: Sequence[dict[str, Any]], tolerance_mm: float = 1.0) -> dict[str, Any]:
    """Cohort summary of per-subject rows: mean ± std, median, range and worst subjects.

    Parameters
    ----------
    rows
        Rows as made by :func:`evaluate_cohort` (``subject_id``, ``status``,
        ``error`` and the metric keys).
    tolerance_mm
        Recorded in the summary (the surface Dice tolerance used).

    Returns
    -------
    dict
        ``{"n_subjects", "n_ok", "n_failed", "tolerance_mm", "failed": [{"subject_id",
        "error"}], "metrics": {key: {"n", "n_nan", "n_inf", "mean", "std", "median",
        "min", "max", "worst": [{"subject_id", "value"}]}}}``. Statistics use the
        finite values of successful subjects; ``worst`` ranks by the metric's
        direction (``inf`` distances rank worst).

    Examples
    --------
    >>> rows = [{"subject_id": "a", "status": "ok", "error": "", "periosteal_dice": 0.9},
    ...         {"subject_id": "b", "status": "ok", "error": "", "periosteal_dice": 0.8}]
    >>> summarize(rows)["metrics"]["periosteal_dice"]["worst"][0]
    {'subject_id': 'b', 'value': 0.8}
    """
    ok = [r for r in rows if r.get("status") == "ok"]
    metrics: dict[str, Any] = {}
    for key in metric_keys():
        values = [(str(r["subject_id"]), float(r[key])) for r in ok if key in r]
        if values:
            metrics[key] = _stats(values, METRICS[key.split("_", 1)[1]])
    return {
        "n_subjects": len(rows),
        "n_ok": len(ok),
        "n_failed": len(rows) - len(ok),
        "tolerance_mm": float(tolerance_mm),
        "failed": [{"subject_id": r["subject_id"], "error": r.get("error", "")} for r in rows if r.get("status") != "ok"],
        "metrics": metrics,
    }


def _print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(value: Any) -> str:
        return "—" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))

    table = Table(title=f"femurseg evaluate: {summary['n_ok']}/{summary['n_subjects']} subjects")
    table.add_column("metric", no_wrap=True)
    for column in ("mean ± std", "median", "n"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("worst", overflow="fold")
    for key, s in summary["metrics"].items():
        worst = ", ".join(f"{w['subject_id']} ({fmt(w['value'])})" for w in s.get("worst", []))
        n = f"{s['n']}" + (f" (+{s['n_inf']} inf)" if s["n_inf"] else "") + (f" ({s['n_nan']} nan)" if s["n_nan"] else "")
        table.add_row(key, f"{fmt(s['mean'])} ± {fmt(s['std'])}", fmt(s["median"]), n, worst)
    console = Console()
    console.print(table)
    for failure in summary["failed"]:
        console.print(f"[red]failed[/red] {failure['subject_id']}: {failure['error']}", highlight=False)


def evaluate_cohort(
    pred_dir: str | os.PathLike[str],
    ref_manifest: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
    tolerance_mm: float = 1.0,
    workers: int = 1,
    *,
    show: bool = True,
) -> CohortEvaluation:
    """Evaluate ``<pred_dir>/<subject_id>/segmentation.nii.gz`` against a reference manifest.

    Each prediction must lie on its reference's grid (size, and spacing, origin
    and direction within 1e-3). A missing, unreadable or mismatched prediction
    gives an error row naming the subject and file; the other subjects are
    still evaluated. Writes ``out_csv`` (one row per subject) and
    ``<out stem>_summary.json`` beside it, each atomically (temporary file, then rename).

    Parameters
    ----------
    pred_dir
        Folder with one sub-folder per subject, as written by ``femurseg segment``.
    ref_manifest
        Manifest CSV (DESIGN.md §4) giving each subject's reference label.
    out_csv
        Per-subject metrics CSV; the summary JSON is written beside it.
    tolerance_mm
        Surface Dice tolerance in mm.
    workers
        Subjects evaluated in parallel processes (1: in this process).
    show
        Print the summary table (rich) to the terminal.

    Returns
    -------
    CohortEvaluation
        ``(rows, summary)``: rows in manifest order (``subject_id``, ``status``
        ``"ok"``/``"error"``, ``error`` and the metric keys of
        :func:`evaluate_label_maps`), and the summary of :func:`summarize`.

    Raises
    ------
    ManifestError
        If the manifest is invalid.
    DataError
        If ``pred_dir`` does not exist.
    ValueError
        If ``tolerance_mm`` is negative or ``workers`` < 1.

    Examples
    --------
    >>> rows, summary = evaluate_cohort("out/", "cohort/manifest.csv", "metrics.csv")  # doctest: +SKIP
    >>> summary["metrics"]["periosteal_dice"]["mean"]                                   # doctest: +SKIP
    0.97
    """
    from femurseg.data.manifest import read_manifest

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not math.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise ValueError(f"tolerance_mm must be finite and >= 0, got {tolerance_mm}")
    pred_root, out_path = Path(pred_dir), Path(out_csv)
    if not pred_root.is_dir():
        raise DataError(f"prediction folder {pred_root} not found")
    records = read_manifest(ref_manifest)
    job = partial(_evaluate_subject, pred_dir=pred_root, tolerance_mm=float(tolerance_mm))
    if workers == 1 or len(records) == 1:
        rows = [job(record) for record in records]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(records))) as pool:
            rows = list(pool.map(job, records))
    summary = summarize(rows, tolerance_mm)
    atomic_write_csv(out_path, rows, ["subject_id", "status", "error", *metric_keys()], float_format=".8g")
    summary_path = out_path.with_name(f"{out_path.stem}_summary.json")
    atomic_write_json(summary_path, summary)
    if show:
        _print_table(summary)
    return CohortEvaluation(rows, summary)
