"""``FemursegCLI``: the LightningCLI behind ``femurseg fit / validate / test / predict``.

Kept apart from :mod:`femurseg.cli` so that plain commands never import Lightning.
It adds to the stock LightningCLI:

- ``--experiment NAME`` and ``--runs_root DIR``: the run folder
  ``<runs_root>/<experiment>/fold_<k>/`` receives ``config.yaml``,
  ``checkpoints/best.ckpt``, ``checkpoints/last.ckpt`` and ``metrics.csv``
  (DESIGN.md §6); ``splits.json`` lives in ``<runs_root>/<experiment>/``.
- ``--wandb {offline,online,disabled}``: W&B logging (default: ``$WANDB_MODE`` or
  offline, which never contacts a server nor asks for a login).
- linked arguments: the data module's patch size is the module's validation window.
- Trainer default ``use_distributed_sampler=False``: under DDP every rank validates
  every subject (the data module splits the training subjects across ranks itself,
  and Lightning leaves its training sampler in place either way).
- A :class:`~femurseg.errors.FemursegError` (an invalid manifest, a split that no
  longer matches it, an unusable checkpoint) ends the command with its message and
  status 2, without a traceback.
- Records are never lost or mixed: resuming (``--ckpt_path``) appends to
  ``metrics.csv`` (Lightning would delete it), a fresh fit into a used run folder
  first moves the old one to ``metrics.<time>.csv``, and a run folder is locked
  while a ``fit`` runs in it (a second ``fit`` there stops with a clear error).
- SIGTERM ends the command with status 143 (:class:`~femurseg.errors.Terminated`),
  never 0: Lightning stops after the current batch (and, under SLURM with
  auto-requeue, saves an HPC checkpoint and requeues the job on the requeue signal),
  then raises ``SIGTERMException``, a ``SystemExit`` whose status is 0, which would
  make an interrupted fit look complete to ``femurseg cv`` or a job script. SIGINT
  (Ctrl-C) already exits with 1 through Lightning.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from femurseg.data.datamodule import FemurDataModule
from femurseg.errors import FemursegError, Terminated
from femurseg.models.module import SegmentationModule

__all__ = ["FemursegCLI", "WandbSummaries", "TimeCapReport", "RunFolderLock", "HistoryCSVLogger", "run_folder",
           "make_loggers"]

log = logging.getLogger(__name__)

WANDB_MODES = ("offline", "online", "disabled")


def run_folder(experiment_dir: str | Path, fold: int | str) -> Path:
    """``<experiment_dir>/fold_<k>`` (``fold_all`` for ``--data.fold all``)."""
    return Path(experiment_dir) / f"fold_{fold}"


class HistoryCSVLogger(CSVLogger):
    """A ``CSVLogger`` that never deletes an earlier ``metrics.csv``.

    Lightning 2.6's CSV writer deletes ``metrics.csv`` when it starts in a folder
    that holds one. Here, with ``keep_history`` (a resumed fit) the earlier rows
    are kept and the new ones appended; otherwise the earlier file is moved to
    ``metrics.<YYYYmmdd-HHMMSS>.csv`` first.
    """

    def __init__(self, *args: Any, keep_history: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_history = keep_history
        self._history_done = False

    @property
    def experiment(self) -> Any:
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        if self._history_done or rank_zero_only.rank != 0:
            return super().experiment
        self._history_done = True
        path = Path(self.log_dir) / "metrics.csv"
        old = path.read_text() if path.is_file() else ""
        if old and not self.keep_history:
            path.rename(path.with_name(f"metrics.{time.strftime('%Y%m%d-%H%M%S')}.csv"))
            old = ""
        writer = super().experiment  # Lightning 2.6: deletes metrics.csv here
        if old:
            path.write_text(old)
            writer.metrics_keys = next(csv.reader(io.StringIO(old)), [])  # append under the same header
        return writer


class RunFolderLock(Callback):
    """Hold an exclusive lock on ``<run_dir>/.fit.lock`` while a fit runs (global rank 0).

    ``fcntl.flock`` is released by the operating system when the process ends,
    however it ends, so a crashed fit leaves no stale lock.

    Raises
    ------
    FemursegError
        In ``setup`` if another process holds the lock (the message names its pid).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._handle: TextIO | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero or self._handle is not None:
            return
        import fcntl

        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.run_dir / ".fit.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise FemursegError(
                f"run folder {self.run_dir} is in use by another fit (pid {owner}); wait for it to finish, or use "
                "another --experiment or --data.fold") from error
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None


