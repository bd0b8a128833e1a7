"""Every registered net: shape, backward, no NaN, deep supervision, determinism."""

import inspect

import pytest
import torch

from femurseg.models import NETS

SMALL = {"channels": (4, 8, 16), "strides": (2, 2)}


def _build(name, **extra):
    parameters = inspect.signature(NETS.get(name)).parameters
    kwargs = {k: v for k, v in {**SMALL, **extra}.items() if k in parameters}
    return NETS.create(name, in_channels=1, out_channels=3, **kwargs)


@pytest.mark.parametrize("name", NETS.names())
def test_shape_backward_no_nan(name):
    torch.manual_seed(0)
    net = _build(name)
    x = torch.randn(2, 1, 16, 16, 16, requires_grad=True)
    out = net(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    assert out.shape == (2, 3, 16, 16, 16)
    out.square().mean().backward()
    assert torch.isfinite(out).all()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NETS.names())
def test_deterministic_with_seed(name):
    x = torch.randn(1, 1, 16, 16, 16)
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)
        net = _build(name).eval()
        with torch.no_grad():
            outputs.append(net(x))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("name", NETS.names())
def test_deep_supervision_outputs(name):
    if "deep_supervision" not in inspect.signature(NETS.get(name)).parameters:
        pytest.skip(f"{name} has no deep supervision")
    net = _build(name, deep_supervision=True, channels=(4, 8, 16, 32), strides=(2, 2, 2))
    outputs = net.train()(torch.randn(1, 1, 16, 16, 16))
    assert isinstance(outputs, list) and len(outputs) >= 2
    assert outputs[0].shape == (1, 3, 16, 16, 16)
    sizes = [o.shape[-1] for o in outputs]
    assert sizes == sorted(sizes, reverse=True) and sizes[1] < 16
    assert isinstance(net.eval()(torch.randn(1, 1, 16, 16, 16)), torch.Tensor)


def test_unet3d_checks_vocabulary():
    with pytest.raises(ValueError, match="len\\(strides\\)"):
        NETS.create("unet3d", in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2,))
