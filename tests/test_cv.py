"""``femurseg cv`` end to end on tiny phantoms: 2 folds, skip, resume, printed commands."""

from __future__ import annotations

import csv
import json
import shlex
import time
from pathlib import Path

import pytest

from femurseg import cv
from femurseg.cli import main
from femurseg.data.folds import Splits

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def cv_args(manifest: Path, runs: Path, experiment: str = "tiny_cv", target: str = "compartments") -> list[str]:
    """Two folds of a fit that takes seconds: 4 mm phantoms, 16³ patches, a 2-stage net, 2 steps.

    The 3-class target segments both contours, so its folds are evaluated without a
    partner experiment (binary targets need ``--pair``).
    """
    return [
        "--config", str(CONFIGS / f"{target}.yaml"), "--config", str(CONFIGS / "quickstart.yaml"),
        "--runs_root", str(runs), "--experiment", experiment,
        "--data.manifest", str(manifest), "--data.num_folds", "2", "--data.cache_dir", "null",
        "--data.spacing", "[4, 4, 4]", "--data.patch_size", "[16, 16, 16]", "--data.batch_size", "2",
        "--data.samples_per_volume", "2", "--data.queue_length", "4", "--data.augmentation", "none",
        "--model.net_kwargs", "{channels: [4, 8], strides: [2]}",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.check_val_every_n_epoch", "1",
        "--trainer.max_time", "null", "--trainer.precision", "32-true", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--wandb", "disabled",
    ]


def fold_files(experiment: Path) -> dict[Path, float]:
    files = [experiment / f"fold_{k}" / name for k in (0, 1) for name in ("done.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt")]
    return {f: f.stat().st_mtime_ns for f in files}


