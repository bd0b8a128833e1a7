"""Tissue intensities (HU) and trabecular texture of the synthetic hip CT.

Bone intensities go through the scanner's true HU-to-K2HPO4 line, so that the
densities a calibration recovers are the densities that were rendered:
``HU = intercept + slope * rho`` for cortical bone, and
``HU = marrow + slope * rho`` for trabecular bone (marrow fills the pores).
A subject's bone status (normal, osteopenic, osteoporotic) scales cortical and
trabecular density together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["TissueParams", "sample_tissues", "trabecular_texture", "GROUPS"]

GROUPS: tuple[str, ...] = ("normal", "osteopenic", "osteoporotic")
"""Bone-status strata, written to the manifest's ``group`` column."""

_BONE_FACTOR = {"normal": (0.9, 1.15), "osteopenic": (0.72, 0.9), "osteoporotic": (0.5, 0.72)}


@dataclass(frozen=True)
class TissueParams:
    """Sampled intensities (HU) and densities (mg/cm3 K2HPO4) of one subject."""

    group: str
    bone_factor: float
    cortical_density: float
    trabecular_density: float
    marrow_hu: float
    canal_hu: float
    muscle_hu: float
    fat_hu: float
    skin_hu: float
    air_hu: float
    phantom_hu: float
    table_shell_hu: float
    table_core_hu: float
    texture_amplitude: float
    texture_scale: float
    pelvis_density: float


def sample_tissues(rng: np.random.Generator) -> TissueParams:
    """Sample bone status and tissue intensities."""
    group = str(rng.choice(np.asarray(GROUPS), p=[0.4, 0.35, 0.25]))
    factor = float(rng.uniform(*_BONE_FACTOR[group]))
    return TissueParams(
        group=group,
        bone_factor=factor,
        cortical_density=float(1150.0 * (0.62 + 0.38 * factor) * rng.uniform(0.93, 1.05)),
        trabecular_density=float(200.0 * factor * rng.uniform(0.9, 1.1)),
        marrow_hu=float(rng.uniform(-40.0, 10.0)),
        canal_hu=float(rng.uniform(-45.0, 20.0)),
        muscle_hu=float(rng.uniform(42.0, 58.0)),
        fat_hu=float(rng.uniform(-112.0, -88.0)),
        skin_hu=float(rng.uniform(30.0, 60.0)),
        air_hu=-1000.0,
        phantom_hu=float(rng.uniform(-5.0, 15.0)),
        table_shell_hu=float(rng.uniform(150.0, 350.0)),
        table_core_hu=float(rng.uniform(-950.0, -850.0)),
        texture_amplitude=float(rng.uniform(0.35, 0.55)),
        texture_scale=float(rng.uniform(0.7, 1.1)),
        pelvis_density=float(200.0 * factor * rng.uniform(0.85, 1.15)),
    )


def trabecular_texture(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    scale: float,
    along: tuple[float, float, float] = (1.6, 0.8, 0.8),
) -> np.ndarray:
    """Oriented trabecular texture with mean 0 and values in about [-1, 1].

    Band-pass noise whose correlation length is ``scale`` mm across and
    ``scale * along`` mm along each axis ``(z, y, x)``; a soft threshold turns
    it into plate- and rod-like struts separated by marrow spaces.

    Parameters
    ----------
    rng
        Random generator.
    shape
        ``(Z, Y, X)``.
    spacing
        ``(sx, sy, sz)`` in mm.
    scale
        Strut spacing in mm.
    along
        Elongation factors along ``(z, y, x)``; principal trabeculae of the
        proximal femur run roughly cranio-caudally.
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    sx, sy, sz = spacing
    sigma = tuple(max(scale * f / s, 0.3) for f, s in zip(along, (sz, sy, sx)))
    fine = ndimage.gaussian_filter(white, sigma, truncate=2.5)
    if fine.size:  # a bone outside the field of view gives an empty box
        fine /= max(float(fine.std()), 1e-6)
    return np.tanh(np.float32(1.6) * fine).astype(np.float32)
