"""Building blocks shared by the networks: norm and activation factories, conv units.

Norms and activations are given as a name or a ``(name, kwargs)`` pair so that
configs stay plain data: ``norm="instance"``, ``act=("leakyrelu", {"negative_slope": 0.1})``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import torch

from torch import nn

from femurseg.voxels import Size3, as_triple

__all__ = [
    "LayerSpec", "Size3", "make_norm", "make_act", "as_triple", "ConvNormAct", "ResidualBlock", "check_stages",
    "DeepSupervisionHeads", "decode_skips",
]

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
        self, in_channels: int, out_channels: int, *, kernel_size: Size3 = 3, stride: Size3 = 1,
        norm: LayerSpec = "instance", act: LayerSpec = "leakyrelu",
    ) -> None:
        kernel = as_triple(kernel_size)
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel, as_triple(stride), padding=tuple(k // 2 for k in kernel),
                      bias=False),
            make_norm(norm, out_channels),
            make_act(act),
        )


class ResidualBlock(nn.Module):
    """Two convolutions (3×3×3 by default) with an identity (or 1×1×1 projection) shortcut.

    Shapes: ``(B, C_in, D, H, W) → (B, C_out, D / stride, H / stride, W / stride)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: Size3 = 1, norm: LayerSpec = "instance",
        act: LayerSpec = "leakyrelu", dropout: float = 0.0, kernel_size: Size3 = 3,
    ) -> None:
        super().__init__()
        kernel = as_triple(kernel_size)
        self.conv1 = ConvNormAct(in_channels, out_channels, kernel_size=kernel, stride=stride, norm=norm, act=act)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel, padding=tuple(k // 2 for k in kernel), bias=False)
        self.norm2 = make_norm(norm, out_channels)
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if as_triple(stride) != (1, 1, 1) or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False), make_norm(norm, out_channels)
            )
        self.act = make_act(act)

    def forward(self, x):  # noqa: D102
        return self.act(self.norm2(self.conv2(self.dropout(self.conv1(x)))) + self.shortcut(x))


class DeepSupervisionHeads(nn.ModuleList):
    """1×1×1 output heads on the decoder outputs below full resolution.

    The deepest decoder output is left out (as in nnU-Net): with ``channels`` of
    ``n`` stages, a decoder yields ``n - 1`` outputs; heads are made for the
    ``n - 2`` coarser ones, full resolution excluded (it has the main head).

    Parameters
    ----------
    channels
        Feature channels per stage, shallow to deep (the net's ``channels``).
    out_channels
        Classes.
    enabled
        Without deep supervision the module holds no head and returns ``[]``.

    A ``ModuleList`` so that the state-dict keys are ``aux_heads.<i>.weight``.
    """

    def __init__(self, channels: Sequence[int], out_channels: int, *, enabled: bool) -> None:
        stages = range(1, len(channels) - 1) if enabled else range(0)
        super().__init__(nn.Conv3d(channels[stage], out_channels, 1) for stage in stages)

    def forward(self, decoded: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Logits of the coarser outputs, finest first.

        ``decoded`` holds the decoder outputs in decoding order (coarse to fine,
        ``decoded[-1]`` at full resolution).
        """
        return [head(features) for head, features in zip(self, reversed(decoded[:-1]))]


def decode_skips(
    skips: list[torch.Tensor],
    upsample: Sequence[nn.Module],
    stages: Sequence[nn.Module],
    head: nn.Module,
    aux_heads: DeepSupervisionHeads,
    deep_supervision: bool,
) -> torch.Tensor | list[torch.Tensor]:
    """The decoder pass of a U-shaped net, shared by the nets of this package.

    Starting from the deepest feature map (``skips[-1]``), each decoder stage
    upsamples, concatenates the skip of its resolution and convolves; ``head``
    turns the full-resolution output into logits.

    Parameters
    ----------
    skips
        Encoder outputs, shallow to deep; consumed (popped).
    upsample, stages
        One upsampling module and one decoder stage per level, deep to shallow.
    head
        Full-resolution output head.
    aux_heads
        Heads of the coarser decoder outputs.
    deep_supervision
        Return ``[logits, *coarser logits]`` (training with deep supervision)
        instead of the logits alone.
    """
    x = skips.pop()
    decoded = []
    for up, stage in zip(upsample, stages):
        x = stage(torch.cat([up(x), skips.pop()], dim=1))
        decoded.append(x)
    logits = head(x)
    if not deep_supervision:
        return logits
    return [logits, *aux_heads(decoded)]
