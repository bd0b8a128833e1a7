"""Segmentation losses, registered in ``LOSSES``.

Every loss maps logits ``(B, C, D, H, W)`` and integer targets ``(B, D, H, W)`` to a
scalar. Deep supervision is not handled here but once, in
:class:`femurseg.models.module.SegmentationModule`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from femurseg.models.registry import LOSSES

__all__ = ["SoftDiceLoss", "DiceCELoss", "soft_dice"]


def soft_dice(
    probabilities: torch.Tensor,
    one_hot: torch.Tensor,
    *,
    batch_dice: bool = True,
    include_background: bool = False,
    smooth: float = 1e-5,
) -> torch.Tensor:
    """Soft Dice per class, ``(C,)`` (batch Dice) or ``(B, C)`` (per sample)."""
    if not include_background:
        probabilities, one_hot = probabilities[:, 1:], one_hot[:, 1:]
    axes = (0, 2, 3, 4) if batch_dice else (2, 3, 4)
    intersection = (probabilities * one_hot).sum(axes)
    denominator = probabilities.sum(axes) + one_hot.sum(axes)
    return (2 * intersection + smooth) / (denominator + smooth)


@LOSSES.register("dice")
class SoftDiceLoss(nn.Module):
    """``1 - soft Dice`` of the softmax probabilities, averaged over classes.

    Parameters
    ----------
    batch_dice
        Pool the whole batch into one Dice per class (nnU-Net's default), instead
        of one Dice per sample.
    include_background
        Include class 0 in the average.
    smooth
        Added to numerator and denominator.
    """

    def __init__(self, batch_dice: bool = True, include_background: bool = False, smooth: float = 1e-5) -> None:
        super().__init__()
        self.batch_dice = batch_dice
        self.include_background = include_background
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        probabilities = logits.float().softmax(dim=1)
        one_hot = F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1).to(probabilities.dtype)
        dice = soft_dice(probabilities, one_hot, batch_dice=self.batch_dice,
                         include_background=self.include_background, smooth=self.smooth)
        return 1 - dice.mean()


@LOSSES.register("dice_ce")
class DiceCELoss(nn.Module):
    """Soft Dice + cross-entropy, the nnU-Net default.

    Parameters
    ----------
    dice_weight, ce_weight
        Weights of the two terms.
    class_weights
        Optional cross-entropy weight per class.
    batch_dice
        See :class:`SoftDiceLoss`.
    """

    def __init__(
        self, dice_weight: float = 1.0, ce_weight: float = 1.0, class_weights: Sequence[float] | None = None,
        batch_dice: bool = True,
    ) -> None:
        super().__init__()
        self.dice = SoftDiceLoss(batch_dice=batch_dice)
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        weights = torch.as_tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ce = F.cross_entropy(logits.float(), target.long(), weight=self.class_weights)
        return self.dice_weight * self.dice(logits, target) + self.ce_weight * ce