@pytest.fixture(scope="module")
def cross_validated(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("cv_runs")
    assert main(["cv", *cv_args(tiny_cohort, runs), "--test", "--tta", "none"]) == 0
    return runs / "tiny_cv"


def test_every_fold_is_trained_and_marked_done(cross_validated: Path):
    for k in (0, 1):
        done = json.loads((cross_validated / f"fold_{k}" / cv.DONE_FILE).read_text())
        assert done["fold"] == k and Path(done["best_checkpoint"]).is_file()
        assert "--data.fold" not in done["fit_args"]
        assert (cross_validated / f"fold_{k}" / "config.yaml").is_file()


def test_cv_summary_has_one_row_per_validation_subject(cross_validated: Path):
    splits = json.loads((cross_validated / "splits.json").read_text())
    rows = list(csv.DictReader((cross_validated / "cv_summary.csv").open()))
    subjects = [r for r in rows if r["kind"] == "subject"]
    assert {(int(r["fold"]), r["subject_id"]) for r in subjects} == {
        (k, s) for k, fold in enumerate(splits["folds"]) for s in fold["val"]
    }
    assert all(r["status"] == "ok" for r in subjects), [r["error"] for r in subjects]
    dice = [float(r["periosteal_dice"]) for r in subjects]
    assert all(0.0 <= d <= 1.0 for d in dice)
    means = {(r["kind"], r["fold"]): r for r in rows if r["kind"] != "subject"}
    assert set(means) == {(kind, fold) for kind in ("mean", "std") for fold in ("0", "1", "all")}
    assert float(means[("mean", "all")]["periosteal_dice"]) == pytest.approx(sum(dice) / len(dice))
    summary = json.loads((cross_validated / "cv_summary.json").read_text())
    assert summary["overall"]["n_ok"] == len(subjects)
    for k in (0, 1):  # out-of-fold predictions on the scans' own grids
        for subject in splits["folds"][k]["val"]:
            assert (cross_validated / "cv_predictions" / f"fold_{k}" / subject / "segmentation.nii.gz").is_file()


def test_test_summary_evaluates_the_fold_ensemble(cross_validated: Path):
    splits = json.loads((cross_validated / "splits.json").read_text())
    rows = list(csv.DictReader((cross_validated / "test_summary.csv").open()))
    assert [r["subject_id"] for r in rows if r["kind"] == "subject"] == splits["test"]
    assert {r["fold"] for r in rows} == {"ensemble"}
    assert all(0.0 <= float(r["endosteal_dice"]) <= 1.0 for r in rows if r["kind"] == "subject")
    predicted = json.loads((cross_validated / "test_predictions" / "predicted.json").read_text())
    assert [Path(c["path"]).parts[-3] for c in predicted["checkpoints"]] == ["fold_0", "fold_1"]


def test_second_run_skips_complete_folds(cross_validated: Path, tiny_cohort: Path, capsys: pytest.CaptureFixture):
    before = fold_files(cross_validated)
    start = time.perf_counter()
    summary = (cross_validated / "cv_summary.csv").read_text()
    assert main(["cv", *cv_args(tiny_cohort, cross_validated.parent), "--tta", "none"]) == 0
    seconds = time.perf_counter() - start
    assert fold_files(cross_validated) == before  # nothing retrained
    out = capsys.readouterr().out
    assert out.count("complete, skipped") == 2 and out.count("are up to date") == 2  # nor re-segmented
    assert (cross_validated / "cv_summary.csv").read_text() == summary
    assert seconds < 30, f"a run with nothing to train took {seconds:.0f} s"


def test_interrupted_fold_resumes_from_last_checkpoint(cross_validated: Path, tiny_cohort: Path, monkeypatch: pytest.MonkeyPatch):
    plan = cv.plan_cv(cv_args(tiny_cohort, cross_validated.parent), folds="1")
    copy = cross_validated.parent / "interrupted"
    plan = cv.CVPlan(plan.fit_args, copy, plan.manifest, plan.splits, plan.folds)
    (copy / "fold_1" / "checkpoints").mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt"):  # as a killed fit leaves it: checkpoints, no done.json
        (copy / "fold_1" / "checkpoints" / name).write_bytes((cross_validated / "fold_1" / "checkpoints" / name).read_bytes())
    assert cv.fold_state(copy / "fold_1") == "interrupted"
    calls: list[list[str]] = []

    def fake_run(command: list[str], env: dict[str, str]) -> tuple[int, None]:
        calls.append(command)
        return 0, None

    monkeypatch.setattr(cv, "run_fit", fake_run)
    assert cv.train_fold(plan, 1) == "interrupted"
    (command,) = calls
    assert command[-4:] == ["--data.fold", "1", "--ckpt_path", str(copy / "fold_1" / "checkpoints" / "last.ckpt")]
    assert cv.fold_state(copy / "fold_1") == "done"
    assert json.loads((copy / "fold_1" / cv.DONE_FILE).read_text())["resumed"] is True


def test_binary_target_needs_its_pair(tiny_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    args = cv_args(tiny_cohort, tmp_path, experiment="periosteal", target="periosteal")
    assert main(["cv", *args]) == 2
    assert "--pair <runs_root>/endosteal" in capsys.readouterr().err
    assert not (tmp_path / "periosteal" / "fold_0").exists()  # refused before any training


def test_pair_must_share_the_split_and_be_trained(tmp_path: Path):
    splits = {"test": ["t"], "folds": [{"train": ["a"], "val": ["b"]}, {"train": ["b"], "val": ["a"]}]}
    plan = cv.CVPlan((), tmp_path / "periosteal", tmp_path / "m.csv", Splits.from_dict(splits), (0, 1),
                     target="periosteal")
    partner = tmp_path / "endosteal"
    partner.mkdir()
    (partner / "splits.json").write_text(json.dumps({**splits, "test": ["a"]}))
    with pytest.raises(cv.CVError, match="split differs"):
        cv.check_pair(plan, partner)
    (partner / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(cv.CVError, match=r"fold\(s\) \[0, 1\] are not complete"):
        cv.check_pair(plan, partner)
    for k in (0, 1):
        (partner / f"fold_{k}" / "checkpoints").mkdir(parents=True)
        (partner / f"fold_{k}" / "checkpoints" / "best.ckpt").write_bytes(b"")
        (partner / f"fold_{k}" / cv.DONE_FILE).write_text("{}")
    assert cv.check_pair(plan, partner).best_checkpoint(1) == partner / "fold_1" / "checkpoints" / "best.ckpt"
    compartments = cv.CVPlan((), tmp_path, tmp_path / "m.csv", Splits.from_dict(splits), (0,), target="compartments")
    assert cv.check_pair(compartments, None) is None


def test_failed_fit_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    plan = cv.CVPlan(("--config", "x.yaml"), tmp_path, tmp_path / "m.csv", {"folds": [{"train": [], "val": []}]}, (0,))
    monkeypatch.setattr(cv, "run_fit", lambda command, env: (3, None))
    with pytest.raises(cv.CVError, match="fold 0: femurseg fit exited with status 3"):
        cv.train_fold(plan, 0)
    assert cv.fold_state(tmp_path / "fold_0") == "new"


def test_print_commands(tiny_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    args = cv_args(tiny_cohort, tmp_path, experiment="printed")
    assert main(["cv", *args, "--print-commands"]) == 0
    out = capsys.readouterr().out
    fits = [line for line in out.splitlines() if line.startswith("femurseg fit ")]
    assert len(fits) == 3  # fold 0, fold 1, and the array job's line
    assert shlex.split(fits[0])[2:] == [*args, "--data.fold", "0"]
    assert shlex.split(fits[1])[-2:] == ["--data.fold", "1"]
    assert "#SBATCH --array=0,1" in out and '--data.fold "$SLURM_ARRAY_TASK_ID"' in out
    assert (tmp_path / "printed" / "splits.json").is_file()  # prepared, so parallel jobs share one split
    assert not (tmp_path / "printed" / "fold_0").exists()  # nothing trained


@pytest.mark.parametrize(
    ("extra", "message"), [(["--data.fold", "1"], "use --folds"), (["--ckpt_path=x.ckpt"], "resumes"), (["fit"], "drop")]
)
def test_reserved_arguments_are_refused(extra: list[str], message: str, capsys: pytest.CaptureFixture):
    assert main(["cv", "--config", "configs/periosteal.yaml", *extra]) == 2
    assert message in capsys.readouterr().err


def test_parse_folds():
    assert cv.parse_folds(None, 3) == (0, 1, 2)
    assert cv.parse_folds("2,0,2", 3) == (2, 0)
    with pytest.raises(cv.CVError, match="folds 0-2"):
        cv.parse_folds("3", 3)
    with pytest.raises(cv.CVError, match="separated by commas"):
        cv.parse_folds("a", 3)
