"""``SegmentationModule``: trains one network for one target.

The network and the loss are chosen by registry name (or a dotted import path) with
plain-data keyword arguments, so that a checkpoint holds everything needed to
rebuild the exact model without unpickling code (``checkpoint["femurseg"]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchio as tio
from lightning.pytorch.cli import OptimizerCallable
from torch import nn

from femurseg.models.registry import LOSSES, NETS

__all__ = ["SegmentationModule", "Target", "TARGET_CLASSES", "make_target", "adamw"]

Target = Literal["periosteal", "endosteal", "compartments"]
TARGET_CLASSES: dict[str, list[str]] = {
    "periosteal": ["background", "periosteal"],
    "endosteal": ["background", "endosteal"],
    "compartments": ["background", "cortical", "trabecular"],
}
CHECKPOINT_FORMAT = 1


def make_target(label: torch.Tensor, target: str) -> torch.Tensor:
    """Class-index target from a 0/1/2 label map (DESIGN.md §3)."""
    if target == "periosteal":
        return (label >= 1).long()
    if target == "endosteal":
        return (label == 2).long()
    if target == "compartments":
        return label.long()
    raise ValueError(f"unknown target {target!r}; valid: {', '.join(TARGET_CLASSES)}")


def adamw(params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """The default optimizer: AdamW, lr 1e-3, weight decay 3e-5."""
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=3e-5)


def _dice(prediction: torch.Tensor, reference: torch.Tensor) -> float:
    """Hard Dice of two boolean tensors; 1.0 when both are empty."""
    total = prediction.sum() + reference.sum()
    if total == 0:
        return 1.0
    return float(2 * (prediction & reference).sum() / total)


class SegmentationModule(pl.LightningModule):
    """Train and validate a 3D segmentation network on one target.

    Parameters
    ----------
    net
        Registry name (``femurseg nets`` lists them) or dotted import path of the
        network class.
    net_kwargs
        Keyword arguments of the network; ``in_channels`` and ``out_channels`` are
        filled in from the target.
    target
        ``periosteal`` or ``endosteal`` (binary, 2 output channels) or
        ``compartments`` (3 classes: background, cortical, trabecular).
    loss, loss_kwargs
        Registry name of the loss and its keyword arguments.
    optimizer
        A callable taking the parameters and returning an optimizer
        (``class_path: torch.optim.AdamW`` in YAML).
    schedule
        Learning-rate schedule per step: ``poly`` (nnU-Net's ``(1 - t)^0.9``),
        ``cosine`` or ``constant``, each after ``warmup_steps`` of linear warm-up.
    deep_supervision_decay
        Weight of the scale-``i`` output is ``decay**i`` (normalised), for nets
        that return several outputs.
    patch_size
        Sliding-window size for validation, ``(W, H, D)`` voxels (usually linked
        from the data module).
    val_overlap
        Fractional overlap of validation windows.
    val_batch_size
        Windows evaluated at once.

    Examples
    --------
    >>> module = SegmentationModule(net_kwargs={"channels": (8, 16), "strides": (2,)})
    >>> module.net(torch.zeros(1, 1, 16, 16, 16)).shape
    torch.Size([1, 2, 16, 16, 16])
    """

    def __init__(
        self,
        net: str = "unet3d",
        net_kwargs: dict[str, Any] | None = None,
        target: Target = "periosteal",
        loss: str = "dice_ce",
        loss_kwargs: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = adamw,
        schedule: Literal["poly", "cosine", "constant"] = "poly",
        warmup_steps: int = 0,
        deep_supervision_decay: float = 0.5,
        patch_size: int | tuple[int, int, int] = 96,
        val_overlap: float = 0.5,
        val_batch_size: int = 2,
    ) -> None:
        super().__init__()
        if target not in TARGET_CLASSES:
            raise ValueError(f"unknown target {target!r}; valid: {', '.join(TARGET_CLASSES)}")
        self.save_hyperparameters(ignore=["optimizer"])
        self.classes = TARGET_CLASSES[target]
        self.net_kwargs = {**(net_kwargs or {}), "in_channels": 1, "out_channels": len(self.classes)}
        self.net: nn.Module = NETS.create(net, **self.net_kwargs)
        self.loss_fn: nn.Module = LOSSES.create(loss, **(loss_kwargs or {}))
        self.optimizer_factory = optimizer
        self.patch_size = _triple(patch_size)
        self.preprocessing: dict[str, Any] | None = None
        self.val_scores: dict[str, dict[str, float]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, W, H, D)`` for a batch of preprocessed images (one output in eval)."""
        out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out

    # training ---------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        image = batch["image"][tio.DATA]
        target = make_target(batch["label"][tio.DATA][:, 0], self.hparams.target)
        outputs = self.net(image)
        loss = self.supervised_loss(outputs, target)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=image.shape[0])
        return loss

    def supervised_loss(self, outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Loss over one output or, with deep supervision, a weighted sum over scales.

        The target is downsampled to each scale with nearest-neighbour interpolation.
        """
        if not isinstance(outputs, (list, tuple)):
            return self.loss_fn(outputs, target)
        weights = [self.hparams.deep_supervision_decay**i for i in range(len(outputs))]
        total = sum(weights)
        loss = outputs[0].new_zeros(())
        for weight, logits in zip(weights, outputs):
            scaled = target
            if logits.shape[2:] != target.shape[1:]:
                scaled = F.interpolate(target[:, None].float(), size=logits.shape[2:], mode="nearest")[:, 0].long()
            loss = loss + weight / total * self.loss_fn(logits, scaled)
        return loss

    # validation -------------------------------------------------------------
    @torch.no_grad()
    def predict_volume(self, image: torch.Tensor) -> torch.Tensor:
        """Sliding-window class probabilities ``(C, W, H, D)`` for one image ``(1, W, H, D)``.

        Windows of ``patch_size`` overlap by ``val_overlap`` and are blended with
        a Hann window (TorchIO ``GridSampler`` + ``GridAggregator``).
        """
        spatial = torch.tensor(image.shape[1:])
        patch = torch.tensor(self.patch_size)
        padding = torch.clamp(patch - spatial, min=0)
        subject = tio.Subject(image=tio.ScalarImage(tensor=image.cpu()))
        if padding.any():
            pad = [int(v) for p in padding for v in (p // 2, p - p // 2)]
            subject = tio.Pad(pad, padding_mode="minimum")(subject)
        overlap = [2 * int(self.hparams.val_overlap * s / 2) for s in self.patch_size]
        sampler = tio.GridSampler(subject, self.patch_size, overlap)
        aggregator = tio.inference.GridAggregator(sampler, overlap_mode="hann")
        loader = tio.SubjectsLoader(sampler, batch_size=self.hparams.val_batch_size)
        for patches in loader:
            logits = self(patches["image"][tio.DATA].to(self.device))
            aggregator.add_batch(logits.float().softmax(dim=1).cpu(), patches[tio.LOCATION])
        probabilities = aggregator.get_output_tensor()
        if padding.any():
            start = padding // 2
            stop = start + spatial
            probabilities = probabilities[:, start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
        return probabilities

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        image = batch["image"][tio.DATA][0]
        label = batch["label"][tio.DATA][0, 0]
        prediction = self.predict_volume(image).argmax(dim=0).to(label.device)
        scores = self.score(prediction, label)
        subject = batch.get("subject_id", [str(batch_idx)])[0]
        self.val_scores[subject] = scores
        for name, value in scores.items():
            self.log(f"val/{name}", value, batch_size=1, prog_bar=name == "dice", sync_dist=True)

    def score(self, prediction: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
        """Dice of a class-index prediction against a 0/1/2 label map."""
        if self.hparams.target == "compartments":
            periosteal = _dice(prediction >= 1, label >= 1)
            endosteal = _dice(prediction == 2, label == 2)
            return {"dice": (periosteal + endosteal) / 2, "dice_periosteal": periosteal, "dice_endosteal": endosteal}
        reference = make_target(label, self.hparams.target).bool()
        return {"dice": _dice(prediction == 1, reference)}

    def on_validation_epoch_start(self) -> None:
        self.val_scores = {}

    def on_validation_epoch_end(self) -> None:
        if self.val_scores:
            self.log("val/dice_min", min(s["dice"] for s in self.val_scores.values()), sync_dist=True)

    # optimisation -----------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(self.parameters())
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = self.hparams.warmup_steps
        schedule = self.hparams.schedule

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            if schedule == "poly":
                return (1 - progress) ** 0.9
            if schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * progress))
            return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # checkpoint metadata ----------------------------------------------------
    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "preprocessing"):
            self.preprocessing = datamodule.preprocessing.to_dict()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store plain-data metadata that rebuilds the net without unpickling code."""
        checkpoint["femurseg"] = {
            "format_version": CHECKPOINT_FORMAT,
            "target": self.hparams.target,
            "classes": list(self.classes),
            "net": self.hparams.net,
            "net_kwargs": _plain(self.net_kwargs),
            "preprocessing": self.preprocessing,
            "patch_size": list(self.patch_size),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.preprocessing = checkpoint.get("femurseg", {}).get("preprocessing")


def _triple(value: int | tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    if len(value) != 3:
        raise ValueError(f"patch size must be an int or three ints, got {value}")
    return tuple(int(v) for v in value)  # type: ignore[return-value]


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the value survives ``weights_only`` loading."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
