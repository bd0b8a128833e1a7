"""``femurseg cv``: k-fold cross-validation as in the reference study.

For each selected fold, ``femurseg fit ... --data.fold K`` runs in its run folder
``<runs_root>/<experiment>/fold_<K>/`` (DESIGN.md §6). A fold is **complete** when
``fold_<K>/done.json`` exists (written atomically after ``fit`` returned 0 and left
``checkpoints/best.ckpt``): complete folds are skipped. A fold with
``checkpoints/last.ckpt`` but no ``done.json`` was interrupted (or trained outside
``cv``, e.g. by an array job) and is resumed with ``--ckpt_path last.ckpt``; if its
training had already finished, Lightning stops at once and the fold is marked done.

A SIGTERM to ``cv`` is passed on to the running ``fit``, which stops after its
current batch; ``cv`` then exits with status 143 without writing ``done.json``
(a ``fit`` that exits with any other status than 0 is never marked done either), so
a rerun resumes the fold. SIGINT (Ctrl-C) reaches the whole foreground process group,
``fit`` included; ``cv`` waits for it and exits with status 130.

Each ``fit`` runs as a child process (``python -m femurseg fit``), never in this
process: Lightning's ``WandbLogger`` reuses a W&B run left open by the previous
fold (it never calls ``wandb.finish``), seeds and other global state would carry
from fold to fold, and a ``ddp`` strategy re-launches ``sys.argv`` for its other
ranks, which would re-run the whole ``cv`` loop instead of one ``fit``. A child per
fold is also exactly what a cluster array job runs (``--print-commands``).

After training, each fold's validation subjects are segmented with that fold's
``best.ckpt`` (out-of-fold predictions) and evaluated against the reference; with
``--test`` the ensemble of all selected folds' ``best.ckpt`` segments the held-out
test subjects. Outputs in ``<runs_root>/<experiment>/`` (see ``docs/cv.md``):
``cv_predictions/``, ``cv_summary.csv``, ``cv_summary.json`` and, with ``--test``,
``test_predictions/``, ``test_summary.csv``, ``test_summary.json``.

Examples
--------
>>> main(["--config", "configs/periosteal.yaml", "--data.manifest", "cohort/manifest.csv",
...       "--folds", "0,1"])  # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from femurseg.atomic import atomic_write_csv, atomic_write_json
from femurseg.data.folds import Splits
from femurseg.errors import FemursegError, Terminated
from femurseg.signals import signal_handlers

__all__ = [
    "CVError",
    "CVPlan",
    "DONE_FILE",
    "FoldState",
    "check_pair",
    "evaluate_folds",
    "evaluate_test",
    "fit_command",
    "fold_state",
    "main",
    "plan_cv",
    "predict",
    "print_commands",
    "run_fit",
    "train_fold",
    "write_summary",
]

DONE_FILE = "done.json"
FoldState = Literal["done", "interrupted", "new"]

#: options that ``cv`` sets itself and refuses in the pass-through arguments
_RESERVED = {
    "--data.fold": "cv chooses the folds: use --folds 0,1,...",
    "--ckpt_path": "cv resumes interrupted folds from their last.ckpt itself",
}


class CVError(FemursegError):
    """A cross-validation run cannot start or a fold failed."""


@dataclass(frozen=True)
class CVPlan:
    """What ``cv`` will do: the fit arguments, the experiment folder and the folds.

    Attributes
    ----------
    fit_args
        Arguments passed to every ``femurseg fit`` (configs and overrides), without
        the subcommand, ``--data.fold`` and ``--ckpt_path``.
    experiment_dir
        ``<runs_root>/<experiment>``.
    manifest
        The manifest in use (the synthetic cohort's when none is configured).
    splits
        The experiment's ``splits.json``.
    folds
        Fold indices to train and evaluate, in order.
    target
        ``model.target`` of the fit arguments (``None``: not resolved).
    """

    fit_args: tuple[str, ...]
    experiment_dir: Path
    manifest: Path
    splits: Splits
    folds: tuple[int, ...]
    target: str | None = None

    def run_dir(self, fold: int) -> Path:
        """``<experiment_dir>/fold_<fold>``."""
        return self.experiment_dir / f"fold_{fold}"

    def best_checkpoint(self, fold: int) -> Path:
        """``fold_<fold>/checkpoints/best.ckpt``."""
        return self.run_dir(fold) / "checkpoints" / "best.ckpt"

    def val_subjects(self, fold: int) -> list[str]:
        """The validation subjects of ``fold`` in ``splits.json``."""
        return list(self.splits.folds[fold].val)


# planning -------------------------------------------------------------------
def _check_pass_through(fit_args: Sequence[str]) -> None:
    for arg in fit_args:
        name = arg.split("=", 1)[0]
        if name in _RESERVED:
            raise CVError(f"{name} cannot be given to femurseg cv: {_RESERVED[name]}")
        if name in ("fit", "validate", "test", "predict"):
            raise CVError(f"femurseg cv runs 'fit' itself: drop {name!r} from the arguments")


def resolve_config(fit_args: Sequence[str]) -> Any:
    """Parse the fit arguments with the femurseg CLI without instantiating anything.

    Returns
    -------
    jsonargparse.Namespace
        The merged configuration (``runs_root``, ``experiment``, ``data``, ...).
    """
    from femurseg.lightning_cli import FemursegCLI

    class _ConfigOnly(FemursegCLI):
        def instantiate_classes(self) -> None:  # parse only: no model, data or trainer
            return None

    with warnings.catch_warnings():  # "args and sys.argv both given": cv's own argv is not the fit's
        warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
        return _ConfigOnly(args=list(fit_args), run=False).config


def parse_folds(text: str | None, num_folds: int) -> tuple[int, ...]:
    """``"0,2"`` -> ``(0, 2)``; ``None`` -> every fold of the split.

    Raises
    ------
    CVError
        On an index that is not an integer or not a fold of the split.
    """
    if text is None:
        return tuple(range(num_folds))
    try:
        folds = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError as error:
        raise CVError(f"--folds {text!r}: give fold indices separated by commas, e.g. 0,1,2") from error
    bad = [k for k in folds if not 0 <= k < num_folds]
    if bad or not folds:
        raise CVError(f"--folds {text!r}: the split has folds 0-{num_folds - 1}")
    return folds


def plan_cv(fit_args: Sequence[str], folds: str | None = None) -> CVPlan:
    """Resolve the configuration, prepare the data and ``splits.json``, choose the folds.

    ``prepare_data`` runs here, once, before any fold starts: the synthetic cohort
    (when no manifest is configured) is generated and ``splits.json`` is written,
    so that folds running in parallel all share one split.

    Raises
    ------
    CVError
        On reserved pass-through options or invalid ``folds``.
    ManifestError
        If the manifest is invalid or differs from an existing ``splits.json``.
    """
    from femurseg.data.datamodule import FemurDataModule

    _check_pass_through(fit_args)
    config = resolve_config(fit_args)
    # validate and split only: each fold's fit fills the preprocessing cache itself
    datamodule = FemurDataModule(**{**config.data.as_dict(), "cache_dir": None})
    datamodule.prepare_data()
    splits = Splits.read(datamodule.splits_path)
    return CVPlan(
        fit_args=tuple(fit_args),
        experiment_dir=datamodule.experiment_dir,
        manifest=datamodule.manifest_path,
        splits=splits,
        folds=parse_folds(folds, len(splits.folds)),
        target=str(config.model.target),
    )


# training -------------------------------------------------------------------
def fold_state(run_dir: Path) -> FoldState:
    """``done`` (``done.json`` and ``best.ckpt``), ``interrupted`` (``last.ckpt``) or ``new``."""
    if (run_dir / DONE_FILE).is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file():
        return "done"
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return "interrupted"
    return "new"


def fit_command(fit_args: Sequence[str], fold: int | str, ckpt_path: Path | None = None) -> list[str]:
    """Arguments of ``femurseg fit`` for one fold (without the program name).

    Examples
    --------
    >>> fit_command(["--config", "configs/periosteal.yaml"], 3)
    ['fit', '--config', 'configs/periosteal.yaml', '--data.fold', '3']
    """
    command = ["fit", *fit_args, "--data.fold", str(fold)]
    if ckpt_path is not None:
        command += ["--ckpt_path", str(ckpt_path)]
    return command


def _warn_if_args_changed(plan: CVPlan, fold: int) -> None:
    done = json.loads((plan.run_dir(fold) / DONE_FILE).read_text())
    if list(done.get("fit_args", [])) != list(plan.fit_args):
        print(
            f"femurseg cv: warning: fold {fold} was trained with other arguments "
            f"({shlex.join(done.get('fit_args', []))}); it is kept. Delete {plan.run_dir(fold) / DONE_FILE} "
            "(and its checkpoints) to retrain it.",
            file=sys.stderr,
        )


def train_fold(plan: CVPlan, fold: int) -> FoldState:
    """Train ``fold`` unless it is complete; resume it if it was interrupted.

    Returns
    -------
    FoldState
        The state the fold was found in (``done`` means it was skipped).

    Raises
    ------
    CVError
        If ``fit`` exits with an error or leaves no ``best.ckpt``.
    """
    run_dir = plan.run_dir(fold)
    state = fold_state(run_dir)
    if state == "done":
        _warn_if_args_changed(plan, fold)
        print(f"femurseg cv: fold {fold}: complete, skipped ({run_dir / DONE_FILE})", flush=True)
        return state
    resume = run_dir / "checkpoints" / "last.ckpt" if state == "interrupted" else None
    command = fit_command(plan.fit_args, fold, resume)
    verb = f"resuming from {resume}" if resume else "training"
    print(f"femurseg cv: fold {fold}: {verb}\n  femurseg {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    returncode, stopped_by = run_fit([sys.executable, "-m", "femurseg", *command], env)
    if stopped_by is not None:
        print(f"femurseg cv: fold {fold}: stopped by {signal.Signals(stopped_by).name} (fit exited with status "
              f"{returncode}); not marked done, rerun cv to resume it", file=sys.stderr, flush=True)
        raise Terminated(stopped_by)
    if returncode != 0:
        raise CVError(f"fold {fold}: femurseg fit exited with status {returncode}; rerun cv to resume it")
    if not plan.best_checkpoint(fold).is_file():
        raise CVError(
            f"fold {fold}: fit finished without {plan.best_checkpoint(fold)}: validation must run at least "
            "once (trainer.check_val_every_n_epoch <= trainer.max_epochs)"
        )
    done = {
        "fold": fold,
        "best_checkpoint": str(plan.best_checkpoint(fold)),
        "fit_args": list(plan.fit_args),
        "resumed": resume is not None,
        "seconds": round(time.perf_counter() - start, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(run_dir / DONE_FILE, done, allow_nan=True)
    return state


def run_fit(argv: Sequence[str], env: dict[str, str]) -> tuple[int, int | None]:
    """Run one ``fit`` child to its end, passing a SIGTERM that ``cv`` receives on to it.

    Returns
    -------
    returncode, signum
        The child's exit status, and the signal (SIGTERM or SIGINT) that ``cv``
        received while waiting, or ``None``.
    """
    received: list[int] = []
    process = subprocess.Popen(list(argv), env=env)

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        if signum == signal.SIGTERM and process.poll() is None:
            process.send_signal(signum)  # SIGINT from a terminal reaches the child itself

    with signal_handlers({signal.SIGTERM: forward, signal.SIGINT: forward}):
        returncode = process.wait()
    return returncode, (received[0] if received else None)


# printing -------------------------------------------------------------------
def print_commands(plan: CVPlan, cv_args: Sequence[str]) -> str:
    """The per-fold ``femurseg fit`` commands and a SLURM array-job script.

    Parameters
    ----------
    plan
        The plan whose folds are printed.
    cv_args
        The pass-through arguments as the user wrote them (shown in the final
        ``femurseg cv`` command that evaluates the folds).
    """
    lines = [f"# {len(plan.folds)} fold(s) of {plan.experiment_dir} (split: {plan.experiment_dir / 'splits.json'})"]
    lines += [f"femurseg {shlex.join(fit_command(plan.fit_args, k))}" for k in plan.folds]
    fold_list = ",".join(str(k) for k in plan.folds)
    last = f"{shlex.quote(str(plan.experiment_dir))}/fold_${{SLURM_ARRAY_TASK_ID}}/checkpoints/last.ckpt"
    args = shlex.join(plan.fit_args)
    lines += [
        "",
        "# SLURM array job (sbatch cv.sbatch): one fold per task, resumed from last.ckpt when requeued",
        "#!/bin/bash",
        f"#SBATCH --job-name={plan.experiment_dir.name}-cv",
        f"#SBATCH --array={fold_list}",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --time=24:00:00",
        "#SBATCH --requeue",
        f"LAST={last}",
        'RESUME=(); [ -f "$LAST" ] && RESUME=(--ckpt_path "$LAST")',
        f'femurseg fit {args} --data.fold "$SLURM_ARRAY_TASK_ID" "${{RESUME[@]}}"',
        "",
        "# when every task has finished: evaluate the out-of-fold predictions (finished folds are not retrained)",
        f"femurseg cv {shlex.join(cv_args)}",
    ]
    return "\n".join(lines)


# command line ---------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="femurseg cv",
        allow_abbrev=False,
        description="Train every fold (skipping complete ones, resuming interrupted ones), then segment each "
        "fold's validation subjects with its best.ckpt and evaluate them (cv_summary.csv). Every other "
        "argument (--config X.yaml, --data.manifest M, --trainer.max_epochs N, ...) is passed to each "
        "'femurseg fit'.",
    )
    parser.add_argument("--folds", help="folds to run, e.g. 0,1,2 (default: every fold of the split)")
    parser.add_argument("--test", action="store_true", help="also evaluate the fold ensemble on the test subjects")
    parser.add_argument(
        "--print-commands", action="store_true",
        help="print the per-fold fit commands and a SLURM array job instead of running (prepares splits.json)",
    )
    parser.add_argument("--train-only", action="store_true", help="train the folds, skip the evaluation")
    parser.add_argument(
        "--pair", type=Path, metavar="EXPERIMENT_DIR",
        help="binary targets: the other contour's experiment folder (e.g. runs/periosteal); fold k of both "
        "is segmented together into the 0/1/2 map that is evaluated",
    )
    parser.add_argument("--tta", default="auto",
                        help="mirror-flip test-time augmentation axes, none, or auto (the training mirror axes; default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``femurseg cv --config X.yaml [--folds 0,1] [--test] [--pair DIR] [--print-commands] [fit overrides]``.

    Returns
    -------
    int
        0 on success, 1 if a fold failed or a subject could not be segmented or
        evaluated, 2 if the run could not start.
    """
    options, fit_args = _parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        plan = plan_cv(fit_args, options.folds)
        if options.print_commands:
            cv_args = [*fit_args, *(["--folds", options.folds] if options.folds else [])]
            print(print_commands(plan, cv_args))
            return 0
        pair = None if options.train_only else check_pair(plan, options.pair)
    except FemursegError as error:
        print(f"femurseg cv: error: {error}", file=sys.stderr)
        return 2
    try:
        for fold in plan.folds:
            train_fold(plan, fold)
        if options.train_only:
            return 0
        failed = evaluate_folds(plan, pair, options.tta)
        if options.test:
            failed += evaluate_test(plan, pair, options.tta)
    except FemursegError as error:
        print(f"femurseg cv: error: {error}", file=sys.stderr)
        return 1
    return 1 if failed else 0


# evaluation -----------------------------------------------------------------
def check_pair(plan: CVPlan, pair_dir: Path | None) -> CVPlan | None:
    """The partner experiment of a binary target, checked; ``None`` for a 3-class target.

    Binary models (``periosteal``, ``endosteal``) are evaluated as in the study:
    fold ``k`` of each contour segments fold ``k``'s validation subjects together,
    into one 0/1/2 map. The partner must use the same split and have every
    selected fold complete (``femurseg cv --config <other>.yaml --train-only``).

    Raises
    ------
    CVError
        If a binary target has no partner, or the partner's split or folds do not match.
    """
    target = str(resolve_target(plan))
    if target == "compartments":
        if pair_dir is not None:
            raise CVError("--pair is for binary targets; a 'compartments' model segments both contours itself")
        return None
    if pair_dir is None:
        other = "endosteal" if target == "periosteal" else "periosteal"
        raise CVError(
            f"a {target} model is evaluated together with the {other} model of the same fold (the 0/1/2 map "
            f"needs both contours): train the {other} folds (femurseg cv --config configs/{other}.yaml "
            f"--train-only ...) and add --pair <runs_root>/{other}; or pass --train-only"
        )
    splits_path = pair_dir / "splits.json"
    if not splits_path.is_file():
        raise CVError(f"--pair {pair_dir}: no splits.json: is it an experiment folder?")
    splits = Splits.read(splits_path)
    if splits.test != plan.splits.test or splits.folds != plan.splits.folds:
        raise CVError(f"--pair {pair_dir}: its split differs from {plan.experiment_dir / 'splits.json'} "
                      "(same manifest, num_folds, test_fraction and split_seed give the same split)")
    partner = CVPlan(plan.fit_args, pair_dir, plan.manifest, splits, plan.folds, target=None)
    missing = [k for k in plan.folds if fold_state(partner.run_dir(k)) != "done"]
    if missing:
        raise CVError(f"--pair {pair_dir}: fold(s) {missing} are not complete (no done.json and best.ckpt)")
    return partner


def resolve_target(plan: CVPlan) -> str:
    """The ``model.target`` of the fit arguments."""
    return plan.target or str(resolve_config(plan.fit_args).model.target)


def _records(plan: CVPlan, subjects: Sequence[str]) -> list[Any]:
    from femurseg.data.manifest import read_manifest

    by_id = {r.subject_id: r for r in read_manifest(plan.manifest)}
    return [by_id[s] for s in subjects]


def _stamp(paths: Sequence[Path]) -> list[dict[str, Any]]:
    return [{"path": str(p), "mtime_ns": p.stat().st_mtime_ns, "size": p.stat().st_size} for p in paths]


def predict(records: Sequence[Any], checkpoints: Sequence[Path], output: Path, tta: str) -> int:
    """Segment ``records`` with the ensemble of ``checkpoints`` into ``output/<subject_id>/``.

    Skipped when ``output/predicted.json`` records the same checkpoints (path,
    size, modification time), settings and subjects. Returns the number of failures.
    """
    from femurseg.inference import InferenceSettings, Predictor, load_checkpoints
    from femurseg.inference.cohort import ScanInput, run_cohort

    marker = output / "predicted.json"
    stamp = {"checkpoints": _stamp(checkpoints), "tta": tta, "subjects": [r.subject_id for r in records]}
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        print(f"femurseg cv: predictions in {output} are up to date", flush=True)
        return 0
    marker.unlink(missing_ok=True)
    predictor = Predictor(load_checkpoints(checkpoints=list(checkpoints)), InferenceSettings(tta=tta))
    inputs = [ScanInput(r.subject_id, Path(r.image)) for r in records]
    failed = run_cohort(inputs, output, predictor, trainer_kwargs={"accelerator": "auto", "devices": 1}, qc=False)
    if not failed:
        atomic_write_json(marker, stamp, allow_nan=True)
    return failed


def _evaluate_set(
    plan: CVPlan, subjects: Sequence[str], checkpoints: Sequence[Path], folder: Path, tta: str
) -> list[dict[str, Any]]:
    """Predict and evaluate one set of subjects; per-subject rows of ``evaluate_cohort``."""
    from femurseg.metrics.evaluate import evaluate_cohort

    from femurseg.data.manifest import write_manifest

    records = _records(plan, subjects)
    absolute = [replace(r, **{c: Path(p).resolve() for c, p in r.files.items()}) for r in records]
    manifest = write_manifest(folder / "manifest.csv", absolute)
    predict(records, checkpoints, folder, tta)
    return evaluate_cohort(folder, manifest, folder / "metrics.csv", show=False).rows


def _checkpoints(plan: CVPlan, pair: CVPlan | None, folds: Sequence[int]) -> list[Path]:
    plans = [plan] if pair is None else [plan, pair]
    return [p.best_checkpoint(k) for p in plans for k in folds]


def evaluate_folds(plan: CVPlan, pair: CVPlan | None, tta: str) -> int:
    """Out-of-fold evaluation: writes ``cv_summary.csv`` and ``cv_summary.json``; returns failed subjects."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for k in plan.folds:
        print(f"femurseg cv: fold {k}: segmenting {len(plan.val_subjects(k))} validation subject(s)", flush=True)
        folder = plan.experiment_dir / "cv_predictions" / f"fold_{k}"
        rows[str(k)] = _evaluate_set(plan, plan.val_subjects(k), _checkpoints(plan, pair, [k]), folder, tta)
    return write_summary(plan.experiment_dir / "cv_summary.csv", rows, pair)


def evaluate_test(plan: CVPlan, pair: CVPlan | None, tta: str) -> int:
    """The ensemble of every selected fold on the held-out test subjects: ``test_summary.csv``."""
    subjects = list(plan.splits.test)
    if not subjects:
        raise CVError(f"{plan.experiment_dir / 'splits.json'} has no test subjects (data.test_fraction is 0)")
    print(f"femurseg cv: ensemble of folds {list(plan.folds)}: segmenting {len(subjects)} test subject(s)", flush=True)
    folder = plan.experiment_dir / "test_predictions"
    rows = {"ensemble": _evaluate_set(plan, subjects, _checkpoints(plan, pair, plan.folds), folder, tta)}
    return write_summary(plan.experiment_dir / "test_summary.csv", rows, pair)


def write_summary(path: Path, rows: dict[str, list[dict[str, Any]]], pair: CVPlan | None) -> int:
    """Write the per-subject rows, then mean and std rows per group and overall, as CSV and JSON.

    CSV columns: ``kind`` (``subject``, ``mean`` or ``std``), ``fold`` (the fold,
    ``ensemble``, or ``all`` for the rows over every subject), ``subject_id``,
    ``status``, ``error`` and the metrics of :func:`femurseg.metrics.evaluate_label_maps`.
    Means and standard deviations (ddof 1) use the finite values of the subjects
    evaluated without error. The JSON holds :func:`femurseg.metrics.evaluate.summarize`
    per group and overall (median, range, worst subjects). Returns failed subjects.
    """
    from femurseg.metrics.evaluate import METRICS, TARGETS, summarize

    keys = [f"{t}_{m}" for t in TARGETS for m in METRICS]
    everyone = [r for group in rows.values() for r in group]
    groups = {name: summarize(group) for name, group in rows.items()}
    groups_all = {**groups, "all": summarize(everyone)} if len(rows) > 1 else groups
    table = [{"kind": "subject", "fold": name, **r} for name, group in rows.items() for r in group]
    for name, summary in groups_all.items():
        for stat in ("mean", "std"):
            values = {k: summary["metrics"][k][stat] for k in keys if k in summary["metrics"]}
            table.append({"kind": stat, "fold": name, **{k: v for k, v in values.items() if v is not None}})
    atomic_write_csv(path, table, ["kind", "fold", "subject_id", "status", "error", *keys], float_format=".8g")
    document = {"pair": str(pair.experiment_dir) if pair else None, "groups": groups,
                "overall": groups_all.get("all", next(iter(groups.values())))}
    atomic_write_json(path.with_suffix(".json"), document)
    overall = document["overall"]
    dice = overall["metrics"].get("periosteal_dice", {})
    print(f"femurseg cv: wrote {path}: {overall['n_ok']}/{overall['n_subjects']} subjects evaluated; periosteal Dice "
          f"{dice.get('mean') or float('nan'):.4f} ± {dice.get('std') or 0.0:.4f}", flush=True)
    for failure in overall["failed"]:
        print(f"femurseg cv: failed {failure['subject_id']}: {failure['error']}", file=sys.stderr)
    return int(overall["n_failed"])
