"""The command line end to end, on tiny phantoms."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from femurseg.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def tiny_fit_args(manifest: Path, runs: Path, *extra: str) -> list[str]:
    """A fit that takes seconds: 32³-ish phantoms at 4 mm, 16³ patches, a 3-stage net."""
    return [
        "--config", str(CONFIGS / "periosteal.yaml"), "--config", str(CONFIGS / "quickstart.yaml"),
        "--runs_root", str(runs), "--experiment", "tiny",
        "--data.manifest", str(manifest), "--data.num_folds", "3", "--data.spacing", "[4.0, 4.0, 4.0]",
        "--data.patch_size", "[16, 16, 16]", "--data.batch_size", "4", "--data.samples_per_volume", "4",
        "--data.queue_length", "16", "--data.augmentation", "none",
        "--model.net_kwargs", "{channels: [4, 8, 16], strides: [2, 2]}",
        "--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "1", "--trainer.max_time", "null",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--seed_everything", "0", *extra,
    ]


@pytest.fixture(scope="module")
def fitted(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    assert main(["fit", *tiny_fit_args(tiny_cohort, runs, "--wandb", "offline")]) == 0
    return runs / "tiny"


def test_fit_writes_the_run_folder(fitted: Path):
    fold = fitted / "fold_0"
    for name in ("config.yaml", "metrics.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (fold / name).is_file(), name
    assert (fitted / "splits.json").is_file()
    config = yaml.safe_load((fold / "config.yaml").read_text())
    assert config["model"]["target"] == "periosteal" and config["data"]["fold"] == 0


def test_fit_learns(fitted: Path):
    rows = list(csv.DictReader((fitted / "fold_0" / "metrics.csv").open()))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    dice = [float(r["val/dice"]) for r in rows if r.get("val/dice")]
    assert len(losses) == 3 and len(dice) == 3
    assert losses[-1] < losses[0]
    assert all(0.0 <= d <= 1.0 for d in dice)


def test_checkpoint_is_plain_data(fitted: Path):
    checkpoint = torch.load(fitted / "fold_0" / "checkpoints" / "best.ckpt", weights_only=True)
    meta = checkpoint["femurseg"]
    assert meta["target"] == "periosteal" and meta["classes"] == ["background", "periosteal"]
    assert meta["net"] == "unet3d" and meta["net_kwargs"]["channels"] == [4, 8, 16]
    assert meta["preprocessing"]["spacing"] == [4.0, 4.0, 4.0]
    assert meta["patch_size"] == [16, 16, 16]  # linked from data.patch_size
    assert meta["mirror_axes"] == "none"  # --data.augmentation none: tta auto will not flip
    assert any(k.startswith("net.") for k in checkpoint["state_dict"])


def test_wandb_offline_run_is_written(fitted: Path):
    runs = list((fitted / "fold_0" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1


def test_validate_subcommand_reuses_split(fitted: Path, tiny_cohort: Path):
    args = tiny_fit_args(tiny_cohort, fitted.parent, "--wandb", "disabled")
    ckpt = fitted / "fold_0" / "checkpoints" / "best.ckpt"
    before = (fitted / "splits.json").read_text()
    assert main(["validate", *args, "--ckpt_path", str(ckpt)]) == 0
    assert (fitted / "splits.json").read_text() == before


def test_print_config_parses(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / "periosteal.yaml"), "--config", str(CONFIGS / "quickstart.yaml"),
              "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["net"] == "unet3d"
    assert config["data"]["patch_size"] == [48, 48, 48] and config["runs_root"] == "runs/quickstart"
    assert config["model"]["loss"] == "dice_ce" and config["model"]["loss_kwargs"] == {"dice_weight": 0.0}
    assert config["trainer"]["use_distributed_sampler"] is False


def test_swapping_the_net_is_one_flag(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONFIGS / "periosteal.yaml"), "--model.net", "no_such_net", "--print_config"])
    # parsing accepts any name; building the model names the valid ones
    from femurseg.models import SegmentationModule

    with pytest.raises(KeyError, match="Valid names: .*unet3d"):
        SegmentationModule(net="no_such_net")


def test_synth_command(tmp_path: Path, capsys):
    assert main(["synth", "--out", str(tmp_path / "c"), "--n", "2", "--seed", "5", "--preset", "tiny"]) == 0
    rows = list(csv.DictReader((tmp_path / "c" / "manifest.csv").open()))
    assert [r["subject_id"] for r in rows] == ["phantom_00005", "phantom_00006"]
    assert "manifest" in capsys.readouterr().out


def test_nets_command_and_help(capsys):
    assert main(["nets"]) == 0
    assert "unet3d" in capsys.readouterr().out
    assert main(["nets", "--describe", "unet3d"]) == 0
    block = yaml.safe_load(capsys.readouterr().out)
    assert block["model"]["net"] == "unet3d" and "channels" in block["model"]["net_kwargs"]
    assert main(["--help"]) == 0
    assert main(["no_such_command"]) == 2


def test_ddp_two_ranks_train_on_different_subjects(tiny_cohort: Path, tmp_path: Path):
    """DDP over 2 CPU processes (gloo): each rank's queue reads its own subjects."""
    recorder = tmp_path / "recorder.py"
    recorder.write_text(
        "import json, os\n"
        "from lightning.pytorch.callbacks import Callback\n"
        "class RecordSubjects(Callback):\n"
        "    def __init__(self):\n"
        "        self.seen = set()\n"
        "    def on_train_batch_start(self, trainer, module, batch, batch_idx):\n"
        "        self.seen.update(batch['subject_id'])\n"
        "    def on_train_end(self, trainer, module):\n"
        "        path = os.path.join(os.environ['RECORD_DIR'], f'rank{trainer.global_rank}.json')\n"
        "        with open(path, 'w') as f:\n"
        "            json.dump(sorted(self.seen), f)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "RECORD_DIR": str(tmp_path), "WANDB_MODE": "disabled"}
    args = tiny_fit_args(tiny_cohort, tmp_path / "runs", "--wandb", "disabled", "--trainer.max_epochs", "1",
                         "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
                         "--trainer.callbacks+=recorder.RecordSubjects")
    result = subprocess.run([sys.executable, "-m", "femurseg", "fit", *args], env=env, capture_output=True,
                            text=True, encoding="utf-8", errors="replace", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    rank0 = set(json.loads((tmp_path / "rank0.json").read_text()))
    rank1 = set(json.loads((tmp_path / "rank1.json").read_text()))
    splits = json.loads((tmp_path / "runs" / "tiny" / "splits.json").read_text())
    assert rank0 and rank1 and not rank0 & rank1
    assert rank0 | rank1 == set(splits["folds"][0]["train"])
    assert (tmp_path / "runs" / "tiny" / "fold_0" / "checkpoints" / "last.ckpt").is_file()


def test_a_time_cap_that_cuts_training_short_is_reported_and_recorded(tiny_cohort: Path, tmp_path: Path, capsys):
    """max_time must never silently change what is trained: loud on stderr, recorded in the checkpoint."""
    args = tiny_fit_args(tiny_cohort, tmp_path, "--wandb", "disabled", "--trainer.max_epochs", "500",
                         "--trainer.max_time", "00:00:00:03", "--trainer.check_val_every_n_epoch", "1000")
    assert main(["fit", *args]) == 0
    assert "TRAINING STOPPED BY THE TIME CAP" in capsys.readouterr().err
    meta = torch.load(tmp_path / "tiny" / "fold_0" / "checkpoints" / "last.ckpt", weights_only=True)["femurseg"]
    assert meta["training"]["stopped_by_time_cap"] is True
    assert 0 < meta["training"]["epoch"] < 499


def test_a_full_training_records_that_it_was_not_capped(fitted: Path):
    meta = torch.load(fitted / "fold_0" / "checkpoints" / "last.ckpt", weights_only=True)["femurseg"]
    assert meta["training"]["stopped_by_time_cap"] is False
    assert meta["training"]["epoch"] == 2 and meta["training"]["max_epochs"] == 3


def test_fine_tuning_starts_from_the_pretrained_weights(fitted: Path, tiny_cohort: Path, tmp_path: Path):
    """`--model.pretrained CKPT`: the first validation is already as good as the source's last one."""
    source = fitted / "fold_0" / "checkpoints" / "last.ckpt"
    first = lambda run: [float(r["val/dice"]) for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/dice")]
    args = tiny_fit_args(tiny_cohort, tmp_path, "--wandb", "disabled", "--trainer.max_epochs", "1",
                         "--model.optimizer.init_args.lr", "1e-6", "--model.pretrained", str(source))
    assert main(["fit", *args]) == 0
    tuned = first(tmp_path / "tiny" / "fold_0")
    assert tuned[0] == pytest.approx(first(fitted / "fold_0")[-1], abs=0.02)
    assert tuned[0] > first(fitted / "fold_0")[0] + 0.05  # not a fresh start


def test_fine_tuning_refuses_another_preprocessing(fitted: Path, tiny_cohort: Path, tmp_path: Path):
    source = fitted / "fold_0" / "checkpoints" / "last.ckpt"
    args = tiny_fit_args(tiny_cohort, tmp_path, "--wandb", "disabled", "--model.pretrained", str(source),
                         "--data.spacing", "[3.0, 3.0, 3.0]")
    with pytest.raises(ValueError, match="preprocessing"):
        main(["fit", *args])
