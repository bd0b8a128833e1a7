"""Bad input to fit and segment ends with a clear message and status 2, not a traceback (issue 15.7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from femurseg.cli import main
from femurseg.data.folds import make_splits
from femurseg.data.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def test_a_subject_added_after_the_split_stops_fit_with_a_message(tiny_cohort: Path, tmp_path: Path, capsys):
    subjects = [r.subject_id for r in read_manifest(tiny_cohort)]
    experiment = tmp_path / "tiny"
    experiment.mkdir()
    splits = make_splits(subjects[:-1], num_folds=3, test_fraction=0.0, seed=0)   # made before the last one came
    splits.write(experiment / "splits.json")
    args = ["--config", str(CONFIGS / "periosteal.yaml"), "--config", str(CONFIGS / "quickstart.yaml"),
            "--runs_root", str(tmp_path), "--experiment", "tiny", "--wandb", "disabled",
            "--data.manifest", str(tiny_cohort), "--data.num_folds", "3", "--data.test_fraction", "0.0",
            "--trainer.enable_progress_bar", "false"]
    with pytest.raises(SystemExit) as stop:
        main(["fit", *args])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "femurseg fit: error:" in err and subjects[-1] in err and "Traceback" not in err
    assert not (experiment / "fold_0" / "checkpoints").exists()


def test_weights_that_do_not_fit_the_net_are_a_checkpoint_error(tmp_path: Path):
    import torch

    from femurseg.errors import CheckpointError
    from femurseg.models.checkpoints import build_net, read_checkpoint
    from femurseg.models import NETS

    kwargs = {"in_channels": 1, "out_channels": 2, "channels": [4, 8], "strides": [2]}
    net = NETS.create_registered("unet3d", **kwargs)
    state = {f"net.{k}": torch.zeros(v.shape[0] + 1, *v.shape[1:]) if v.ndim else v
             for k, v in net.state_dict().items()}   # every tensor one row too many
    torch.save({"state_dict": state, "femurseg": {
        "format_version": 1, "target": "periosteal", "net": "unet3d", "net_kwargs": kwargs,
        "preprocessing": {"spacing": [2.0, 2.0, 2.0], "hu_window": [-1000.0, 2000.0]},
        "patch_size": [16, 16, 16], "classes": []}}, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match=r"bad\.ckpt: weights do not fit net 'unet3d'"):
        build_net(read_checkpoint(tmp_path / "bad.ckpt"))


def test_a_truncated_checkpoint_is_a_checkpoint_error(tmp_path: Path):
    import torch

    from femurseg.errors import CheckpointError
    from femurseg.models.checkpoints import read_checkpoint

    torch.save({"state_dict": {"net.w": torch.zeros(1000)}, "femurseg": {"format_version": 1}}, tmp_path / "c.ckpt")
    data = (tmp_path / "c.ckpt").read_bytes()
    (tmp_path / "c.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"c\.ckpt"):
        read_checkpoint(tmp_path / "c.ckpt")
