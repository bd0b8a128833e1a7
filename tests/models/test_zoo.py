"""Bundled models: packaging, hash checks, the listing, and the shipped default model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from femurseg.data.preprocess import Preprocessing
from femurseg.errors import CheckpointError
from femurseg.models.checkpoints import read_checkpoint
from femurseg.models import NETS
from femurseg.models.zoo import DEFAULT_MODEL, WEIGHTS_DIR, get_model, list_models, model_path, package_checkpoint

REPO = Path(__file__).resolve().parents[2]


def _run_checkpoint(run: Path) -> Path:
    """A checkpoint laid out as a fit writes it, with optimizer state and the run's config.yaml."""
    kwargs = {"in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2]}
    torch.manual_seed(0)
    net = NETS.create("unet3d", **kwargs)
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"seed_everything": 7, "data": {
        "synthetic_n": 3, "synthetic_preset": "tiny", "synthetic_seed": 5, "augmentation": "domain"}}))
    path = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(1000)}}}],
                "femurseg": {"format_version": 1, "target": "compartments", "net": "unet3d", "net_kwargs": kwargs,
                             "preprocessing": Preprocessing(spacing=(4.0, 4.0, 4.0)).to_dict(),
                             "patch_size": [16, 16, 16], "classes": ["background", "cortical", "trabecular"],
                             "training": {"global_step": 12, "stopped_by_time_cap": False}}}, path)
    return path


def test_packaging_keeps_weights_and_provenance_and_drops_training_state(tmp_path: Path):
    checkpoint = _run_checkpoint(tmp_path / "run")
    weights = tmp_path / "weights"
    model = package_checkpoint(checkpoint, "tiny-v1", "bash build.sh", "a test model", "abc123", weights_dir=weights)
    assert [m.name for m in list_models(weights)] == ["tiny-v1"]
    path = model_path("tiny-v1", weights)
    info = read_checkpoint(path)  # weights_only, registered net
    original = read_checkpoint(checkpoint)
    assert info.target == "compartments" and info.state_dict.keys() == original.state_dict.keys()
    assert all(torch.equal(info.state_dict[k], original.state_dict[k]) for k in info.state_dict)
    card = model.card
    assert (card["seed"], card["git_commit"], card["recipe"]) == (7, "abc123", "bash build.sh")
    assert card["training"]["global_step"] == 12 and "tiny" in card["training_data"]
    assert "optimizer_states" not in torch.load(path, weights_only=True)
    assert json.loads((weights / "index.json").read_text())["models"]["tiny-v1"]["sha256"] == model.sha256


def test_a_fine_tuned_model_names_its_starting_weights(tmp_path: Path):
    checkpoint = _run_checkpoint(tmp_path / "run")
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({**config, "model": {"pretrained": "femur-ct-v3"}}))
    card = package_checkpoint(checkpoint, "tiny-v2", "", "", "abc", weights_dir=tmp_path / "weights").card
    assert card["pretrained"] == "femur-ct-v3" and card["training_data"].endswith("; fine-tuned from femur-ct-v3")


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "configs" / "default_model").glob("*.yaml")))
def test_every_recipe_has_a_one_line_description(recipe: str):
    lines = [l for l in (REPO / "configs" / "default_model" / recipe).read_text().splitlines()
             if l.startswith("# description: ")]
    assert len(lines) == 1 and len(lines[0]) > 40


def test_the_bundled_weights_fit_the_package_data_budget():
    """Issue 17: at most 25 MB of weights in all; every file in the folder is in the index and vice versa."""
    files = sorted(p.name for p in WEIGHTS_DIR.glob("*.pt"))
    assert files == sorted(m.file for m in list_models())
    assert sum((WEIGHTS_DIR / f).stat().st_size for f in files) <= 25 * 2**20
    assert DEFAULT_MODEL in {m.name for m in list_models()}


def test_a_changed_weights_file_is_refused(tmp_path: Path):
    weights = tmp_path / "weights"
    package_checkpoint(_run_checkpoint(tmp_path / "run"), "tiny-v1", "r", weights_dir=weights)
    with (weights / "tiny-v1.pt").open("ab") as stream:
        stream.write(b"\0")
    with pytest.raises(CheckpointError, match="SHA-256"):
        model_path("tiny-v1", weights)
    with pytest.raises(CheckpointError, match="no bundled model 'nope'"):
        get_model("nope", weights)


def test_the_shipped_default_model_matches_its_hash_and_loads_safely():
    assert DEFAULT_MODEL in [m.name for m in list_models()]
    path = model_path()  # SHA-256 checked against index.json
    assert path.parent == WEIGHTS_DIR and path.stat().st_size < 25 * 2**20
    info = read_checkpoint(path)
    card = get_model().card
    assert info.target == card["target"] and card["training"]["stopped_by_time_cap"] is False
    assert "synthetic" in card["training_data"] and card["git_commit"] not in ("", "unknown")


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "configs" / "default_model").glob("*.yaml")))
def test_the_recipe_config_parses(tmp_path: Path, recipe: str):
    from femurseg.cli import run_lightning_cli

    config = REPO / "configs" / "default_model" / recipe
    cli = run_lightning_cli(["--config", str(config), "--wandb", "disabled", "--runs_root", str(tmp_path)], run=False)
    assert cli.model.hparams.target == "compartments" and cli.datamodule.hparams.augmentation.startswith("domain")
    assert cli.trainer.max_steps == yaml.safe_load(config.read_text())["trainer"]["max_steps"]
    assert cli.datamodule.hparams.synthetic_preset.startswith("transfer")  # phantoms only, never a manifest
    assert cli.datamodule.hparams.manifest is None
    assert not any(tmp_path.iterdir()), "parsing the recipe must not write anything"


def test_segment_with_no_checkpoint_uses_the_bundled_model(tmp_path: Path):
    """`femurseg segment SCAN --output DIR` and `femurseg.segment(path)` need nothing else."""
    import SimpleITK as sitk

    import femurseg
    from femurseg.cli import main
    from femurseg.data.synthetic import generate_subject

    case = generate_subject(3, preset="tiny")
    scan = tmp_path / "hip.nii.gz"
    sitk.WriteImage(case.image, str(scan))
    assert main(["segment", str(scan), "--output", str(tmp_path / "out"), "--no-qc", "--tta", "none"]) == 0
    report = json.loads((tmp_path / "out" / "hip" / "report.json").read_text())
    assert report["ensemble"]["kind"] == "compartments"
    assert report["checkpoints"][0]["path"].endswith(f"{DEFAULT_MODEL}.pt")
    label = sitk.ReadImage(str(tmp_path / "out" / "hip" / "segmentation.nii.gz"))
    written = sitk.ReadImage(str(scan))
    assert label.GetSize() == written.GetSize() and label.GetSpacing() == written.GetSpacing()
    result = femurseg.segment(scan, tta="none")
    assert result.report["volume_cm3"] == report["volume_cm3"]
    assert set(int(v) for v in sitk.GetArrayViewFromImage(result.label).ravel()) <= {0, 1, 2}
