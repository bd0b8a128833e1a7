"""Residual 3D U-Net (``unet3d``), the default network of femurseg."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from femurseg.models.nets.blocks import DeepSupervisionHeads, LayerSpec, ResidualBlock, check_stages, decode_skips
from femurseg.models.registry import NETS, NetSpec

__all__ = ["UNet3d"]


@NETS.register("unet3d", metadata=NetSpec(deep_supervision=True, auxiliary_heads=("aux_heads",)))
class UNet3d(nn.Module):
    """Residual 3D U-Net: encoder-decoder with skip connections.

    Each encoder stage is ``blocks_per_stage`` residual blocks, the first strided
    (except the first stage); each decoder stage upsamples with a transposed
    convolution, concatenates the skip and applies residual blocks.

    Parameters
    ----------
    in_channels, out_channels
        Input channels (1 for CT) and output classes (logits).
    channels
        Feature channels per stage, shallow to deep.
    strides
        Downsampling factor between stages; ``len(channels) - 1`` values; an int
        or a per-axis triple such as ``(1, 2, 2)`` for thick slices.
    blocks_per_stage
        Residual blocks per encoder stage.
    norm, act
        Normalisation and activation, as a name or ``(name, kwargs)``.
    dropout
        Channel dropout in the deepest stage.
    deep_supervision
        If true, in training mode ``forward`` returns a list of logits, full
        resolution first, then one per decoder stage below it (all but the two
        deepest), for a loss at every scale. In eval mode it returns one tensor.

    Examples
    --------
    >>> net = UNet3d(in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2))
    >>> net(torch.zeros(2, 1, 32, 32, 32)).shape
    torch.Size([2, 2, 32, 32, 32])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        strides: Sequence[int | Sequence[int]] = (2, 2, 2),
        blocks_per_stage: int = 1,
        norm: LayerSpec = "instance",
        act: LayerSpec = "leakyrelu",
        dropout: float = 0.0,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        check_stages(channels, strides)
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be ≥ 1, got {blocks_per_stage}")
        self.deep_supervision = deep_supervision
        self.encoder = nn.ModuleList()
        previous = in_channels
        for stage, width in enumerate(channels):
            stride = 1 if stage == 0 else strides[stage - 1]
            last = stage == len(channels) - 1
            blocks = [
                ResidualBlock(previous if b == 0 else width, width, stride=stride if b == 0 else 1,
                              norm=norm, act=act, dropout=dropout if last else 0.0)
                for b in range(blocks_per_stage)
            ]
            self.encoder.append(nn.Sequential(*blocks))
            previous = width
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for stage in range(len(channels) - 1, 0, -1):
            stride = strides[stage - 1]
            self.upsample.append(
                nn.ConvTranspose3d(channels[stage], channels[stage - 1], kernel_size=stride, stride=stride, bias=False)
            )
            self.decoder.append(ResidualBlock(2 * channels[stage - 1], channels[stage - 1], norm=norm, act=act))
        self.head = nn.Conv3d(channels[0], out_channels, 1)
        # one auxiliary head per decoder output below full resolution, deepest excluded
        self.aux_heads = DeepSupervisionHeads(channels, out_channels, enabled=deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Map ``(B, C_in, D, H, W)`` to logits ``(B, C_out, D, H, W)``.

        Spatial sizes must be divisible by the product of the strides.
        """
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        return decode_skips(skips, self.upsample, self.decoder, self.head, self.aux_heads,
                            self.deep_supervision and self.training)
