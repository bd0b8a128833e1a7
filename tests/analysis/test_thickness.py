"""Tests of femurseg.analysis.thickness: distance between the two contours, the .vtp map."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.analysis.thickness import cortical_thickness


def _tube(outer_mm: float, inner_mm: float, spacing: float = 0.5) -> tuple[np.ndarray, sitk.Image]:
    """A long tube along z (cut by the first and last slice): cortex outer - inner thick."""
    n = int(2 * outer_mm / spacing) + 8
    y, x = (np.mgrid[0:n, 0:n] - (n - 1) / 2) * spacing
    r = np.hypot(x, y)
    plane = np.where(r <= inner_mm, 2, np.where(r <= outer_mm, 1, 0)).astype(np.uint8)
    label = np.repeat(plane[None], 20, axis=0)
    image = sitk.GetImageFromArray(label)
    image.SetSpacing((spacing, spacing, 1.0))
    return label, image


@pytest.mark.parametrize("cortex", [1.0, 3.0, 5.0])
def test_tube_thickness(cortex):
    label, image = _tube(14.0, 14.0 - cortex)
    surface = cortical_thickness(label, image)
    values = surface.thickness[np.isfinite(surface.thickness)]
    assert values.size > 100 and np.isnan(surface.thickness).any()  # the cut planes carry none
    assert np.median(values) == pytest.approx(cortex, abs=0.3)


def test_phantom_thickness_by_region_and_vtp(quick_left, analysed, tmp_path):
    result = analysed["left"]
    thickness = result.report["sides"][0]["thickness"]
    femur = quick_left.meta["femur"]
    floor = max(quick_left.meta["spacing"])  # the quick preset keeps the cortex at least one voxel thick
    assert thickness["shaft"]["median_mm"] == pytest.approx(max(femur["cortex_shaft"], floor), rel=0.2)
    assert thickness["head"]["median_mm"] == pytest.approx(max(femur["cortex_head"], floor), rel=0.25)
    assert "left_thickness_shaft_median_mm" in result.summary
    fitted = result.report["sides"][0]["thickness_profile_fit"]
    assert fitted["model"]["estimated_from_vertices"] >= 20 and fitted["model"]["cortical_hu"] > 500
    assert fitted["shaft"]["median_mm"] == pytest.approx(max(femur["cortex_shaft"], floor), rel=0.25)
    assert "left_thickness_fit_shaft_median_mm" in result.summary
    result.write(tmp_path)
    root = ET.parse(tmp_path / "thickness.vtp").getroot()
    assert root.get("type") == "PolyData"
    names = {a.get("Name") for a in root.iter("DataArray")}
    assert {"thickness_mm", "thickness_fit_mm", "region"} <= names
