"""Fine-tuning: a SegmentationModule initialised from a checkpoint or a bundled model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from femurseg.data.preprocess import Preprocessing
from femurseg.errors import CheckpointError
from femurseg.models import NETS
from femurseg.models.module import SegmentationModule

KWARGS = {"channels": [4, 8], "strides": [2]}


def _checkpoint(path: Path, target: str = "compartments", seed: int = 3) -> Path:
    out = 3 if target == "compartments" else 2
    torch.manual_seed(seed)
    net = NETS.create("unet3d", in_channels=1, out_channels=out, **KWARGS)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "femurseg": {"format_version": 1, "target": target, "net": "unet3d",
                             "net_kwargs": {"in_channels": 1, "out_channels": out, **KWARGS},
                             "preprocessing": Preprocessing(spacing=(4.0, 4.0, 4.0)).to_dict(),
                             "patch_size": [16, 16, 16]}}, path)
    return path


def test_the_net_starts_from_the_checkpoint_weights(tmp_path: Path):
    source = _checkpoint(tmp_path / "source.ckpt")
    expected = {k[len("net."):]: v for k, v in torch.load(source, weights_only=True)["state_dict"].items()}
    module = SegmentationModule(net_kwargs=KWARGS, target="compartments", patch_size=16, pretrained=str(source))
    state = module.net.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert module.pretrained_preprocessing == Preprocessing(spacing=(4.0, 4.0, 4.0)).to_dict()
    fresh = SegmentationModule(net_kwargs=KWARGS, target="compartments", patch_size=16)
    assert not all(torch.equal(fresh.net.state_dict()[k], expected[k]) for k in expected)


def test_ema_copy_starts_from_the_pretrained_weights(tmp_path: Path):
    source = _checkpoint(tmp_path / "source.ckpt")
    module = SegmentationModule(net_kwargs=KWARGS, target="compartments", patch_size=16, ema_decay=0.99,
                                pretrained=str(source))
    assert module.ema_net is not None
    assert all(torch.equal(a, b) for a, b in zip(module.net.state_dict().values(), module.ema_net.state_dict().values()))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"net_kwargs": {"channels": [4, 8, 16], "strides": [2, 2]}, "target": "compartments"}, "net_kwargs"),
    ({"net_kwargs": KWARGS, "target": "periosteal"}, "target 'compartments'"),
])
def test_another_architecture_or_target_is_refused_naming_the_file(tmp_path: Path, kwargs, match):
    source = _checkpoint(tmp_path / "source.ckpt")
    with pytest.raises(CheckpointError, match=match) as error:
        SegmentationModule(patch_size=16, pretrained=str(source), **kwargs)
    assert "source.ckpt" in str(error.value)


def test_an_unknown_source_is_refused():
    with pytest.raises(CheckpointError, match="no bundled model 'femur-ct-v0'"):
        SegmentationModule(net_kwargs=KWARGS, target="compartments", pretrained="femur-ct-v0")


def test_a_bundled_model_is_a_source():
    module = SegmentationModule(net_kwargs={"channels": [16, 32, 64, 128], "strides": [2, 2, 2], "norm": "instance",
                                            "act": "leakyrelu", "deep_supervision": False},
                                target="compartments", patch_size=48, pretrained="femur-ct-v3")
    assert module.pretrained_preprocessing is not None
    assert module.pretrained_preprocessing["spacing"] == [2.0, 2.0, 2.0]
