"""``femurseg nets``: listing with parameter counts, pasteable YAML blocks, losses."""

import inspect

import pytest
import yaml

from femurseg.cli import main
from femurseg.models import LOSSES, NETS, SegmentationModule
from femurseg.models.describe import describe_net, list_losses, net_parameters


@pytest.mark.parametrize("name", NETS.names())
def test_describe_block_is_yaml_with_every_default(name):
    block = yaml.safe_load(describe_net(name))["model"]
    assert block["net"] == name
    defaults = {k: v for k, v in net_parameters(name).items()
                if k not in ("in_channels", "out_channels", "patch_size")}
    assert block["net_kwargs"].keys() == defaults.keys()
    for key, value in defaults.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert block["net_kwargs"][key] == expected


def test_pasted_block_builds_the_module():
    block = yaml.safe_load(describe_net("unet3d"))["model"]
    module = SegmentationModule(**block)
    assert type(module.net) is NETS.get("unet3d")


def test_cli_lists_nets_with_counts_and_losses(capsys, monkeypatch):
    import femurseg.models.describe as describe

    monkeypatch.setattr(describe, "count_parameters", lambda name: 1_230_000)  # skip building full-size nets
    assert main(["nets"]) == 0
    out = capsys.readouterr().out
    for name in NETS.names():
        assert f"{name}  (" in out
    assert "1.23 M parameters" in out
    assert "declares: needs patch_size, deep supervision (heads: aux_heads)" in out  # dynunet3d
    assert main(["nets", "--losses"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}  (" in out for name in LOSSES.names()) and "class_weights=null" in out
    assert list_losses().count("\n    ") == 2 * len(LOSSES.names())


def test_cli_describe(capsys):
    assert main(["nets", "--describe", "unet3d"]) == 0
    assert "net: unet3d" in capsys.readouterr().out
    assert main(["nets", "--describe", "unet"]) == 2
    assert "did you mean 'unet3d'" in capsys.readouterr().err


def test_count_parameters_matches_module():
    from femurseg.models.describe import count_parameters

    kwargs = {"channels": (4, 8), "strides": (2,)}
    net = NETS.create("unet3d", in_channels=1, out_channels=2, **kwargs)
    assert count_parameters("unet3d", **kwargs) == sum(p.numel() for p in net.parameters())
    assert inspect.signature(count_parameters).parameters["out_channels"].default == 2
