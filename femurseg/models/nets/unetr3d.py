"""Small UNETR-like net (``unetr3d``): a ViT encoder on 3D tokens with a convolutional decoder.

After Hatamizadeh et al., "UNETR: Transformers for 3D medical image segmentation"
(WACV 2022), kept small (192-wide, 6 layers by default) and size-agnostic: the
position encoding is a depthwise convolution on the token grid (Chu et al.,
"Conditional positional encodings for vision transformers", 2021) instead of a
learned table, so any input divisible by the token size works, including the tiny
patches of the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from femurseg.models.nets.blocks import (
    ConvNormAct, DeepSupervisionHeads, LayerSpec, ResidualBlock, Size3, as_triple, check_stages, decode_skips,
)
from femurseg.models.registry import NETS, NetSpec

__all__ = ["UNETR3d"]


@NETS.register("unetr3d", metadata=NetSpec(deep_supervision=True, auxiliary_heads=("aux_heads",)))
class UNETR3d(nn.Module):
    """Transformer encoder on non-overlapping 3D tokens, U-Net decoder on its hidden states.

    The token size is the product of ``strides`` (16³ for four 2-strides). The
    transformer's hidden states at evenly spaced depths are reshaped to the token
    grid and brought to the resolution of stages ``1 … n - 2`` by transposed
    convolutions; the last state is the bottleneck; stage 0 is a residual block on
    the input itself.

    Parameters
    ----------
    in_channels, out_channels
        Input channels (1 for CT) and output classes (logits).
    channels
        Decoder channels per stage, shallow to deep.
    strides
        Resolution steps between stages (ints or per-axis triples); their product
        is the token size.
    hidden_size, num_layers, num_heads, mlp_ratio
        Transformer width, depth, attention heads and MLP expansion.
    norm, act
        Normalisation and activation of the convolutional parts.
    dropout
        Dropout inside the transformer.
    deep_supervision
        In training mode, also return logits at the coarser decoder scales.

    Examples
    --------
    >>> net = UNETR3d(in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2),
    ...               hidden_size=32, num_layers=2, num_heads=2)
    >>> net(torch.zeros(1, 1, 16, 16, 16)).shape
    torch.Size([1, 2, 16, 16, 16])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        strides: Sequence[Size3] = (2, 2, 2, 2),
        hidden_size: int = 192,
        num_layers: int = 6,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        norm: LayerSpec = "instance",
        act: LayerSpec = "leakyrelu",
        dropout: float = 0.0,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        check_stages(channels, strides)
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
        n = len(channels)
        if num_layers < n - 1:
            raise ValueError(f"num_layers must be ≥ len(channels) - 1 = {n - 1} (one hidden state per stage)")
        self.deep_supervision = deep_supervision
        steps = [as_triple(s) for s in strides]
        self.token_size = tuple(math.prod(s[axis] for s in steps) for axis in range(3))
        self.embed = nn.Conv3d(in_channels, hidden_size, self.token_size, stride=self.token_size)
        self.position = nn.Conv3d(hidden_size, hidden_size, 3, padding=1, groups=hidden_size)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(hidden_size, num_heads, int(hidden_size * mlp_ratio), dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(hidden_size)
        # hidden state used by stage i (1 … n-1): evenly spaced, the last for the bottleneck
        self.taps = [round(num_layers * i / (n - 1)) - 1 for i in range(1, n)]
        self.stem = ResidualBlock(in_channels, channels[0], norm=norm, act=act)
        self.lift = nn.ModuleList()
        for i in range(1, n):
            layers: list[nn.Module] = [ConvNormAct(hidden_size, channels[n - 1], kernel_size=1, norm=norm, act=act)]
            width = channels[n - 1]
            for j in range(n - 2, i - 1, -1):  # upsample the token grid to stage i's resolution
                layers += [nn.ConvTranspose3d(width, channels[j], steps[j], stride=steps[j], bias=False),
                           ConvNormAct(channels[j], channels[j], norm=norm, act=act)]
                width = channels[j]
            self.lift.append(nn.Sequential(*layers))
        self.up = nn.ModuleList(
            nn.ConvTranspose3d(channels[i], channels[i - 1], steps[i - 1], stride=steps[i - 1], bias=False)
            for i in range(n - 1, 0, -1)
        )
        self.decoder = nn.ModuleList(
            ResidualBlock(2 * channels[i - 1], channels[i - 1], norm=norm, act=act) for i in range(n - 1, 0, -1)
        )
        self.head = nn.Conv3d(channels[0], out_channels, 1)
        self.aux_heads = DeepSupervisionHeads(channels, out_channels, enabled=deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Map ``(B, C_in, D, H, W)`` to logits ``(B, C_out, D, H, W)``.

        Spatial sizes must be divisible by the token size (product of strides).
        """
        tokens = self.embed(x)
        tokens = tokens + self.position(tokens)
        grid = tokens.shape[2:]
        sequence = tokens.flatten(2).transpose(1, 2)  # (B, N, hidden)
        states = []
        for layer in self.layers:
            sequence = layer(sequence)
            states.append(sequence)
        states[-1] = self.final_norm(states[-1])

        def as_grid(state: torch.Tensor) -> torch.Tensor:
            return state.transpose(1, 2).reshape(state.shape[0], -1, *grid)

        skips = [self.stem(x)] + [lift(as_grid(states[t])) for lift, t in zip(self.lift, self.taps)]
        return decode_skips(skips, self.up, self.decoder, self.head, self.aux_heads,
                            self.deep_supervision and self.training)
