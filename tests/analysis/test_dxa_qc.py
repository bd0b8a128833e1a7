"""Tests of the DXA-equivalent projection and the analysis QC picture."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from femurseg.analysis.dxa import dxa_projection
from femurseg.analysis.geometry import hip_geometry
from femurseg.analysis.regions import region_map


def test_projection_conserves_mineral_and_gives_plausible_abmd(quick_left):
    label = sitk.GetArrayFromImage(quick_left.label)
    rho = np.full(label.shape, 500.0, np.float32)  # uniform 500 mg/cm³ bone
    g = hip_geometry(label > 0, quick_left.image)
    regions = region_map(label > 0, quick_left.image, g)
    projection = dxa_projection(rho, label, regions, quick_left.image, g)
    voxel_cm3 = float(np.prod(quick_left.image.GetSpacing())) / 1000.0
    total_g = float(projection.abmd.sum()) * 0.01  # g/cm² × 1 mm² pixels
    assert total_g == pytest.approx(500.0 * (label > 0).sum() * voxel_cm3 / 1000.0, rel=1e-6)
    neck, hip = projection.numbers["neck"], projection.numbers["total_hip"]
    # a neck 26-36 mm across, in a 15 mm box: 3-7 cm²
    assert 3.0 < neck["area_cm2"] < 7.5 and hip["area_cm2"] > neck["area_cm2"]
    assert neck["abmd_g_cm2"] == pytest.approx(neck["bmc_g"] / neck["area_cm2"], rel=1e-3)


def test_analyze_reports_dxa_and_draws_qc(analysed, tmp_path):
    result = analysed["right"]
    dxa = result.report["sides"][0]["dxa"]
    assert 0.3 < dxa["neck"]["abmd_g_cm2"] < 1.5 and 0.3 < dxa["total_hip"]["abmd_g_cm2"] < 1.5
    assert "right_dxa_total_hip_abmd_g_cm2" in result.summary
    result.write(tmp_path)
    picture = tmp_path / "analysis_qc.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*tmp*"))
