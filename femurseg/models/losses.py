"""Segmentation losses, registered in ``LOSSES``.

Every loss maps logits ``(B, C, D, H, W)`` and a target to a scalar, computed in
float32 whatever the autocast precision. The target is either integer class indices
``(B, D, H, W)`` or per-class probabilities ``(B, C, D, H, W)`` — the partial-volume
fractions of each class in each voxel (soft targets, see
:func:`femurseg.data.preprocess.label_fractions`); with one-hot probabilities every
loss equals its integer-target form. Deep supervision is
not handled here but once, in
:meth:`femurseg.models.module.SegmentationModule.supervised_loss`.

Registered names: ``dice``, ``dice_ce``, ``focal``, ``dice_focal``,
``dice_boundary_ce`` (a boundary-weighted cross-entropy for the thin cortex).
Each takes ``class_weights`` (one weight per class, background included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from femurseg.models.registry import LOSSES

DistanceMetric = Literal["chessboard", "euclidean"]

__all__ = [
    "SoftDiceLoss", "DiceCELoss", "FocalLoss", "DiceFocalLoss", "BoundaryWeightedCELoss", "soft_dice",
    "boundary_distance", "class_probabilities", "hard_labels", "cross_entropy_per_voxel", "DistanceMetric",
]


def class_probabilities(target: torch.Tensor, classes: int) -> torch.Tensor:
    """A target as float32 per-class probabilities ``(B, C, D, H, W)``.

    Integer class indices ``(B, D, H, W)`` become one-hot; soft targets
    ``(B, C, D, H, W)`` are returned as they are.
    """
    if target.is_floating_point() and target.ndim == 5:
        if target.shape[1] != classes:
            raise ValueError(f"soft target has {target.shape[1]} classes but the logits have {classes}")
        return target.float()
    return F.one_hot(target.long(), classes).movedim(-1, 1).float()


def hard_labels(target: torch.Tensor) -> torch.Tensor:
    """Class indices ``(B, D, H, W)`` of a target (the most probable class of a soft one)."""
    return target.argmax(dim=1) if target.is_floating_point() and target.ndim == 5 else target.long()


def cross_entropy_per_voxel(
    logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy ``-Σ_c w_c t_c log p_c`` and weight ``Σ_c w_c t_c`` per voxel, ``(B, D, H, W)`` each.

    With integer targets, ``loss.sum() / weight.sum()`` is PyTorch's weighted
    ``F.cross_entropy``; soft targets extend it to partial-volume fractions.
    """
    log_p = logits.float().log_softmax(dim=1)
    t = class_probabilities(target, logits.shape[1])
    if class_weights is not None:
        t = t * class_weights.view(1, -1, *([1] * (logits.ndim - 2)))
    return -(t * log_p).sum(dim=1), t.sum(dim=1)


def soft_dice(
    probabilities: torch.Tensor,
    one_hot: torch.Tensor,
    *,
    batch_dice: bool = True,
    include_background: bool = False,
    smooth: float = 1e-5,
) -> torch.Tensor:
    """Soft Dice per class, ``(C,)`` (batch Dice) or ``(B, C)`` (per sample).

    ``probabilities`` and ``one_hot`` are ``(B, C, D, H, W)``; without background
    the class axis loses class 0.
    """
    if not include_background:
        probabilities, one_hot = probabilities[:, 1:], one_hot[:, 1:]
    axes = (0, 2, 3, 4) if batch_dice else (2, 3, 4)
    intersection = (probabilities * one_hot).sum(axes)
    denominator = probabilities.sum(axes) + one_hot.sum(axes)
    return (2 * intersection + smooth) / (denominator + smooth)


def _weights(class_weights: Sequence[float] | None) -> torch.Tensor | None:
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32)
    if weights.ndim != 1 or (weights < 0).any():
        raise ValueError(f"class_weights must be one non-negative weight per class, got {list(class_weights)}")
    return weights


def _check_classes(weights: torch.Tensor | None, classes: int) -> None:
    if weights is not None and len(weights) != classes:
        raise ValueError(f"class_weights has {len(weights)} values but the logits have {classes} classes")


