"""Drawing anatomical dimensions that scale together with body size."""

from __future__ import annotations

import numpy as np

__all__ = ["size_coupled"]


def size_coupled(rng: np.random.Generator, size: float, lo: float, hi: float, spread: float) -> float:
    """A dimension in ``[lo, hi]`` centred where ``size`` (0 small, 1 large) puts it, SD ``spread × (hi − lo)``."""
    centre = lo + (hi - lo) * size
    return float(np.clip(centre + rng.normal(0.0, spread * (hi - lo)), lo, hi))
