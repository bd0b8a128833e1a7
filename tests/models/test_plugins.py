"""A third-party net registered through the ``femurseg.nets`` entry point trains with ``--model.net``.

The second plugin net declares deep supervision at registration (``NetSpec``, docs/plugins.md)
with its own head name: it trains with a list of outputs and segments without its head.
"""

import sys
import textwrap

import pytest

from femurseg.models import NETS

PLUGIN = '''
"""A tiny plugin net, as in docs/plugins.md."""
from collections.abc import Sequence

import torch
from torch import nn


class TinyNet(nn.Module):
    """Two 3x3x3 convolutions; no downsampling."""

    def __init__(self, *, in_channels: int, out_channels: int, channels: Sequence[int] = (8,),
                 strides: Sequence[int] = (), norm: str = "instance", act: str = "relu") -> None:
        super().__init__()
        if len(strides) != len(channels) - 1:  # the shared vocabulary's rule, checked by the contract test
            raise ValueError(f"len(strides) must be len(channels) - 1, got {channels} and {strides}")
        self.body = nn.Sequential(nn.Conv3d(in_channels, channels[0], 3, padding=1), nn.ReLU(),
                                  nn.Conv3d(channels[0], out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


from femurseg.models.registry import NETS, NetSpec  # noqa: E402


@NETS.register("deep_tiny_net", metadata=NetSpec(deep_supervision=True, auxiliary_heads=("coarse_head",)))
class DeepTinyNet(nn.Module):
    """One convolution, a full-resolution head and, with deep supervision, a half-resolution head."""

    def __init__(self, *, in_channels: int, out_channels: int, channels: Sequence[int] = (4,),
                 strides: Sequence[int] = (), norm: str = "instance", act: str = "relu",
                 deep_supervision: bool = False) -> None:
        super().__init__()
        if len(strides) != len(channels) - 1:
            raise ValueError(f"len(strides) must be len(channels) - 1, got {channels} and {strides}")
        self.deep_supervision = deep_supervision
        self.body = nn.Sequential(nn.Conv3d(in_channels, channels[0], 3, padding=1), nn.ReLU())
        self.head = nn.Conv3d(channels[0], out_channels, 1)
        self.coarse_head = nn.Conv3d(channels[0], out_channels, 1) if deep_supervision else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        features = self.body(x)
        logits = self.head(features)
        if self.deep_supervision and self.training:
            return [logits, self.coarse_head(nn.functional.avg_pool3d(features, 2))]
        return logits
'''


@pytest.fixture()
def plugin_on_path(tmp_path, monkeypatch):
    """Install ``femurseg_tiny`` as a dist-info with an entry point, visible to importlib.metadata."""
    site = tmp_path / "site"
    (site / "femurseg_tiny").mkdir(parents=True)
    (site / "femurseg_tiny" / "__init__.py").write_text(PLUGIN)
    dist_info = site / "femurseg_tiny-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: femurseg-tiny\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(textwrap.dedent("""
        [femurseg.nets]
        tiny_plugin_net = femurseg_tiny:TinyNet
        deep_tiny_net = femurseg_tiny:DeepTinyNet
    """))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "femurseg_tiny", raising=False)  # import (and register) afresh
    # the registry reads plugins once, on first lookup: make this test's lookup the first, then restore
    monkeypatch.setattr(NETS, "_items", dict(NETS._items))
    monkeypatch.setattr(NETS, "_metadata", dict(NETS._metadata))
    monkeypatch.setattr(NETS, "_plugins_loaded", False)
    return site


def test_plugin_is_discovered(plugin_on_path):
    from femurseg.models.registry import NetSpec, net_spec

    assert "tiny_plugin_net" in NETS.names() and "unet3d" in NETS.names()
    assert NETS.get("tiny_plugin_net").__module__ == "femurseg_tiny"
    assert net_spec("tiny_plugin_net") == NetSpec()  # declared nothing: no patch size, no deep supervision
    assert net_spec("deep_tiny_net") == NetSpec(deep_supervision=True, auxiliary_heads=("coarse_head",))


def test_plugin_trains_through_the_cli(plugin_on_path, tiny_cohort, tmp_path):
    from femurseg.cli import run_lightning_cli

    cli = run_lightning_cli([
        "fit", "--model.net=tiny_plugin_net", "--model.net_kwargs={channels: [4]}", "--model.target=compartments",
        f"--data.manifest={tiny_cohort}", "--data.spacing=[4.0, 4.0, 4.0]", "--data.patch_size=16",
        "--data.num_folds=3", "--data.samples_per_volume=1", "--data.queue_length=4", "--data.augmentation=none",
        f"--data.cache_dir={tmp_path / 'cache'}", f"--runs_root={tmp_path / 'runs'}", "--wandb=disabled",
        "--trainer.fast_dev_run=1", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
    ])
    assert type(cli.model.net).__name__ == "TinyNet"
    assert cli.trainer.global_step == 1


def _fit_args(tiny_cohort, tmp_path, *extra):
    return [
        "fit", "--model.target=compartments", f"--data.manifest={tiny_cohort}", "--data.spacing=[4.0, 4.0, 4.0]",
        "--data.patch_size=16", "--data.num_folds=3", "--data.samples_per_volume=1", "--data.queue_length=4",
        "--data.augmentation=none", f"--data.cache_dir={tmp_path / 'cache'}", f"--runs_root={tmp_path / 'runs'}",
        "--wandb=disabled", "--trainer.fast_dev_run=1", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", *extra,
    ]


def test_plugin_with_deep_supervision_trains_and_segments(plugin_on_path, tiny_cohort, tmp_path):
    import torch

    from femurseg.cli import run_lightning_cli
    from femurseg.data.manifest import read_manifest
    from femurseg.inference.predictor import segment
    from femurseg.models.checkpoints import build_net, read_checkpoint

    cli = run_lightning_cli(_fit_args(tiny_cohort, tmp_path, "--model.net=deep_tiny_net",
                                      "--model.net_kwargs={channels: [4], deep_supervision: true}"))
    assert cli.trainer.global_step == 1
    outputs = cli.model.net.train()(torch.zeros(1, 1, 16, 16, 16))
    assert [o.shape[-1] for o in outputs] == [16, 8]  # trained on both scales
    checkpoint = tmp_path / "deep.ckpt"
    cli.trainer.save_checkpoint(checkpoint)

    info = read_checkpoint(checkpoint)
    assert any(k.startswith("coarse_head.") for k in info.state_dict)  # saved by training ...
    net = build_net(info)
    assert net.coarse_head is None and not net.deep_supervision  # ... left out for inference
    image = read_manifest(tiny_cohort)[0].image
    result = segment(image, checkpoints=[checkpoint], tta="none")
    assert result.label.GetSize() == result.image.GetSize()


def test_deep_supervision_must_be_declared(plugin_on_path):
    from femurseg.models import SegmentationModule

    with pytest.raises(ValueError, match="does not declare deep supervision"):
        SegmentationModule(net="tiny_plugin_net", net_kwargs={"deep_supervision": True})
