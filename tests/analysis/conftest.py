"""Fixtures of the analysis tests: quick phantoms of both sides and a bare calibration phantom."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk


@pytest.fixture(scope="session")
def quick_left():
    """A quick-preset synthetic hip (left), with its phantom in view."""
    from femurseg.data.synthetic import generate_subject

    return generate_subject(1, "quick", side="left")


@pytest.fixture(scope="session")
def quick_right():
    """A quick-preset synthetic hip (right)."""
    from femurseg.data.synthetic import generate_subject

    return generate_subject(3, "quick", side="right")


def phantom_image(rod_hu, radius=8.0, pitch=32.0, spacing=1.0, size=(200, 120, 30), block_hu=5.0, noise=10.0,
                  shift_x=0.0, seed=0, rod_texture=None) -> sitk.Image:
    """A bare calibration phantom: air, a water-like block and a row of rods along z.

    ``rod_hu`` is a list of rod HU; the row is centred in x (plus ``shift_x`` mm) at two
    thirds of the height. ``rod_texture`` maps a rod index to the SD (HU) of a pattern
    that varies in-plane but not along z (an inhomogeneous rod).
    """
    nx, ny, nz = size
    rng = np.random.default_rng(seed)
    x = (np.arange(nx) - nx / 2) * spacing
    y = np.arange(ny) * spacing
    yy, xx = np.meshgrid(y, x, indexing="ij")
    volume = np.full((nz, ny, nx), -1000.0, np.float32)
    cy = 2.0 * ny * spacing / 3.0
    half_width = 0.5 * pitch * len(rod_hu) + 2 * radius
    block = (np.abs(xx - shift_x) < half_width) & (np.abs(yy - cy) < 1.6 * radius)
    volume[:, block] = block_hu
    for i, hu in enumerate(rod_hu):
        centre = shift_x + (i - (len(rod_hu) - 1) / 2) * pitch
        disc = np.hypot(xx - centre, yy - cy) <= radius
        volume[:, disc] = hu
        if rod_texture and i in rod_texture:
            volume[:, disc] += rng.normal(0.0, rod_texture[i], int(disc.sum())).astype(np.float32)
    volume += rng.normal(0.0, noise, volume.shape).astype(np.float32)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((spacing, spacing, 2.0))
    image.SetOrigin((-nx / 2 * spacing, 0.0, 0.0))
    return image


@pytest.fixture(scope="session")
def make_phantom():
    """:func:`phantom_image`, as a fixture (test modules cannot import conftest)."""
    return phantom_image


@pytest.fixture(scope="session")
def analysed(quick_left, quick_right):
    """``analyze`` with default settings of both quick phantoms, once per session (read-only for tests)."""
    from femurseg.analysis import analyze

    return {"left": analyze(quick_left.image, quick_left.label), "right": analyze(quick_right.image, quick_right.label)}
