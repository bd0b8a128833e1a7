"""V-Net (``vnet3d``): residual stages of large-kernel convolutions, PReLU, learned resampling.

After Milletari et al., "V-Net: Fully convolutional neural networks for volumetric
medical image segmentation" (3DV 2016), the architecture of the published QCT
proximal-femur study (Dice 0.9815). Differences from the paper, both standard in
current re-implementations: a normalisation layer after each convolution (the
paper has none; with patch batches of 2 instance norm trains far more stably) and
channel counts that are arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from femurseg.models.nets.blocks import (
    ConvNormAct, DeepSupervisionHeads, LayerSpec, Size3, as_triple, check_stages, decode_skips, make_act,
    make_norm,
)
from femurseg.models.registry import NETS, NetSpec

__all__ = ["VNet3d", "VNetStage"]


class VNetStage(nn.Module):
    """``convs`` large-kernel ``Conv → norm → act`` units with a residual connection.

    Shapes: ``(B, C_in, D, H, W) → (B, C_out, D, H, W)``; a 1×1×1 projection makes
    the shortcut when ``C_in != C_out``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, convs: int, kernel_size: Size3, norm: LayerSpec,
        act: LayerSpec, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            ConvNormAct(in_channels if i == 0 else out_channels, out_channels, kernel_size=kernel_size,
                        norm=norm, act=act)
            for i in range(convs)
        ]
        layers[-1] = nn.Sequential(*list(layers[-1].children())[:-1])  # activation after the sum
        self.body = nn.Sequential(*layers, nn.Dropout3d(dropout) if dropout > 0 else nn.Identity())
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.act(self.body(x) + self.shortcut(x))


@NETS.register("vnet3d", metadata=NetSpec(deep_supervision=True, auxiliary_heads=("aux_heads",)))
class VNet3d(nn.Module):
    """V-Net: residual large-kernel stages, strided-conv down, transposed-conv up.

    Encoder stage ``i > 0`` starts with a strided ``Conv(kernel = stride)`` that
    doubles the channels (``channels[i]``), then ``convs_per_stage[i]``
    ``kernel_size`` convolutions with a residual sum. Each decoder stage upsamples
    with a transposed convolution to ``channels[i - 1]``, concatenates the skip and
    applies a residual stage of the same depth as its encoder twin.

    Parameters
    ----------
    in_channels, out_channels
        Input channels (1 for CT) and output classes (logits).
    channels
        Feature channels per stage, shallow to deep (paper: 16, 32, 64, 128, 256).
    strides
        Downsampling per stage transition, ``len(channels) - 1`` values, each an
        int or a per-axis triple.
    kernel_size
        Kernel of the stage convolutions (paper: 5; 3 is ~4.6× cheaper).
    convs_per_stage
        Convolutions in each encoder stage (paper: 1, 2, 3, 3, 3); ``None`` takes
        ``min(i + 1, 3)`` for stage ``i``.
    norm, act
        Normalisation and activation (paper: none and PReLU).
    dropout
        Channel dropout in the two deepest stages.
    deep_supervision
        In training mode, also return logits at the coarser decoder scales
        (full resolution first), as :class:`femurseg.models.nets.UNet3d` does.

    Examples
    --------
    >>> net = VNet3d(in_channels=1, out_channels=2, channels=(8, 16, 32), strides=(2, 2), kernel_size=3)
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
        kernel_size: Size3 = 5,
        convs_per_stage: Sequence[int] | None = None,
        norm: LayerSpec = "instance",
        act: LayerSpec = "prelu",
        dropout: float = 0.0,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        check_stages(channels, strides)
        depths = list(convs_per_stage) if convs_per_stage is not None else [min(i + 1, 3) for i in range(len(channels))]
        if len(depths) != len(channels) or min(depths) < 1:
            raise ValueError(
                f"convs_per_stage needs {len(channels)} values ≥ 1 (one per stage), got {convs_per_stage}"
            )
        self.deep_supervision = deep_supervision
        n = len(channels)
        self.stem = VNetStage(in_channels, channels[0], convs=depths[0], kernel_size=kernel_size, norm=norm, act=act)
        self.down = nn.ModuleList()
        self.encoder = nn.ModuleList()
        for i in range(1, n):
            stride = as_triple(strides[i - 1])
            self.down.append(nn.Sequential(
                nn.Conv3d(channels[i - 1], channels[i], stride, stride=stride, bias=False),
                make_norm(norm, channels[i]), make_act(act),
            ))
            self.encoder.append(VNetStage(channels[i], channels[i], convs=depths[i], kernel_size=kernel_size,
                                          norm=norm, act=act, dropout=dropout if i >= n - 2 else 0.0))
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(n - 1, 0, -1):
            stride = as_triple(strides[i - 1])
            self.up.append(nn.Sequential(
                nn.ConvTranspose3d(channels[i], channels[i - 1], stride, stride=stride, bias=False),
                make_norm(norm, channels[i - 1]), make_act(act),
            ))
            self.decoder.append(VNetStage(2 * channels[i - 1], channels[i - 1], convs=depths[i],
                                          kernel_size=kernel_size, norm=norm, act=act))
        self.head = nn.Conv3d(channels[0], out_channels, 1)
        self.aux_heads = DeepSupervisionHeads(channels, out_channels, enabled=deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Map ``(B, C_in, D, H, W)`` to logits ``(B, C_out, D, H, W)``.

        Spatial sizes must be divisible by the product of the strides. With deep
        supervision in training mode, a list: full resolution first, then coarser.
        """
        skips = [self.stem(x)]
        for down, stage in zip(self.down, self.encoder):
            skips.append(stage(down(skips[-1])))
        return decode_skips(skips, self.up, self.decoder, self.head, self.aux_heads,
                            self.deep_supervision and self.training)
