"""Scanner physics of the synthetic CT: grid, partial volume, blur, noise, gain.

Partial volume is rendered analytically: every surface is a (normalised)
signed distance ``d``, and a voxel's fill fraction is the box-filtered step
``clip(1/2 - d / w, 0, 1)`` with ``w`` the voxel's width along the surface
normal. This is what supersampling converges to for locally flat surfaces, at
the cost of one evaluation per voxel. The image is then blurred by a Gaussian
point-spread function, and band-limited noise (CT noise is spatially
correlated by the reconstruction kernel) is added before gain and offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["ScannerParams", "sample_scanner", "fill_fraction", "blur", "correlated_noise",
           "rotation_matrix"]


@dataclass(frozen=True)
class ScannerParams:
    """Sampled acquisition of one scan."""

    spacing: tuple[float, float, float]
    psf_fwhm: float
    noise_sd: float
    noise_grain: float
    gain: float
    offset: float
    slope: float
    intercept: float
    tilt: tuple[float, float, float]


def sample_scanner(
    rng: np.random.Generator,
    inplane: tuple[float, float],
    slices: tuple[float, ...],
    noise: tuple[float, float],
) -> ScannerParams:
    """Sample spacing, blur, noise, gain/offset, HU-to-density line and patient tilt."""
    dxy = float(rng.uniform(*inplane))
    dz = float(rng.choice(np.asarray(slices)))
    return ScannerParams(
        spacing=(dxy, dxy, dz),
        psf_fwhm=float(rng.uniform(0.7, 1.1) * max(dxy, 0.7)),
        noise_sd=float(rng.uniform(*noise)),
        noise_grain=float(rng.uniform(0.5, 0.9)),
        gain=float(rng.uniform(0.97, 1.03)),
        offset=float(rng.uniform(-8.0, 8.0)),
        slope=float(rng.uniform(1.15, 1.35)),
        intercept=float(rng.uniform(-8.0, 8.0)),
        tilt=(float(rng.uniform(-3.0, 3.0)), float(rng.uniform(-3.0, 3.0)), float(rng.uniform(-4.0, 4.0))),
    )


def rotation_matrix(angles_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    a, b, c = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def fill_fraction(distance: np.ndarray, width: np.ndarray | float) -> np.ndarray:
    """Fraction of a voxel inside a surface, from its normalised signed distance."""
    return np.clip(np.float32(0.5) - distance / np.maximum(width, np.float32(1e-3)), 0.0, 1.0)


def blur(image: np.ndarray, spacing: tuple[float, float, float], fwhm: float) -> np.ndarray:
    """Gaussian point-spread function; ``image`` is ``(Z, Y, X)``, spacing ``(sx, sy, sz)``."""
    sigma_mm = fwhm / 2.3548
    sigma = (0.35, sigma_mm / spacing[1], sigma_mm / spacing[0])
    return ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=3.0)


def correlated_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sd: float, grain: float
) -> np.ndarray:
    """Band-limited Gaussian noise with standard deviation ``sd`` (HU).

    White noise is low-passed in-plane with ``grain`` voxels and a wider
    low-frequency part is removed, giving the fine, slightly blotchy texture
    of filtered back-projection noise.
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    fine = ndimage.gaussian_filter(white, (0.3, grain, grain), truncate=3.0)
    coarse = ndimage.uniform_filter(fine, (1, 5, 5))
    noise = fine - np.float32(0.6) * coarse
    return noise * np.float32(sd / max(float(noise.std()), 1e-6))
