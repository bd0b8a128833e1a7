"""SIGTERM and SIGINT stop fit and cv with a non-zero status and never mark a fold done (issue 15.2)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from femurseg import cv
from femurseg.cli import main
from femurseg.errors import Terminated
from femurseg.signals import stop_on_signals

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def test_stop_on_signals_raises_terminated_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as stop, stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes
            pass
    assert stop.value.code == 143 and str(stop.value) == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_during_fit_exits_143(tiny_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    from femurseg.lightning_cli import TimeCapReport

    def sigterm_after_first_batch(self, trainer, *args):
        if trainer.global_step == 1:
            os.kill(os.getpid(), signal.SIGTERM)   # Lightning's handler records it; the loop stops

    monkeypatch.setattr(TimeCapReport, "on_train_batch_end", sigterm_after_first_batch, raising=False)
    args = [
        "--config", str(CONFIGS / "periosteal.yaml"), "--config", str(CONFIGS / "quickstart.yaml"),
        "--runs_root", str(tmp_path), "--experiment", "tiny", "--wandb", "disabled",
        "--data.manifest", str(tiny_cohort), "--data.num_folds", "3", "--data.spacing", "[4.0, 4.0, 4.0]",
        "--data.patch_size", "[16, 16, 16]", "--data.batch_size", "2", "--data.samples_per_volume", "2",
        "--data.queue_length", "4", "--data.augmentation", "none",
        "--model.net_kwargs", "{channels: [4, 8], strides: [2]}", "--trainer.max_epochs", "50",
        "--trainer.max_time", "null", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ]
    with pytest.raises(SystemExit) as stop:
        main(["fit", *args])
    assert stop.value.code == 143
    assert "stopped by SIGTERM" in capsys.readouterr().err


def _plan(tmp_path: Path) -> cv.CVPlan:
    return cv.CVPlan(("--config", "x.yaml"), tmp_path, tmp_path / "m.csv", {"folds": [{"train": [], "val": []}]}, (0,))


def test_cv_never_marks_a_terminated_fold_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    plan = _plan(tmp_path)
    (tmp_path / "fold_0" / "checkpoints").mkdir(parents=True)
    (tmp_path / "fold_0" / "checkpoints" / "best.ckpt").write_bytes(b"epoch 0")   # as an early-stopped fit leaves it
    forwarded: list[int] = []

    class ChildThatExitsZero:   # the old failure: a fit that swallowed SIGTERM and exited 0
        def __init__(self, argv, env):
            pass

        def poll(self):
            return None

        def send_signal(self, signum):
            forwarded.append(signum)

        def wait(self):
            os.kill(os.getpid(), signal.SIGTERM)
            return 0

    monkeypatch.setattr(cv.subprocess, "Popen", ChildThatExitsZero)
    with pytest.raises(Terminated) as stop:
        cv.train_fold(plan, 0)
    assert stop.value.code == 143 and forwarded == [signal.SIGTERM]
    assert not (tmp_path / "fold_0" / cv.DONE_FILE).exists()
    assert cv.fold_state(tmp_path / "fold_0") == "new"


def test_cv_refuses_a_fit_that_exited_with_a_signal_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cv, "run_fit", lambda argv, env: (143, None))
    with pytest.raises(cv.CVError, match="status 143"):
        cv.train_fold(_plan(tmp_path), 0)
    assert not (tmp_path / "fold_0" / cv.DONE_FILE).exists()


def test_run_fit_forwards_sigterm_to_the_child():
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
             "time.sleep(60)\n")
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        returncode, signum = cv.run_fit([sys.executable, "-c", child], dict(os.environ))
    finally:
        timer.cancel()
    assert signum == signal.SIGTERM and returncode in (143, -signal.SIGTERM)
