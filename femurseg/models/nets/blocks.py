"""Building blocks shared by the networks: norm and activation factories, conv units.

Norms and activations are given as a name or a ``(name, kwargs)`` pair so that
configs stay plain data: ``norm="instance"``, ``act=("leakyrelu", {"negative_slope": 0.1})``.
"""

from __future__ import annotations

from typing import Any, Union

from torch import nn

__all__ = ["LayerSpec", "make_norm", "make_act", "ConvNormAct", "ResidualBlock", "check_stages"]

LayerSpec = Union[str, tuple[str, dict[str, Any]], None]

_NORMS = {
    "instance": lambda c, **kw: nn.InstanceNorm3d(c, affine=True, **kw),
    "batch": lambda c, **kw: nn.BatchNorm3d(c, **kw),
    "group": lambda c, **kw: nn.GroupNorm(kw.pop("num_groups", min(8, c)), c, **kw),
    "none": lambda c, **kw: nn.Identity(),
}
_ACTS = {
    "leakyrelu": lambda **kw: nn.LeakyReLU(**({"negative_slope": 0.01, "inplace": True} | kw)),
    "relu": lambda **kw: nn.ReLU(**({"inplace": True} | kw)),
    "prelu": lambda **kw: nn.PReLU(**kw),
    "gelu": lambda **kw: nn.GELU(**kw),
    "elu": lambda **kw: nn.ELU(**kw),
}


def _split(spec: LayerSpec, default: str) -> tuple[str, dict[str, Any]]:
    if spec is None:
        return default, {}
    if isinstance(spec, str):
        return spec.lower(), {}
    name, kwargs = spec
    return name.lower(), dict(kwargs)


def make_norm(spec: LayerSpec, channels: int) -> nn.Module:
    """Build a 3D normalisation layer from a name or ``(name, kwargs)``."""
    name, kwargs = _split(spec, "none")
    if name not in _NORMS:
        raise ValueError(f"unknown norm {name!r}; valid: {', '.join(sorted(_NORMS))}")
    return _NORMS[name](channels, **kwargs)


def make_act(spec: LayerSpec) -> nn.Module:
    """Build an activation from a name or ``(name, kwargs)``."""
    name, kwargs = _split(spec, "leakyrelu")
    if name not in _ACTS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(sorted(_ACTS))}")
    return _ACTS[name](**kwargs)


def check_stages(channels: tuple[int, ...] | list[int], strides: tuple[int, ...] | list[int]) -> None:
    """Check the shared vocabulary: ``len(strides) == len(channels) - 1``."""
    if len(channels) < 2:
        raise ValueError(f"channels needs at least two stages, got {tuple(channels)}")
    if len(strides) != len(channels) - 1:
        raise ValueError(
            f"len(strides) must be len(channels) - 1 = {len(channels) - 1}, "
            f"got channels={tuple(channels)} strides={tuple(strides)}"
        )


class ConvNormAct(nn.Sequential):
    """``Conv3d → norm → activation``."""

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1,
        norm: LayerSpec = "instance", act: LayerSpec = "leakyrelu",
    ) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            make_norm(norm, out_channels),
            make_act(act),
        )


class ResidualBlock(nn.Module):
    """Two 3×3×3 convolutions with an identity (or 1×1×1 projection) shortcut.

    Shapes: ``(B, C_in, D, H, W) → (B, C_out, D / stride, H / stride, W / stride)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, norm: LayerSpec = "instance",
        act: LayerSpec = "leakyrelu", dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, stride=stride, norm=norm, act=act)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels)
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False), make_norm(norm, out_channels)
            )
        self.act = make_act(act)

    def forward(self, x):  # noqa: D102
        return self.act(self.norm2(self.conv2(self.dropout(self.conv1(x)))) + self.shortcut(x))
