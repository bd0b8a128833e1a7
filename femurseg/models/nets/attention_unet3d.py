"""Attention U-Net (``attention_unet3d``): additive attention gates on the skip connections.

After Oktay et al., "Attention U-Net: Learning where to look for the pancreas"
(MIDL 2018). As in MONAI's ``AttentionUnet``, the gating signal is the upsampled
decoder feature, at the skip's resolution, so no resampling inside the gate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from femurseg.models.nets.blocks import (
    ConvNormAct, DeepSupervisionHeads, LayerSpec, Size3, as_triple, check_stages, make_act, make_norm,
)
from femurseg.models.registry import NETS, NetSpec

__all__ = ["AttentionUNet3d", "AttentionGate"]


class AttentionGate(nn.Module):
    """Additive attention: ``x · σ(ψ(act(W_g g + W_x x)))``.

    Parameters
    ----------
    gate_channels, skip_channels
        Channels of the gating signal ``g`` and of the skip feature ``x`` (same
        spatial size).
    inter_channels
        Channels of the joint embedding.

    Shapes: ``g (B, C_g, D, H, W)``, ``x (B, C_x, D, H, W) → (B, C_x, D, H, W)``.
    """

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int, *, norm: LayerSpec) -> None:
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv3d(gate_channels, inter_channels, 1, bias=False),
                                 make_norm(norm, inter_channels))
        self.w_x = nn.Sequential(nn.Conv3d(skip_channels, inter_channels, 1, bias=False),
                                 make_norm(norm, inter_channels))
        self.psi = nn.Sequential(nn.Conv3d(inter_channels, 1, 1), nn.Sigmoid())
        self.act = nn.ReLU()

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x * self.psi(self.act(self.w_g(g) + self.w_x(x)))


def _double_conv(in_channels: int, out_channels: int, stride: Size3, norm: LayerSpec, act: LayerSpec) -> nn.Module:
    return nn.Sequential(
        ConvNormAct(in_channels, out_channels, stride=stride, norm=norm, act=act),
        ConvNormAct(out_channels, out_channels, norm=norm, act=act),
    )


@NETS.register("attention_unet3d", metadata=NetSpec(deep_supervision=True, auxiliary_heads=("aux_heads",)))
class AttentionUNet3d(nn.Module):
    """U-Net with two plain convolutions per stage and attention-gated skips.

    Parameters
    ----------
    in_channels, out_channels
        Input channels (1 for CT) and output classes (logits).
    channels
        Feature channels per stage, shallow to deep.
    strides
        Downsampling between stages, ``len(channels) - 1`` ints or per-axis triples
        (the first convolution of each stage is strided).
    norm, act
        Normalisation and activation, as a name or ``(name, kwargs)``.
    dropout
        Channel dropout in the deepest stage.
    deep_supervision
        In training mode, also return logits at the coarser decoder scales.

    Examples
    --------
    >>> net = AttentionUNet3d(in_channels=1, out_channels=3, channels=(4, 8, 16), strides=(2, 2))
    >>> net(torch.zeros(1, 1, 16, 16, 16)).shape
    torch.Size([1, 3, 16, 16, 16])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        strides: Sequence[Size3] = (2, 2, 2),
        norm: LayerSpec = "instance",
        act: LayerSpec = "leakyrelu",
        dropout: float = 0.0,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        check_stages(channels, strides)
        self.deep_supervision = deep_supervision
        n = len(channels)
        self.encoder = nn.ModuleList(
            _double_conv(in_channels if i == 0 else channels[i - 1], channels[i],
                         1 if i == 0 else strides[i - 1], norm, act)
            for i in range(n)
        )
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(n - 1, 0, -1):
            stride = as_triple(strides[i - 1])
            self.up.append(nn.Sequential(
                nn.ConvTranspose3d(channels[i], channels[i - 1], stride, stride=stride, bias=False),
                make_norm(norm, channels[i - 1]), make_act(act),
            ))
            self.gates.append(AttentionGate(channels[i - 1], channels[i - 1], max(1, channels[i - 1] // 2), norm=norm))
            self.decoder.append(_double_conv(2 * channels[i - 1], channels[i - 1], 1, norm, act))
        self.head = nn.Conv3d(channels[0], out_channels, 1)
        self.aux_heads = DeepSupervisionHeads(channels, out_channels, enabled=deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Map ``(B, C_in, D, H, W)`` to logits ``(B, C_out, D, H, W)``.

        Spatial sizes must be divisible by the product of the strides.
        """
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = self.dropout(skips.pop())
        decoded = []
        for up, gate, stage in zip(self.up, self.gates, self.decoder):
            g = up(x)
            skip = skips.pop()
            x = stage(torch.cat([g, gate(g, skip)], dim=1))
            decoded.append(x)
        logits = self.head(x)
        if not (self.deep_supervision and self.training):
            return logits
        return [logits, *self.aux_heads(decoded)]
