"""Every registered net: shape, backward, no NaN, deep supervision, determinism, vocabulary.

Each test is parametrized over ``NETS.names()``: a newly registered net (built-in or an
installed entry-point plugin) is tested without editing this file.
"""

import inspect

import pytest
import torch

from femurseg.models import NETS
from femurseg.models.nets import plan
from femurseg.models.registry import NetSpec, net_spec

SMALL = {"channels": (4, 8, 16), "strides": (2, 2), "hidden_size": 16, "num_heads": 2, "num_layers": 2,
         "kernel_size": 3}


def _build(name, **extra):
    parameters = inspect.signature(NETS.get(name)).parameters
    kwargs = {k: v for k, v in {**SMALL, **extra}.items() if k in parameters}
    return NETS.create(name, in_channels=1, out_channels=3, **kwargs)


def _outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


@pytest.mark.parametrize("name", NETS.names())
def test_constructor_is_keyword_only_with_shared_vocabulary(name):
    parameters = inspect.signature(NETS.get(name)).parameters
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters.values())
    assert {"in_channels", "out_channels", "channels", "strides", "norm", "act"} <= set(parameters)


@pytest.mark.parametrize("name", NETS.names())
def test_shape_backward_no_nan(name):
    torch.manual_seed(0)
    net = _build(name).train()
    x = torch.randn(2, 1, 16, 16, 16, requires_grad=True)
    outputs = _outputs(net(x))
    assert outputs[0].shape == (2, 3, 16, 16, 16)
    sum(o.square().mean() for o in outputs).backward()
    assert all(torch.isfinite(o).all() for o in outputs)
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", NETS.names())
def test_deterministic_with_seed(name):
    x = torch.randn(1, 1, 16, 16, 16)
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)
        net = _build(name).eval()
        with torch.no_grad():
            outputs.append(net(x))
    assert isinstance(outputs[0], torch.Tensor)  # one tensor in eval mode, deep supervision or not
    assert torch.equal(outputs[0], outputs[1])


DEEP = {"channels": (4, 8, 16, 32), "strides": (2, 2, 2), "num_layers": 3}


@pytest.mark.parametrize("name", NETS.names())
def test_declared_spec_matches_the_constructor(name):
    spec = net_spec(name)
    assert isinstance(spec, NetSpec)
    parameters = inspect.signature(NETS.get(name)).parameters
    if spec.needs_patch_size:
        assert "patch_size" in parameters
    if not spec.deep_supervision:
        return
    assert "deep_supervision" in parameters
    torch.manual_seed(0)
    with_heads = set(_build(name, deep_supervision=True, **DEEP).state_dict())
    without = set(_build(name, deep_supervision=False, **DEEP).state_dict())
    assert without <= with_heads
    assert all(spec.is_auxiliary_weight(k) for k in with_heads - without)  # only the declared heads go
    assert not any(spec.is_auxiliary_weight(k) for k in without)


@pytest.mark.parametrize("name", NETS.names())
def test_deep_supervision_outputs(name):
    if not net_spec(name).deep_supervision:
        pytest.skip(f"{name} declares no deep supervision")
    net = _build(name, deep_supervision=True, **DEEP)
    outputs = net.train()(torch.randn(1, 1, 16, 16, 16))
    assert isinstance(outputs, list) and len(outputs) >= 2  # full resolution first, then coarser ones
    assert outputs[0].shape == (1, 3, 16, 16, 16)
    assert all(o.shape[:2] == (1, 3) and all(n <= 16 for n in o.shape[2:]) for o in outputs)
    if NETS.get(name).__module__.startswith("femurseg."):  # the built-ins: one output per decoder stage but the deepest
        assert [o.shape[-1] for o in outputs] == [16, 8, 4]
    assert isinstance(net.eval()(torch.randn(1, 1, 16, 16, 16)), torch.Tensor)


@pytest.mark.parametrize("name", NETS.names())
def test_stage_lengths_are_checked(name):
    with pytest.raises(ValueError, match="len\\(strides\\)"):
        NETS.create(name, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2,))


@pytest.mark.parametrize("name", NETS.names())
def test_anisotropic_strides(name):
    net = _build(name, strides=((2, 2, 1), (2, 2, 2))).eval()
    assert net(torch.zeros(1, 1, 16, 16, 8)).shape == (1, 3, 16, 16, 8)


def test_plan_isotropic():
    p = plan((128, 128, 128), (0.75, 0.75, 0.75), max_stages=6)
    assert p.strides == [(2, 2, 2)] * 5 and p.kernel_sizes == [(3, 3, 3)] * 6
    assert p.channels == [32, 64, 128, 256, 320, 320]


def test_plan_thick_slices_start_in_plane():
    p = plan((160, 160, 48), (0.7, 0.7, 3.0), max_stages=6)
    assert p.strides[:2] == [(2, 2, 1), (2, 2, 1)] and p.kernel_sizes[:2] == [(3, 3, 1), (3, 3, 1)]
    assert p.kernel_sizes[2] == (3, 3, 3) and p.strides[2] == (2, 2, 2)
    # no axis is downsampled below 4 voxels, and every stride divides the patch
    size = [160, 160, 48]
    for stride in p.strides:
        assert all(n % s == 0 for n, s in zip(size, stride))
        size = [n // s for n, s in zip(size, stride)]
    assert min(size) >= 4


def test_plan_stops_at_small_axes_and_rejects_bad_input():
    assert plan((16, 16, 16), max_stages=6).strides == [(2, 2, 2), (2, 2, 2)]
    with pytest.raises(ValueError, match="spacing"):
        plan(64, (1.0, 1.0))
    with pytest.raises(ValueError, match="too small"):
        plan(6)


def test_dynunet3d_uses_plan_and_module_fills_patch_size():
    from femurseg.models import SegmentationModule

    net = NETS.create("dynunet3d", in_channels=1, out_channels=2, patch_size=(32, 32, 16),
                      spacing=(0.7, 0.7, 1.5), max_stages=3)
    assert net.strides == [(2, 2, 1), (2, 2, 2)] and net.kernel_sizes[0] == (3, 3, 1)
    module = SegmentationModule(net="dynunet3d", net_kwargs={"max_stages": 3, "channels": (4, 8, 16)},
                                patch_size=(32, 32, 16))
    assert module.net_kwargs["patch_size"] == (32, 32, 16)
