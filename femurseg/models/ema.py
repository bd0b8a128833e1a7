"""Exponential moving average (EMA) of a network's weights, and its checkpoint layout.

With ``SegmentationModule(ema_decay=0.999)`` the module keeps ``ema_net``, a frozen
copy of ``net`` updated after every optimizer step::

    ema ← ema + (1 - d_t) · (net - ema),   d_t = min(decay, (1 + t) / (10 + t))

(the ramp ``d_t`` keeps early averages from being dominated by the random init;
buffers such as batch-norm statistics are copied). Validation runs the EMA weights.

Checkpoint layout: inference reads ``state_dict["net.*"]``, so with EMA the saved
``net.*`` *are* the EMA weights and the optimised weights go to ``train_net.*``
(only needed to resume training); :func:`from_checkpoint_layout` swaps them back.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ema_decay_at", "update_ema", "to_checkpoint_layout", "from_checkpoint_layout"]

NET, EMA, TRAIN = "net.", "ema_net.", "train_net."


def ema_decay_at(decay: float, step: int) -> float:
    """Decay used at optimizer step ``step``: ``min(decay, (1 + step) / (10 + step))``."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """Move ``ema``'s parameters towards ``net``'s by ``1 - decay``; copy buffers.

    ``ema`` must be a copy of ``net`` (same parameter order and shapes).
    """
    ema_params = [p for p in ema.parameters()]
    net_params = [p.detach() for p in net.parameters()]
    torch._foreach_lerp_(ema_params, net_params, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), net.buffers()):
        ema_buffer.copy_(buffer)


def to_checkpoint_layout(state_dict: dict[str, torch.Tensor]) -> None:
    """In place: ``ema_net.*`` → ``net.*`` (inference weights), ``net.*`` → ``train_net.*``."""
    if not any(k.startswith(EMA) for k in state_dict):
        return
    for key in [k for k in state_dict if k.startswith(NET)]:
        state_dict[TRAIN + key[len(NET):]] = state_dict.pop(key)
    for key in [k for k in state_dict if k.startswith(EMA)]:
        state_dict[NET + key[len(EMA):]] = state_dict.pop(key)


def from_checkpoint_layout(state_dict: dict[str, torch.Tensor], *, keep_ema: bool) -> None:
    """In place, undo :func:`to_checkpoint_layout`.

    With ``keep_ema=False`` (a module built without EMA loads an EMA checkpoint)
    the EMA weights stay as ``net.*`` and the optimised ones are dropped. With
    ``keep_ema=True`` and a checkpoint saved without EMA, the average starts from
    the saved weights.
    """
    if not any(k.startswith(TRAIN) for k in state_dict):
        if keep_ema and not any(k.startswith(EMA) for k in state_dict):
            for key in [k for k in state_dict if k.startswith(NET)]:
                state_dict[EMA + key[len(NET):]] = state_dict[key].clone()
        return
    if not keep_ema:
        for key in [k for k in state_dict if k.startswith(TRAIN)]:
            del state_dict[key]
        return
    for key in [k for k in state_dict if k.startswith(NET)]:
        state_dict[EMA + key[len(NET):]] = state_dict.pop(key)
    for key in [k for k in state_dict if k.startswith(TRAIN)]:
        state_dict[NET + key[len(TRAIN):]] = state_dict.pop(key)