def make_loggers(run_dir: Path, experiment: str, fold: int | str, wandb_mode: str | None,
                 resume: bool = False) -> list[Logger]:
    """CSV logger writing ``<run_dir>/metrics.csv`` and, unless disabled, a W&B logger.

    W&B runs are grouped by experiment with one job type per fold, so a sweep or a
    cross-validation shows up as one group. With ``resume`` the CSV logger appends
    to an existing ``metrics.csv`` (:class:`HistoryCSVLogger`).
    """
    loggers: list[Logger] = [HistoryCSVLogger(save_dir=str(run_dir), name="", version="", keep_history=resume)]
    mode = wandb_mode or os.environ.get("WANDB_MODE") or "offline"
    if mode not in WANDB_MODES:
        raise ValueError(f"wandb mode {mode!r} must be one of {', '.join(WANDB_MODES)}")
    if mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        # offline: never a network call, never a login prompt
        loggers.append(
            WandbLogger(
                project=os.environ.get("WANDB_PROJECT", "femurseg"), name=f"{experiment}/fold_{fold}",
                group=experiment, job_type=f"fold_{fold}", save_dir=str(run_dir), offline=mode == "offline",
            )
        )
    return loggers


class WandbSummaries(Callback):
    """Make W&B summarise ``val/dice`` by its maximum (sweeps rank runs by the summary)."""

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                for name in ("val/dice", "val/dice_min"):
                    logger.experiment.define_metric(name, summary="max")


class TimeCapReport(Callback):
    """Say loudly when ``trainer.max_time`` stopped training before its planned steps or epochs.

    A time cap must never silently change what is trained: the warning goes to the log
    and to stderr, and every checkpoint records ``femurseg.training.stopped_by_time_cap``
    (:func:`femurseg.models.module.training_record`), which ``segment`` repeats.
    """

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        from femurseg.models.module import training_record

        record = training_record(trainer)
        if record["stopped_by_time_cap"] and trainer.is_global_zero:
            planned = (f"{record['max_steps']} steps" if record["max_steps"] > 0
                       else f"{record['max_epochs']} epochs")
            message = (f"TRAINING STOPPED BY THE TIME CAP (trainer.max_time) after {record['global_step']} steps / "
                       f"epoch {record['epoch']}, before the planned {planned}: the checkpoints are NOT the "
                       "configured training. Raise or remove --trainer.max_time to train it fully.")
            banner = "!" * 100
            log.warning("\n%s\n%s\n%s", banner, message, banner)
            print(f"\n{banner}\n{message}\n{banner}", file=sys.stderr, flush=True)


class FemursegCLI(LightningCLI):
    """LightningCLI with femurseg's run folders, loggers and linked arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_class", SegmentationModule)
        kwargs.setdefault("datamodule_class", FemurDataModule)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", {"use_distributed_sampler": False, "log_every_n_steps": 10})
        try:
            super().__init__(*args, **kwargs)
        except FemursegError as error:
            if not kwargs.get("run", True):
                raise  # a caller that only parses (cv, sweeps) handles it
            # bad input (manifest, split, checkpoint) is a clear message and status 2, not a traceback
            print(f"femurseg {getattr(self, 'subcommand', None) or 'fit'}: error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from error
        except SIGTERMException as error:
            # Lightning 2.6: the loops raise SIGTERMException (exit status 0) after a SIGTERM
            print("femurseg: training stopped by SIGTERM before it finished; its checkpoints are those of the "
                  "last checkpoint saved (resume with --ckpt_path .../last.ckpt)", file=sys.stderr, flush=True)
            raise Terminated(signal.SIGTERM) from error

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=str, default="femurseg", help="experiment name (run folder)")
        parser.add_argument("--runs_root", type=str, default="runs", help="folder that holds experiments")
        parser.add_argument(
            "--wandb", type=str | None, default=None,
            help="W&B mode: offline, online or disabled (default: $WANDB_MODE or offline)",
        )
        parser.link_arguments("data.patch_size", "model.patch_size")
        parser.link_arguments(
            ("runs_root", "experiment"), "data.experiment_dir", compute_fn=lambda root, name: f"{root}/{name}"
        )

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        config = self.config[self.subcommand] if self.subcommand else self.config
        # the instantiated trainer settings (callbacks as objects), through the public config_init
        config_init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = config_init.get("trainer") or {}
        datamodule: FemurDataModule = self.datamodule
        run_dir = run_folder(datamodule.experiment_dir, datamodule.fold)
        kwargs.setdefault("default_root_dir", str(run_dir))
        resume = bool(config.get("ckpt_path")) if hasattr(config, "get") else False
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = make_loggers(run_dir, config["experiment"], datamodule.fold, config["wandb"],
                                            resume=resume)
        callbacks = [RunFolderLock(run_dir), *(trainer_config.get("callbacks") or [])]
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            validating = datamodule.fold != "all"
            callbacks.append(
                ModelCheckpoint(
                    dirpath=str(run_dir / "checkpoints"), filename="best",
                    monitor="val/dice" if validating else None, mode="max",
                    save_last=True, enable_version_counter=False, auto_insert_metric_name=False,
                )
            )
        if kwargs.get("logger") or trainer_config.get("logger"):
            callbacks += [LearningRateMonitor(logging_interval="epoch"), WandbSummaries()]
        callbacks.append(TimeCapReport())
        kwargs["callbacks"] = callbacks
        return super().instantiate_trainer(**kwargs)
