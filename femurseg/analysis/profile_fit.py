"""Cortical thickness from a model fit of the CT profile across the cortex (cortical bone mapping).

The distance between two contours cannot resolve a cortex thinner than the scanner's
blur: the blurred cortex looks wider and dimmer than it is, and a contour placed on it
reads too thick. Following Treece et al. (Med Image Anal 2010; 2012), the intensity
profile along the outward surface normal at each periosteal vertex is modelled as three
plateaus, trabecular bone ``y2`` inside, cortical bone ``y1`` and soft tissue ``y0``
outside, with the cortex between ``x_p - t`` and ``x_p`` (``x`` along the normal,
0 at the vertex), blurred by a Gaussian of standard deviation ``sigma``::

    y(x) = y2 + (y1 - y2) Φ((x - x_p + t) / sigma) + (y0 - y1) Φ((x - x_p) / sigma)

With ``y1`` (the cortical bone's true value) and ``sigma`` (the in-plane blur) fixed for
the scan, thickness and density are separable even below the blur, which is what lets the
method resolve thin cortices. Both are estimated from vertices whose contour thickness is
at least 3.5 mm (where all six parameters are identifiable: the shaft), as the medians of
full fits of up to 200 of them (at least 20 needed), unless given. Without such vertices
and no ``cortical_hu`` given, nothing is measured (NaN): the fit would take the blurred
peak for cortical bone. A given ``cortical_hu`` without ``sigma_mm`` uses 0.5 × the
largest in-plane spacing.

Per vertex, ``y0`` and ``y2`` enter linearly: for every ``(x_p, t)`` of a 0.1 mm grid
(``x_p`` in ±1.5 mm of the contour, ``t`` in 0.1-8 mm) they are solved in closed form, and since all
profiles share their sample positions the grid search is a few matrix products for all
vertices at once (variable projection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import least_squares
from scipy.special import ndtr

__all__ = ["ProfileFit", "ProfileFitSettings", "fit_profiles", "outward_normals", "profile_thickness", "sample_profiles"]


@dataclass(frozen=True)
class ProfileFitSettings:
    """How profiles are sampled and fitted (mm and HU).

    Parameters
    ----------
    inside, outside
        Profile extent along the normal, inwards and outwards from the vertex.
    step
        Sample spacing along the profile.
    cortical_hu
        ``y1``, the cortical bone's value; ``None`` estimates it from thick cortex.
    sigma_mm
        The blur's standard deviation; ``None`` estimates it from thick cortex.
    thick_mm
        Contour thickness from which a vertex is used to estimate ``cortical_hu`` and ``sigma_mm``.
    """

    inside: float = 12.0
    outside: float = 5.0
    step: float = 0.25
    cortical_hu: float | None = None
    sigma_mm: float | None = None
    thick_mm: float = 3.5


@dataclass
class ProfileFit:
    """Fitted thickness per vertex (mm, NaN where no profile) and the scan-wide model values."""

    thickness: np.ndarray
    position: np.ndarray
    cortical_hu: float
    sigma_mm: float
    estimated_from: int


def outward_normals(points: np.ndarray, triangles: np.ndarray, inside: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Unit vertex normals (area-weighted face normals) pointing out of the object.

    ``inside(points)`` → bool says whether physical points lie in the object; the sign is
    chosen so that most vertices + 1 mm along their normal are outside.
    """
    a, b, c = (points[triangles[:, i]] for i in range(3))
    face = np.cross(b - a, c - a)
    normals = np.zeros_like(points)
    for i in range(3):
        np.add.at(normals, triangles[:, i], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = normals / np.maximum(length, 1e-12)
    inward = inside(points + normals) & ~inside(points - normals)
    outward = inside(points - normals) & ~inside(points + normals)
    return -normals if inward.sum() > outward.sum() else normals


def sample_profiles(volume: np.ndarray, to_index: Callable[[np.ndarray], np.ndarray], points: np.ndarray,
                    normals: np.ndarray,
                    settings: ProfileFitSettings) -> tuple[np.ndarray, np.ndarray]:
    """Profiles ``(N, S)`` (linear interpolation, NaN outside the volume) and positions ``(S,)`` (mm)."""
    x = np.arange(-settings.inside, settings.outside + 1e-9, settings.step)
    xyz = points[:, None, :] + x[None, :, None] * normals[:, None, :]
    index = to_index(xyz.reshape(-1, 3))  # (z, y, x)
    values = ndimage.map_coordinates(volume.astype(np.float32), index.T, order=1, mode="constant", cval=np.nan)
    return values.reshape(len(points), len(x)), x


def _model(x: np.ndarray, xp: float, t: float, y0: float, y1: float, y2: float, sigma: float) -> np.ndarray:
    return y2 + (y1 - y2) * ndtr((x - xp + t) / sigma) + (y0 - y1) * ndtr((x - xp) / sigma)


def _full_fit(x: np.ndarray, y: np.ndarray, t0: float) -> np.ndarray | None:
    """All six parameters ``(x_p, t, y0, y1, y2, sigma)`` of one profile, or None if the fit fails."""
    start = [0.0, t0, float(np.median(y[x > 2.0])), float(np.max(y)), float(np.median(y[x < -t0 - 2.0])), 0.7]
    lower = [-3.0, 0.3, -1100.0, -1100.0, -1100.0, 0.1]
    upper = [3.0, 12.0, 4000.0, 4000.0, 4000.0, 3.0]
    start = list(np.clip(start, np.array(lower) + 1e-6, np.array(upper) - 1e-6))
    try:
        fit = least_squares(lambda p: _model(x, *p) - y, start, bounds=(lower, upper), method="trf")
    except ValueError:
        return None
    return fit.x if fit.success else None


def _scan_values(profiles: np.ndarray, x: np.ndarray, contour: np.ndarray,
                 settings: ProfileFitSettings) -> tuple[float, float, int]:
    """``(cortical_hu, sigma_mm, vertices used)``: given, or estimated on thick cortex (NaN if neither)."""
    thick = np.flatnonzero(np.isfinite(contour) & (contour >= settings.thick_mm) & np.isfinite(profiles).all(axis=1))
    fits = []
    if settings.cortical_hu is None or settings.sigma_mm is None:
        rng = np.random.default_rng(0)
        for i in rng.permutation(thick)[:200]:
            p = _full_fit(x, profiles[i], float(contour[i]))
            if p is not None:
                fits.append(p)
    fits_array = np.array(fits) if fits else np.zeros((0, 6))
    enough = len(fits_array) >= 20
    y1 = settings.cortical_hu
    if y1 is None:
        y1 = float(np.median(fits_array[:, 3])) if enough else float("nan")
    sigma = settings.sigma_mm
    if sigma is None:
        sigma = float(np.median(fits_array[:, 5])) if enough else float("nan")
    return y1, sigma, len(fits_array) if enough else 0


def fit_profiles(profiles: np.ndarray, x: np.ndarray, cortical_hu: float, sigma_mm: float,
                 chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Thickness ``t`` and periosteal position ``x_p`` per profile with ``y1`` and ``sigma`` fixed.

    Profiles with a NaN sample get NaN. Grid: ``x_p`` in [-1.5, 1.5], ``t`` in [0.1, 8] mm, step 0.1;
    a fit at the grid's largest ``t`` means "at least 8 mm".
    """
    xp_grid = np.round(np.arange(-1.5, 1.5 + 1e-9, 0.1), 3)
    t_grid = np.round(np.arange(0.1, 8.0 + 1e-9, 0.1), 3)
    xp, t = (g.ravel() for g in np.meshgrid(xp_grid, t_grid, indexing="ij"))
    a = ndtr((x[:, None] - xp[None, :] + t[None, :]) / sigma_mm)  # (S, K)
    b = ndtr((x[:, None] - xp[None, :]) / sigma_mm)
    u, v, w = 1.0 - a, b, cortical_hu * (a - b)  # model = y2 u + y0 v + w
    guu, guv, gvv = (u * u).sum(0), (u * v).sum(0), (v * v).sum(0)
    det = guu * gvv - guv * guv
    wu, wv, ww = (w * u).sum(0), (w * v).sum(0), (w * w).sum(0)
    # float32 from here: N × K arrays dominate the time
    u, v, w = (m.astype(np.float32) for m in (u, v, w))
    cuu, cuv, cvv = (np.float32(1.0) / det * g for g in (gvv, guv, guu))
    cuu, cuv, cvv, wu, wv, ww = (a.astype(np.float32) for a in (cuu, cuv, cvv, wu, wv, ww))
    thickness = np.full(len(profiles), np.nan)
    position = np.full(len(profiles), np.nan)
    valid = np.flatnonzero(np.isfinite(profiles).all(axis=1))
    for start in range(0, len(valid), chunk):
        rows = valid[start:start + chunk]
        y = profiles[rows].astype(np.float32)
        ru = y @ u
        ru -= wu  # right-hand sides with the fixed cortex removed
        rv = y @ v
        rv -= wv
        # residual sum of squares after the closed-form (y2, y0) is |y - w|² - rᵀ G⁻¹ r; |y|² is
        # the same for every grid point, so minimise ww - 2 y·w - rᵀ G⁻¹ r
        cost = y @ w
        cost *= np.float32(-2.0)
        cost += ww
        cost -= cuu * ru * ru
        cost += np.float32(2.0) * cuv * ru * rv
        cost -= cvv * rv * rv
        best = np.argmin(cost, axis=1)
        thickness[rows], position[rows] = t[best], xp[best]
    return thickness, position


def profile_thickness(volume: np.ndarray, to_index: Callable[[np.ndarray], np.ndarray], points: np.ndarray,
                      triangles: np.ndarray, inside: Callable[[np.ndarray], np.ndarray], contour: np.ndarray,
                      fallback_sigma_mm: float,
                      settings: ProfileFitSettings | None = None) -> ProfileFit:
    """Model-fit cortical thickness at every periosteal vertex.

    Parameters
    ----------
    volume
        The scan ``(Z, Y, X)`` in HU.
    to_index
        Physical ``(..., 3)`` → continuous ``(z, y, x)`` indices.
    points, triangles
        The periosteal surface (physical mm).
    inside
        Physical points → bool, inside the femur (orients the normals).
    contour
        The contour (distance) thickness per vertex, used to pick thick cortex.
    fallback_sigma_mm
        The blur used when it can be neither given nor estimated (no thick cortex).
    settings
        Sampling and fixed values.
    """
    settings = settings or ProfileFitSettings()
    normals = outward_normals(points, triangles, inside)
    profiles, x = sample_profiles(volume, to_index, points, normals, settings)
    y1, sigma, used = _scan_values(profiles, x, contour, settings)
    if used == 0 and settings.cortical_hu is None:
        # no thick cortex to learn the cortical value from, and none given: the fit would
        # read the blurred peak as cortical bone and every cortex as thick; measure nothing
        nothing = np.full(len(points), np.nan, np.float32)
        return ProfileFit(nothing, nothing.copy(), float("nan"), float("nan"), 0)
    if not np.isfinite(sigma):
        sigma = float(fallback_sigma_mm)
    thickness, position = fit_profiles(profiles, x, y1, sigma)
    return ProfileFit(thickness.astype(np.float32), position.astype(np.float32), y1, sigma, used)
