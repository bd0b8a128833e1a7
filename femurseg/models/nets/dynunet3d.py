"""Dynamic nnU-Net-like U-Net (``dynunet3d``): topology planned from patch size and voxel spacing.

:func:`plan` follows nnU-Net's rule (Isensee et al., Nature Methods 2021): an axis
is convolved with a 3-kernel and downsampled only while its spacing is at most
twice the finest spacing, so thick-slice data (e.g. 0.7 × 0.7 × 3 mm) gets
in-plane-only first stages — kernels ``(3, 3, 1)``, strides ``(2, 2, 1)`` — until
the in-plane spacing has caught up; an axis stops being downsampled when its
feature map would fall below ``min_feature_size`` voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from femurseg.models.nets.blocks import (
    ConvNormAct, DeepSupervisionHeads, LayerSpec, Size3, as_triple, check_stages, decode_skips,
)
from femurseg.models.registry import NETS, NetSpec

__all__ = ["DynUNet3d", "NetPlan", "plan"]


class NetPlan(NamedTuple):
    """Topology from :func:`plan`: one kernel per stage, one stride per stage transition."""

    kernel_sizes: list[tuple[int, int, int]]
    strides: list[tuple[int, int, int]]
    channels: list[int]


def plan(
    patch_size: Size3,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    max_stages: int = 6,
    min_feature_size: int = 4,
    base_channels: int = 32,
    max_channels: int = 320,
) -> NetPlan:
    """Plan kernels, strides and channels of a U-Net for a patch size and voxel spacing.

    Parameters
    ----------
    patch_size
        Training patch in voxels, in the axis order of the tensors (``(W, H, D)``
        for TorchIO images).
    spacing
        Voxel spacing in mm in the same axis order (after preprocessing).
    max_stages
        Upper bound on the number of resolution stages.
    min_feature_size
        An axis is not downsampled below this many voxels (nor if odd).
    base_channels, max_channels
        Channels double per stage from ``base_channels``, capped at ``max_channels``.

    Returns
    -------
    NetPlan
        ``kernel_sizes`` (one per stage), ``strides`` (one fewer) and ``channels``.

    Examples
    --------
    >>> p = plan((160, 160, 48), spacing=(0.7, 0.7, 3.0), max_stages=5)
    >>> p.strides
    [(2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2)]
    >>> p.kernel_sizes[:3]
    [(3, 3, 1), (3, 3, 1), (3, 3, 3)]
    """
    size = list(as_triple(patch_size))
    current = [float(s) for s in spacing]
    if len(current) != 3 or min(current) <= 0:
        raise ValueError(f"spacing must be three positive values, got {tuple(spacing)}")
    if max_stages < 2:
        raise ValueError(f"max_stages must be ≥ 2, got {max_stages}")
    kernels: list[tuple[int, int, int]] = []
    strides: list[tuple[int, int, int]] = []
    while True:
        finest = min(current)
        fine = [s <= 2 * finest for s in current]
        kernels.append(tuple(3 if f else 1 for f in fine))  # type: ignore[arg-type]
        if len(kernels) == max_stages:
            break
        stride = tuple(2 if f and n % 2 == 0 and n // 2 >= min_feature_size else 1 for f, n in zip(fine, size))
        if stride == (1, 1, 1):
            break
        strides.append(stride)  # type: ignore[arg-type]
        size = [n // s for n, s in zip(size, stride)]
        current = [c * s for c, s in zip(current, stride)]
    if not strides:
        raise ValueError(f"patch {tuple(as_triple(patch_size))} is too small to downsample even once")
    channels = [min(base_channels * 2**i, max_channels) for i in range(len(kernels))]
    return NetPlan(kernels, strides, channels)


class _Stage(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel: Size3, stride: Size3, norm: LayerSpec,
                 act: LayerSpec) -> None:
        super().__init__(
            ConvNormAct(in_channels, out_channels, kernel_size=kernel, stride=stride, norm=norm, act=act),
            ConvNormAct(out_channels, out_channels, kernel_size=kernel, norm=norm, act=act),
        )


@NETS.register("dynunet3d",
               metadata=NetSpec(needs_patch_size=True, deep_supervision=True, auxiliary_heads=("aux_heads",)))
class DynUNet3d(nn.Module):
    """nnU-Net-like plain U-Net whose kernels and strides come from :func:`plan`.

    Give ``patch_size`` and ``spacing`` and leave ``channels``, ``strides`` and
    ``kernel_sizes`` unset to get nnU-Net's topology; set any of them to override
    the plan (``kernel_sizes`` defaults to 3 everywhere when ``strides`` is given).
    It registers with ``NetSpec(needs_patch_size=True)``, so
    :class:`~femurseg.models.module.SegmentationModule` fills ``patch_size`` in from
    its own patch size when ``net_kwargs`` does not set it.

    Parameters
    ----------
    in_channels, out_channels
        Input channels (1 for CT) and output classes (logits).
    channels
        Feature channels per stage (planned: 32, 64, ... capped at 320).
    strides
        Per-transition strides, ints or per-axis triples (planned).
    kernel_sizes
        Per-stage kernels, ints or triples (planned).
    patch_size, spacing
        Patch in voxels and spacing in mm, tensor axis order; inputs of the plan.
    max_stages
        Most stages the plan may use.
    norm, act
        Normalisation and activation.
    deep_supervision
        In training mode, also return logits at the coarser decoder scales
        (on by default, as in nnU-Net).

    Examples
    --------
    >>> net = DynUNet3d(in_channels=1, out_channels=2, patch_size=(32, 32, 16), spacing=(0.7, 0.7, 1.5),
    ...                 max_stages=3, channels=(4, 8, 16))
    >>> net.strides
    [(2, 2, 1), (2, 2, 2)]
    >>> [o.shape[2:] for o in net(torch.zeros(1, 1, 32, 32, 16))]
    [torch.Size([32, 32, 16]), torch.Size([16, 16, 16])]
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] | None = None,
        strides: Sequence[Size3] | None = None,
        kernel_sizes: Sequence[Size3] | None = None,
        patch_size: Size3 = (128, 128, 128),
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        max_stages: int = 5,
        norm: LayerSpec = "instance",
        act: LayerSpec = "leakyrelu",
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        planned = plan(patch_size, spacing, max_stages=max_stages)
        if strides is None:
            strides = planned.strides if channels is None else planned.strides[: len(channels) - 1]
            kernel_sizes = kernel_sizes if kernel_sizes is not None else planned.kernel_sizes[: len(strides) + 1]
        if channels is None:
            channels = planned.channels[: len(strides) + 1]
        kernel_sizes = kernel_sizes if kernel_sizes is not None else [3] * len(channels)
        check_stages(channels, strides)
        if len(kernel_sizes) != len(channels):
            raise ValueError(f"kernel_sizes needs {len(channels)} values (one per stage), got {len(kernel_sizes)}")
        self.channels = list(channels)
        self.strides = [as_triple(s) for s in strides]
        self.kernel_sizes = [as_triple(k) for k in kernel_sizes]
        self.deep_supervision = deep_supervision
        n = len(channels)
        self.encoder = nn.ModuleList(
            _Stage(in_channels if i == 0 else channels[i - 1], channels[i], self.kernel_sizes[i],
                   1 if i == 0 else self.strides[i - 1], norm, act)
            for i in range(n)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose3d(channels[i], channels[i - 1], self.strides[i - 1], stride=self.strides[i - 1],
                               bias=False)
            for i in range(n - 1, 0, -1)
        )
        self.decoder = nn.ModuleList(
            _Stage(2 * channels[i - 1], channels[i - 1], self.kernel_sizes[i - 1], 1, norm, act)
            for i in range(n - 1, 0, -1)
        )
        self.head = nn.Conv3d(channels[0], out_channels, 1)
        self.aux_heads = DeepSupervisionHeads(channels, out_channels, enabled=deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Map ``(B, C_in, D, H, W)`` to logits ``(B, C_out, D, H, W)``.

        Each spatial size must be divisible by the product of the strides on its
        axis. With deep supervision in training mode, a list: full resolution
        first, then coarser.
        """
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        return decode_skips(skips, self.up, self.decoder, self.head, self.aux_heads,
                            self.deep_supervision and self.training)
