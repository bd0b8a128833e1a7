"""A third-party net registered through the ``femurseg.nets`` entry point trains with ``--model.net``."""

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
        self.body = nn.Sequential(nn.Conv3d(in_channels, channels[0], 3, padding=1), nn.ReLU(),
                                  nn.Conv3d(channels[0], out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
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
    """))
    monkeypatch.syspath_prepend(str(site))
    # the registry reads plugins once, on first lookup: make this test's lookup the first, then restore
    monkeypatch.setattr(NETS, "_items", dict(NETS._items))
    monkeypatch.setattr(NETS, "_plugins_loaded", False)
    return site


def test_plugin_is_discovered(plugin_on_path):
    assert "tiny_plugin_net" in NETS.names() and "unet3d" in NETS.names()
    assert NETS.get("tiny_plugin_net").__module__ == "femurseg_tiny"


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
