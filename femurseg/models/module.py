"""``SegmentationModule``: trains one network for one target.

The network and the loss are chosen by registry name (or a dotted import path) with
plain-data keyword arguments, so that a checkpoint holds everything needed to
rebuild the exact model without unpickling code (``checkpoint["femurseg"]``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import torchio as tio
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from femurseg.devices import cpu_has_fast_bf16
from femurseg.labels import TARGET_CLASSES, Target, endosteal_mask, periosteal_mask, target_of
from femurseg.models.checkpoints import FORMAT_VERSION, load_pretrained
from femurseg.models.ema import ema_decay_at, from_checkpoint_layout, to_checkpoint_layout, update_ema
from femurseg.models.registry import LOSSES, NETS, net_spec
from femurseg.models.schedules import Schedule, lr_factor
from femurseg.models.zoo import model_path
from femurseg.sliding import sliding_window_inference
from femurseg.voxels import as_triple

__all__ = ["training_record", "SegmentationModule", "Target", "TARGET_CLASSES", "make_target", "make_soft_target", "adamw"]



def make_target(label: torch.Tensor, target: str) -> torch.Tensor:
    """Class-index target from a 0/1/2 label map (DESIGN.md §3, :mod:`femurseg.labels`)."""
    return target_of(label, target).long()


def training_record(trainer: Any) -> dict[str, Any]:
    """How far training got, in plain data: steps and epochs done and planned, and whether a
    ``max_time`` cap stopped it before the planned steps/epochs (``stopped_by_time_cap``)."""
    from lightning.pytorch.callbacks import Timer

    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining("train") if timer is not None else None
    capped = remaining is not None and remaining <= 0
    steps_left = trainer.max_steps is not None and trainer.max_steps > 0 and trainer.global_step < trainer.max_steps
    epochs_left = (trainer.max_epochs is not None and trainer.max_epochs > 0
                   and trainer.current_epoch + 1 < trainer.max_epochs)
    return {
        "global_step": int(trainer.global_step), "max_steps": int(trainer.max_steps or -1),
        "epoch": int(trainer.current_epoch), "max_epochs": int(trainer.max_epochs or -1),
        "stopped_by_time_cap": bool(capped and (steps_left or epochs_left)),
    }


def make_soft_target(fractions: torch.Tensor, target: str) -> torch.Tensor:
    """Per-class probabilities ``(B, C, ...)`` from partial-volume fractions ``(B, 2, ...)``.

    ``fractions`` holds the periosteal (``P``) and endosteal (``E``) fraction of each
    voxel; the classes are ``[1 - P, P]`` (periosteal), ``[1 - E, E]`` (endosteal)
    or ``[1 - P, P - E, E]`` (compartments).
    """
    outer, inner = fractions[:, 0].float().clamp(0, 1), fractions[:, 1].float().clamp(0, 1)
    if target == "periosteal":
        return torch.stack([1 - outer, outer], dim=1)
    if target == "endosteal":
        return torch.stack([1 - inner, inner], dim=1)
    if target == "compartments":
        inner = torch.minimum(inner, outer)
        return torch.stack([1 - outer, outer - inner, inner], dim=1)
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
        filled in from the target, and ``patch_size`` for nets that declare
        ``NetSpec(needs_patch_size=True)`` (:mod:`femurseg.models.registry`).
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
        that declare ``NetSpec(deep_supervision=True)`` and are built with
        ``net_kwargs.deep_supervision: true`` (they return several outputs).
    patch_size
        Sliding-window size for validation, ``(W, H, D)`` voxels (usually linked
        from the data module).
    val_overlap
        Fractional overlap of validation windows.
    val_batch_size
        Windows evaluated at once.
    ema_decay
        If set (e.g. ``0.999``), keep an exponential moving average of the net's
        weights (:mod:`femurseg.models.ema`); validation uses it and checkpoints
        save it as the inference weights ``net.*`` (optimised weights:
        ``train_net.*``).
    compile
        ``torch.compile`` the net (in place, :meth:`torch.nn.Module.compile`, so
        state-dict keys do not change) when training or validation starts.
    compile_kwargs
        Keyword arguments of the compile call, e.g. ``{"mode": "max-autotune"}``.
    channels_last
        Keep weights and inputs in ``channels_last_3d`` memory format (faster
        convolutions with cuDNN under ``16-mixed``/``bf16-mixed`` on recent GPUs;
        measure before using it on CPU).
    pretrained
        Start from these weights instead of a random initialisation (fine-tuning,
        like nnU-Net's ``-pretrained_weights``): a bundled model name such as
        ``femur-ct-v3`` or a checkpoint path, read safely
        (:func:`~femurseg.models.checkpoints.load_pretrained`). Net, target and
        architecture must match; the data module's preprocessing must match the
        source's (checked when training starts).

    Gradient clipping and precision are Trainer options
    (``--trainer.gradient_clip_val 12``, ``--trainer.precision bf16-mixed``); see
    ``docs/models.md``.

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
        schedule: Schedule = "poly",
        warmup_steps: int = 0,
        deep_supervision_decay: float = 0.5,
        patch_size: int | tuple[int, int, int] = 96,
        val_overlap: float = 0.5,
        val_batch_size: int = 2,
        ema_decay: float | None = None,
        compile: bool = False,
        compile_kwargs: dict[str, Any] | None = None,
        channels_last: bool = False,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if target not in TARGET_CLASSES:
            raise ValueError(f"unknown target {target!r}; valid: {', '.join(TARGET_CLASSES)}")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or null, got {ema_decay}")
        self.save_hyperparameters(ignore=["optimizer"])
        self.classes = TARGET_CLASSES[target]
        self.patch_size = as_triple(patch_size, "patch_size")
        self.net_kwargs = {**(net_kwargs or {}), "in_channels": 1, "out_channels": len(self.classes)}
        spec = net_spec(net)  # what the net declared when it was registered (docs/plugins.md)
        if spec.needs_patch_size and "patch_size" not in self.net_kwargs:
            self.net_kwargs["patch_size"] = self.patch_size  # nets that plan their topology (dynunet3d)
        if self.net_kwargs.get("deep_supervision") and not spec.deep_supervision:
            raise ValueError(f"net {net!r} does not declare deep supervision (NetSpec(deep_supervision=True) "
                             "at registration, docs/plugins.md): remove net_kwargs.deep_supervision")
        self.net: nn.Module = NETS.create(net, **self.net_kwargs)
        self.pretrained_preprocessing: dict[str, Any] | None = None
        if pretrained is not None:
            path = Path(pretrained) if Path(pretrained).is_file() else model_path(pretrained)  # a file, else a bundled model
            source = load_pretrained(self.net, path, net_name=net, target=target, net_kwargs=self.net_kwargs)
            self.pretrained_preprocessing = source.preprocessing.to_dict()
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        self.ema_net: nn.Module | None = None
        if ema_decay is not None:
            self.ema_net = copy.deepcopy(self.net).requires_grad_(False)
        self.loss_fn: nn.Module = LOSSES.create(loss, **(loss_kwargs or {}))
        self.optimizer_factory = optimizer
        self.preprocessing: dict[str, Any] | None = None
        self.mirror_axes: str | None = None  # the training augmentation's mirror axes, for test-time flips
        self.val_scores: dict[str, dict[str, float]] = {}

    @property
    def inference_net(self) -> nn.Module:
        """The weights to predict with: the EMA copy when enabled, else ``net``."""
        return self.ema_net if self.ema_net is not None else self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, W, H, D)`` of :attr:`inference_net` (full-resolution output only)."""
        out = self.inference_net(x.contiguous(memory_format=self.memory_format))
        return out[0] if isinstance(out, (list, tuple)) else out

    def configure_model(self) -> None:
        """Compile the net(s) in place once, if ``compile`` is set."""
        if not self.hparams.compile or getattr(self, "_compiled", False):
            return
        for net in (self.net, self.ema_net):
            if net is not None:
                net.compile(**(self.hparams.compile_kwargs or {}))
        self._compiled = True

    # training ---------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        image = batch["image"][tio.DATA]
        if "fractions" in batch:  # partial-volume soft targets (FemurDataModule partial_volume=True)
            target = make_soft_target(batch["fractions"][tio.DATA], self.hparams.target)
        else:
            target = make_target(batch["label"][tio.DATA][:, 0], self.hparams.target)
        outputs = self.net(image.contiguous(memory_format=self.memory_format))
        loss = self.supervised_loss(outputs, target)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=image.shape[0])
        return loss

    def on_train_start(self) -> None:
        self._ema_step = self.global_step

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the EMA weights once per optimizer step (not per batch under gradient accumulation)."""
        if self.ema_net is not None and self.global_step != getattr(self, "_ema_step", None):
            update_ema(self.ema_net, self.net, ema_decay_at(self.hparams.ema_decay, self.global_step - 1))
            self._ema_step = self.global_step

    def supervised_loss(self, outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Loss over one output or, with deep supervision, a weighted sum over scales.

        Integer targets ``(B, D, H, W)`` are downsampled to each scale by nearest
        neighbour, soft targets ``(B, C, D, H, W)`` by area averaging (the fractions
        of the coarser voxels).
        """
        if not isinstance(outputs, (list, tuple)):
            return self.loss_fn(outputs, target)
        weights = [self.hparams.deep_supervision_decay**i for i in range(len(outputs))]
        total = sum(weights)
        loss = outputs[0].new_zeros(())
        for weight, logits in zip(weights, outputs):
            scaled = target
            soft = target.is_floating_point() and target.ndim == logits.ndim
            if logits.shape[2:] != target.shape[-3:]:
                if soft:
                    scaled = F.interpolate(target, size=logits.shape[2:], mode="area")
                else:
                    scaled = F.interpolate(target[:, None].float(), size=logits.shape[2:], mode="nearest")[:, 0].long()
            loss = loss + weight / total * self.loss_fn(logits, scaled)
        return loss

    # validation -------------------------------------------------------------
    @torch.no_grad()
    def predict_volume(self, image: torch.Tensor) -> torch.Tensor:
        """Sliding-window class probabilities ``(C, W, H, D)`` for one image ``(1, W, H, D)``.

        The same inferer as ``femurseg segment`` (:func:`femurseg.sliding.sliding_window_inference`:
        Gaussian blending, edge-replicating padding of volumes smaller than a window), with
        windows of ``patch_size`` overlapping by ``val_overlap``, so validation Dice is measured
        the way users predict.
        """
        return sliding_window_inference(
            image[None].to(self.device), self, self.patch_size, overlap=self.hparams.val_overlap, blend="gaussian",
            batch_size=self.hparams.val_batch_size, activation="softmax", pad_mode="replicate",
        )[0]

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
            periosteal = _dice(periosteal_mask(prediction), periosteal_mask(label))
            endosteal = _dice(endosteal_mask(prediction), endosteal_mask(label))
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
        optimizer = self.optimizer_factory(self.net.parameters())
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup, schedule = self.hparams.warmup_steps, self.hparams.schedule
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total, schedule=schedule, warmup_steps=warmup)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # checkpoint metadata ----------------------------------------------------
    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "preprocessing"):
            self.preprocessing = datamodule.preprocessing.to_dict()
        if self.pretrained_preprocessing is not None and self.preprocessing is not None \
                and self.pretrained_preprocessing != self.preprocessing:
            raise ValueError(
                f"pretrained weights {self.hparams.pretrained!r} were trained with preprocessing "
                f"{self.pretrained_preprocessing}, the data module gives {self.preprocessing}: "
                "set data.spacing / data.hu_window to the pretrained model's"
            )
        if datamodule is not None and hasattr(datamodule, "mirror_axes"):
            self.mirror_axes = datamodule.mirror_axes
        precision = str(self.trainer.precision)
        if precision.startswith("bf16") and self.device.type == "cpu" and not cpu_has_fast_bf16():
            rank_zero_warn(
                "bf16 on this CPU (no AVX-512 BF16/AMX) runs convolutions far slower than fp32 "
                "(measured ~100x on an AVX2 machine): use --trainer.precision 32-true on CPU"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store plain-data metadata that rebuilds the net without unpickling code.

        ``state_dict["net.*"]`` always holds the weights to predict with (the EMA
        weights when ``ema_decay`` is set; see :mod:`femurseg.models.ema`).
        """
        to_checkpoint_layout(checkpoint["state_dict"])
        checkpoint["femurseg"] = {
            "format_version": FORMAT_VERSION,
            "target": self.hparams.target,
            "classes": list(self.classes),
            "net": self.hparams.net,
            "net_kwargs": _plain(self.net_kwargs),
            "preprocessing": self.preprocessing,
            "patch_size": list(self.patch_size),
            "ema_decay": self.hparams.ema_decay,
            "mirror_axes": self.mirror_axes,
        }
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            checkpoint["femurseg"]["training"] = training_record(trainer)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.preprocessing = checkpoint.get("femurseg", {}).get("preprocessing")
        self.mirror_axes = checkpoint.get("femurseg", {}).get("mirror_axes")
        if "state_dict" in checkpoint:
            from_checkpoint_layout(checkpoint["state_dict"], keep_ema=self.ema_net is not None)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the value survives ``weights_only`` loading."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
