"""Run records are never lost or mixed: metrics history on resume, one fit per run folder (issue 15.8)."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest

from femurseg.errors import FemursegError
from femurseg.lightning_cli import HistoryCSVLogger, RunFolderLock

OLD = "epoch,step,train/loss\n0,9,0.9\n1,19,0.8\n"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_resumed_fit_appends_to_the_metrics_history(tmp_path: Path):
    (tmp_path / "metrics.csv").write_text(OLD)
    logger = HistoryCSVLogger(save_dir=str(tmp_path), name="", version="", keep_history=True)
    logger.log_metrics({"epoch": 2, "train/loss": 0.7}, step=29)
    logger.save()
    assert [r["step"] for r in _rows(tmp_path / "metrics.csv")] == ["9", "19", "29"]
    logger.log_metrics({"epoch": 2, "val/dice": 0.5}, step=29)   # a new column: old rows kept
    logger.save()
    rows = _rows(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == ["9", "19", "29", "29"] and rows[-1]["val/dice"] == "0.5"
    assert rows[0]["train/loss"] == "0.9"


def test_a_fresh_fit_moves_the_old_metrics_aside(tmp_path: Path):
    (tmp_path / "metrics.csv").write_text(OLD)
    logger = HistoryCSVLogger(save_dir=str(tmp_path), name="", version="")
    logger.log_metrics({"epoch": 0, "train/loss": 1.0}, step=0)
    logger.save()
    (archived,) = tmp_path.glob("metrics.*.csv")
    assert archived.read_text() == OLD
    assert [r["step"] for r in _rows(tmp_path / "metrics.csv")] == ["0"]


def test_a_run_folder_holds_one_fit_at_a_time(tmp_path: Path):
    trainer = SimpleNamespace(is_global_zero=True)
    first, second = RunFolderLock(tmp_path / "fold_0"), RunFolderLock(tmp_path / "fold_0")
    first.setup(trainer, None, "fit")
    with pytest.raises(FemursegError, match=r"in use by another fit \(pid \d+\)"):
        second.setup(trainer, None, "fit")
    RunFolderLock(tmp_path / "fold_1").setup(trainer, None, "fit")   # another fold is another folder
    first.teardown(trainer, None, "fit")
    second.setup(trainer, None, "fit")
    second.teardown(trainer, None, "fit")