@LOSSES.register("dice")
class SoftDiceLoss(nn.Module):
    """``1 - soft Dice`` of the softmax probabilities, averaged over classes.

    Parameters
    ----------
    batch_dice
        Pool the whole batch into one Dice per class (nnU-Net's default), instead
        of one Dice per sample (then averaged).
    include_background
        Include class 0 in the average.
    smooth
        Added to numerator and denominator.
    class_weights
        Weights of the per-class Dice terms in the average (all classes,
        background included even if it is left out).
    """

    def __init__(self, batch_dice: bool = True, include_background: bool = False, smooth: float = 1e-5,
                 class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.batch_dice = batch_dice
        self.include_background = include_background
        self.smooth = smooth
        self.register_buffer("class_weights", _weights(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        _check_classes(self.class_weights, logits.shape[1])
        probabilities = logits.float().softmax(dim=1)
        one_hot = class_probabilities(target, logits.shape[1])
        dice = soft_dice(probabilities, one_hot, batch_dice=self.batch_dice,
                         include_background=self.include_background, smooth=self.smooth)
        if self.class_weights is None:
            return 1 - dice.mean()
        weights = self.class_weights if self.include_background else self.class_weights[1:]
        return 1 - (dice * weights).sum(-1).mean() / weights.sum()


@LOSSES.register("dice_ce")
class DiceCELoss(nn.Module):
    """Soft Dice + cross-entropy, the nnU-Net default.

    Parameters
    ----------
    dice_weight, ce_weight
        Weights of the two terms.
    class_weights
        Optional weight per class, for both terms.
    batch_dice
        See :class:`SoftDiceLoss`.
    """

    def __init__(
        self, dice_weight: float = 1.0, ce_weight: float = 1.0, class_weights: Sequence[float] | None = None,
        batch_dice: bool = True,
    ) -> None:
        super().__init__()
        self.dice = SoftDiceLoss(batch_dice=batch_dice, class_weights=class_weights)
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.register_buffer("class_weights", _weights(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        _check_classes(self.class_weights, logits.shape[1])
        loss, weight = cross_entropy_per_voxel(logits, target, self.class_weights)
        ce = loss.sum() / weight.sum().clamp_min(1e-8)
        return self.dice_weight * self.dice(logits, target) + self.ce_weight * ce


@LOSSES.register("focal")
class FocalLoss(nn.Module):
    """Focal loss ``-w_c (1 - p_t)^γ log p_t``, averaged over voxels (Lin et al., 2017).

    With soft targets, ``-Σ_c w_c t_c (1 - p_c)^γ log p_c``.

    Down-weights easy voxels (most of the background) so that training focuses
    on the hard ones near the bone surfaces. ``gamma=0`` is cross-entropy.

    Parameters
    ----------
    gamma
        Focusing exponent.
    class_weights
        Optional weight per class (the ``α`` of the paper).
    """

    def __init__(self, gamma: float = 2.0, class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be ≥ 0, got {gamma}")
        self.gamma = gamma
        self.register_buffer("class_weights", _weights(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        _check_classes(self.class_weights, logits.shape[1])
        log_p = logits.float().log_softmax(dim=1)
        t = class_probabilities(target, logits.shape[1])
        if self.class_weights is not None:
            t = t * self.class_weights.view(1, -1, 1, 1, 1)
        return -(t * (1 - log_p.exp()) ** self.gamma * log_p).sum(dim=1).mean()


@LOSSES.register("dice_focal")
class DiceFocalLoss(nn.Module):
    """Soft Dice + focal loss.

    Parameters
    ----------
    dice_weight, focal_weight
        Weights of the two terms.
    gamma
        Focal exponent.
    class_weights
        Optional weight per class, for both terms.
    batch_dice
        See :class:`SoftDiceLoss`.
    """

    def __init__(self, dice_weight: float = 1.0, focal_weight: float = 1.0, gamma: float = 2.0,
                 class_weights: Sequence[float] | None = None, batch_dice: bool = True) -> None:
        super().__init__()
        self.dice = SoftDiceLoss(batch_dice=batch_dice, class_weights=class_weights)
        self.focal = FocalLoss(gamma=gamma, class_weights=class_weights)
        self.dice_weight = dice_weight
        self.focal_weight = focal_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.dice_weight * self.dice(logits, target) + self.focal_weight * self.focal(logits, target)


def boundary_distance(target: torch.Tensor, metric: DistanceMetric = "chessboard") -> torch.Tensor:
    """Distance in voxels from every voxel to the nearest label boundary.

    A boundary voxel is one whose 6-neighbourhood holds another label; it has
    distance 0. Computed per sample with SciPy on CPU: ``chessboard`` with
    :func:`scipy.ndimage.distance_transform_cdt` (about 0.15 s per 128³ patch on one
    core; ``d_chessboard ≤ d_euclidean ≤ √3 d_chessboard``), ``euclidean`` with
    :func:`scipy.ndimage.distance_transform_edt` (exact, about 1 s per 128³ patch).

    Parameters
    ----------
    target
        Integer labels ``(B, D, H, W)``.
    metric
        ``chessboard`` (fast) or ``euclidean`` (exact).

    Returns
    -------
    torch.Tensor
        Float32 distances ``(B, D, H, W)`` on the target's device; samples with a
        single label get ``inf`` everywhere.
    """
    labels = target.detach().to("cpu", torch.int16).numpy()
    out = np.empty(labels.shape, dtype=np.float32)
    for i, sample in enumerate(labels):
        edge = np.zeros(sample.shape, dtype=bool)
        for axis in range(sample.ndim):
            change = np.diff(sample, axis=axis) != 0
            front = [slice(None)] * sample.ndim
            back = [slice(None)] * sample.ndim
            front[axis], back[axis] = slice(None, -1), slice(1, None)
            edge[tuple(front)] |= change
            edge[tuple(back)] |= change
        if not edge.any():
            out[i] = np.inf
        elif metric == "euclidean":
            out[i] = ndimage.distance_transform_edt(~edge)
        else:
            out[i] = ndimage.distance_transform_cdt(~edge, metric="chessboard")
    return torch.from_numpy(out).to(target.device)


@LOSSES.register("dice_boundary_ce")
class BoundaryWeightedCELoss(nn.Module):
    """Soft Dice + cross-entropy weighted up near label boundaries.

    The voxel weight is ``1 + boundary_weight · exp(-d² / 2σ²)`` with ``d`` the
    distance to the nearest boundary (:func:`boundary_distance`), so the voxels on
    both sides of the periosteal and endosteal surfaces — where a 0.5-2 mm cortex
    is won or lost — count up to ``1 + boundary_weight`` times more (weighted mean).

    Parameters
    ----------
    boundary_weight
        Extra weight at the boundary.
    sigma
        Width of the weighted band in voxels.
    metric
        Distance metric of :func:`boundary_distance` (``chessboard``: fast).
    dice_weight, ce_weight
        Weights of the two terms.
    class_weights
        Optional weight per class, for both terms.
    batch_dice
        See :class:`SoftDiceLoss`.
    """

    def __init__(self, boundary_weight: float = 4.0, sigma: float = 2.0, metric: DistanceMetric = "chessboard",
                 dice_weight: float = 1.0, ce_weight: float = 1.0, class_weights: Sequence[float] | None = None,
                 batch_dice: bool = True) -> None:
        super().__init__()
        if sigma <= 0 or boundary_weight < 0:
            raise ValueError(f"need sigma > 0 and boundary_weight ≥ 0, got {sigma}, {boundary_weight}")
        if metric not in ("chessboard", "euclidean"):
            raise ValueError(f"unknown metric {metric!r}; valid: chessboard, euclidean")
        self.boundary_weight = boundary_weight
        self.sigma = sigma
        self.metric = metric
        self.dice = SoftDiceLoss(batch_dice=batch_dice, class_weights=class_weights)
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.register_buffer("class_weights", _weights(class_weights), persistent=False)

    def voxel_weights(self, target: torch.Tensor) -> torch.Tensor:
        """Weights ``(B, D, H, W)`` from the target's boundary distances (of its hard labels)."""
        distance = boundary_distance(hard_labels(target), self.metric)
        return 1 + self.boundary_weight * torch.exp(-distance.square() / (2 * self.sigma**2))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        _check_classes(self.class_weights, logits.shape[1])
        loss, class_weight = cross_entropy_per_voxel(logits, target, self.class_weights)  # loss holds w_c
        boundary = self.voxel_weights(target)
        ce = (loss * boundary).sum() / (class_weight * boundary).sum().clamp_min(1e-8)
        return self.dice_weight * self.dice(logits, target) + self.ce_weight * ce
