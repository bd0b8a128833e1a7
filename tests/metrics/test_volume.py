"""Volumes in cm³ and relative volume error, with anisotropic voxels and empty masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from femurseg.metrics.volume import check_spacing, volume_cm3, volume_error_pct


def test_volume_of_a_box_with_anisotropic_voxels() -> None:
    mask = np.zeros((20, 30, 40), bool)
    mask[2:12, 5:25, 10:30] = True  # 10 x 20 x 20 voxels
    assert volume_cm3(mask, (2.5, 0.7, 0.6)) == pytest.approx(10 * 20 * 20 * 2.5 * 0.7 * 0.6 / 1000)


def test_volume_matches_simpleitk_label_statistics() -> None:
    sitk = pytest.importorskip("SimpleITK")
    rng = np.random.default_rng(0)
    mask = rng.random((12, 14, 16)) > 0.7
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing((0.6, 0.8, 2.0))  # (x, y, z): array order is reversed
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(image)
    assert volume_cm3(mask, image.GetSpacing()[::-1]) == pytest.approx(stats.GetPhysicalSize(1) / 1000)


def test_relative_volume_error_is_signed() -> None:
    ref = np.zeros(100, bool)
    ref[:40] = True
    over, under = np.zeros_like(ref), np.zeros_like(ref)
    over[:50], under[:30] = True, True
    assert volume_error_pct(over, ref, 0.5) == pytest.approx(25.0)
    assert volume_error_pct(under, ref, 0.5) == pytest.approx(-25.0)


def test_empty_masks() -> None:
    empty, full = np.zeros((3, 3, 3), bool), np.ones((3, 3, 3), bool)
    assert volume_cm3(empty, 1.0) == 0.0
    assert volume_error_pct(empty, empty, 1.0) == 0.0
    assert math.isinf(volume_error_pct(full, empty, 1.0))
    assert volume_error_pct(empty, full, 1.0) == -100.0


def test_spacing_is_validated() -> None:
    assert check_spacing([0.7], 3) == (0.7, 0.7, 0.7)
    with pytest.raises(ValueError, match="has 2 values for a 3-D array"):
        volume_cm3(np.ones((2, 2, 2)), (1.0, 1.0))
    with pytest.raises(ValueError, match="positive and finite"):
        volume_cm3(np.ones((2, 2, 2)), (1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="positive and finite"):
        check_spacing((1.0, float("nan")), 2)
