"""Learning-rate schedules, as multiplicative factors of the optimizer's base rate.

``SegmentationModule(schedule=..., warmup_steps=...)`` wraps :func:`lr_factor` in a
per-step ``LambdaLR``; the schedule is chosen by name in YAML, never by subclassing.
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["Schedule", "lr_factor"]

Schedule = Literal["poly", "cosine", "constant"]


def lr_factor(step: int, total_steps: int, *, schedule: Schedule = "poly", warmup_steps: int = 0,
              exponent: float = 0.9) -> float:
    """Factor of the base learning rate at optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_steps`` (``(step + 1) / warmup_steps``), then over
    the remaining steps, with progress ``t`` from 0 to 1:

    - ``poly``: ``(1 - t) ** exponent`` (nnU-Net: 0.9), reaching 0 at the last step;
    - ``cosine``: ``(1 + cos(π t)) / 2``;
    - ``constant``: 1.

    Raises
    ------
    ValueError
        For an unknown schedule name.

    Examples
    --------
    >>> [round(lr_factor(s, 10, schedule="cosine", warmup_steps=2), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if schedule not in ("poly", "cosine", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}; valid: poly, cosine, constant")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "poly":
        return (1 - progress) ** exponent
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0
