"""Tests of femurseg.analysis.profile_fit: cortical thickness from a model fit of the CT profile."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from femurseg.analysis.profile_fit import ProfileFitSettings, fit_profiles
from femurseg.analysis.thickness import cortical_thickness

R, RI, D = 12.0, 9.7, 1.7  # outer radius, inner radius and its offset: cortex 0.6 mm (+x) to 4.0 mm (-x)
SPACING, SIGMA = 0.5, 0.6


def _eccentric_tube(noise: float = 20.0, seed: int = 0) -> tuple[np.ndarray, sitk.Image, float]:
    """A tube along z whose cortex thins from 4.0 to 0.6 mm around it, blurred (SD 0.6 mm) and noisy (HU)."""
    n = int(2 * R / SPACING) + 30
    ss = 4  # supersampled partial volume
    yy, xx = (np.mgrid[0:n * ss, 0:n * ss] - (n * ss - 1) / 2) * SPACING / ss
    fine = np.where(np.hypot(xx - D, yy) <= RI, 200.0, np.where(np.hypot(xx, yy) <= R, 1500.0, 40.0))
    plane = ndimage.gaussian_filter(fine.reshape(n, ss, n, ss).mean(axis=(1, 3)), SIGMA / SPACING)
    volume = np.repeat(plane[None], 16, axis=0) + np.random.default_rng(seed).normal(0.0, noise, (16, n, n))
    y, x = (np.mgrid[0:n, 0:n] - (n - 1) / 2) * SPACING
    label = np.where(np.hypot(x - D, y) <= RI, 2, np.where(np.hypot(x, y) <= R, 1, 0)).astype(np.uint8)
    image = sitk.GetImageFromArray(volume.astype(np.float32))
    image.SetSpacing((SPACING, SPACING, 1.0))
    return np.repeat(label[None], 16, axis=0), image, (n - 1) / 2 * SPACING


def _truth(points: np.ndarray, centre: float) -> np.ndarray:
    theta = np.arctan2(points[:, 1] - centre, points[:, 0] - centre)
    return R - (D * np.cos(theta) + np.sqrt(RI**2 - (D * np.sin(theta)) ** 2))


def _errors(fitted: np.ndarray, truth: np.ndarray) -> dict[tuple[float, float], float]:
    ok = np.isfinite(fitted)
    return {(lo, hi): float(np.median(fitted[ok & (truth >= lo) & (truth < hi)] - truth[ok & (truth >= lo) & (truth < hi)]))
            for lo, hi in ((0.5, 1.0), (1.0, 2.0), (2.0, 4.1))}


def test_fit_resolves_thin_cortex_and_estimates_the_model():
    label, image, centre = _eccentric_tube()
    surface = cortical_thickness(label, image, profile=ProfileFitSettings())
    assert surface.fit is not None and surface.fitted is not None
    assert surface.fit.cortical_hu == pytest.approx(1500.0, rel=0.03)
    assert 0.55 <= surface.fit.sigma_mm <= 0.8  # the blur plus the voxel's partial volume
    assert surface.fit.estimated_from >= 20
    assert np.isnan(surface.fitted).any()  # the cut planes carry none
    for band, error in _errors(surface.fitted, _truth(surface.points, centre)).items():
        assert abs(error) <= 0.15, (band, error)
    summary = surface.summary("profile_fit")
    assert summary["all"]["n"] > 1000


def test_fit_does_not_depend_on_where_the_contour_lies():
    """A label one voxel too wide biases the contour thickness by +0.5 mm; the profile fit stays on the image."""
    label, image, centre = _eccentric_tube()
    wide = np.where(ndimage.binary_dilation(label >= 1, iterations=1) & (label == 0), 1, label).astype(np.uint8)
    surface = cortical_thickness(wide, image, profile=ProfileFitSettings())
    assert surface.fitted is not None
    truth = _truth(surface.points, centre)
    contour_error = np.nanmedian(surface.thickness - truth)
    assert contour_error > 0.3
    for band, error in _errors(surface.fitted, truth).items():
        assert abs(error) <= 0.2, (band, error)


def test_without_thick_cortex_nothing_is_fitted_unless_the_cortical_hu_is_given():
    # a thin-walled tube (0.8 mm everywhere): y1 cannot be learned from the scan
    n = 70
    y, x = (np.mgrid[0:n, 0:n] - (n - 1) / 2) * SPACING
    r = np.hypot(x, y)
    plane = ndimage.gaussian_filter(np.where(r <= 11.2, 200.0, np.where(r <= 12.0, 1500.0, 40.0)), SIGMA / SPACING)
    image = sitk.GetImageFromArray(np.repeat(plane[None], 12, axis=0).astype(np.float32))
    image.SetSpacing((SPACING, SPACING, 1.0))
    label = np.repeat(np.where(r <= 11.2, 2, np.where(r <= 12.0, 1, 0)).astype(np.uint8)[None], 12, axis=0)
    unknown = cortical_thickness(label, image, profile=ProfileFitSettings())
    assert unknown.fitted is not None and np.isnan(unknown.fitted).all()
    given = cortical_thickness(label, image, profile=ProfileFitSettings(cortical_hu=1500.0, sigma_mm=SIGMA))
    assert given.fitted is not None
    assert np.nanmedian(given.fitted) == pytest.approx(0.8, abs=0.15)


def test_grid_search_finds_a_noise_free_model_exactly():
    from scipy.special import ndtr

    x = np.arange(-12.0, 5.0 + 1e-9, 0.25)
    truth = [(0.0, 0.7), (0.4, 2.3), (-0.6, 5.0)]
    rows = [200 + 1300 * ndtr((x - xp + t) / 0.6) + (40 - 1500) * ndtr((x - xp) / 0.6) for xp, t in truth]
    thickness, position = fit_profiles(np.array(rows), x, 1500.0, 0.6)
    np.testing.assert_allclose(thickness, [t for _, t in truth], atol=1e-6)
    np.testing.assert_allclose(position, [xp for xp, _ in truth], atol=1e-6)
