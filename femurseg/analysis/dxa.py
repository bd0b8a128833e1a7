"""DXA-equivalent areal BMD: the calibrated femur projected along the AP axis of the neck plane.

The neck plane holds the neck and shaft axes; its normal ``n = neck × shaft`` is
the anterior–posterior direction a DXA beam would travel for a hip positioned with
the neck parallel to the table (internal rotation corrects anteversion). Every bone
voxel (label ≥ 1) is split into sub-points no wider than 0.7 mm, each carrying its
share of the voxel's mineral, and projected onto the plane (1 mm pixels, in-plane
axes: the shaft axis and ``n × shaft``); soft tissue is left out (the CT separates
bone from it, which DXA cannot). For a region of interest:

- ``bmc_g`` = Σ density × voxel volume over its voxels (mg → g);
- ``area_cm2`` = projected area (pixels hit by its voxels);
- ``abmd_g_cm2`` = BMC / area.

Regions: ``neck`` — the 15 mm slab perpendicular to the neck axis centred on its
narrowest section (the DXA femoral-neck box), voxels within twice the neck radius of
the axis; ``total_hip`` — the neck, trochanter and intertrochanteric regions of
:mod:`femurseg.analysis.regions` (head and shaft left out, as in DXA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from femurseg.analysis.geometry import Frame, HipGeometry
from femurseg.analysis.regions import REGION_LABELS, TOTAL_HIP
from femurseg.labels import periosteal_mask

__all__ = ["DxaProjection", "dxa_projection"]

PIXEL_MM = 1.0
NECK_BOX_MM = 15.0


@dataclass
class DxaProjection:
    """Projected areal density (g/cm², rows = shaft axis up, columns = in-plane lateral axis) and ROI masks."""

    abmd: np.ndarray
    rois: dict[str, np.ndarray]
    numbers: dict[str, dict[str, float]]


def dxa_projection(rho: np.ndarray, label: np.ndarray, regions: np.ndarray, image: sitk.Image,
                   geometry: HipGeometry) -> DxaProjection:
    """Project one femur (``label`` 0/1/2 of it, ``regions`` of it, density ``rho`` mg/cm³)."""
    bone = periosteal_mask(label)
    voxels = np.argwhere(bone)
    frame = Frame.of(image)
    # each voxel is split into sub-points no wider than 0.7 pixel, so that the projection has no holes
    steps = [max(1, int(np.ceil(s / (0.7 * PIXEL_MM)))) for s in frame.spacing[::-1]]
    offsets = np.stack(np.meshgrid(*[(np.arange(k) + 0.5) / k - 0.5 for k in steps], indexing="ij"), -1).reshape(-1, 3)
    zyx = (voxels[:, None, :] + offsets[None]).reshape(-1, 3)
    owner = np.repeat(np.arange(len(voxels)), len(offsets))
    p = frame.to_physical(zyx)
    g = geometry
    n = np.cross(g.neck_axis, g.shaft_axis)
    n /= np.linalg.norm(n)
    up = g.shaft_axis
    across = np.cross(n, up)
    rel = p - g.head_centre_mm
    a, b = rel @ across, rel @ up
    col = np.floor((a - a.min()) / PIXEL_MM).astype(int)
    row = np.floor((b.max() - b) / PIXEL_MM).astype(int)
    shape = (int(row.max()) + 1, int(col.max()) + 1)
    voxel_mm3 = float(abs(np.linalg.det(frame.matrix)))
    mass_mg = rho[tuple(voxels.T)].astype(np.float64)[owner] * voxel_mm3 / 1000.0 / len(offsets)
    pixel_cm2 = PIXEL_MM * PIXEL_MM / 100.0
    total = np.zeros(shape)
    np.add.at(total, (row, col), mass_mg)
    abmd = total / 1000.0 / pixel_cm2  # g/cm²
    t = -(rel @ g.neck_axis)
    radial = np.linalg.norm(rel + np.outer(t, g.neck_axis), axis=1)
    r_neck = float(np.sqrt(g.min_neck_area_mm2 / np.pi))
    region_of = regions[tuple(voxels.T)][owner]
    selections = {
        "neck": (np.abs(t - g.neck_section_mm) <= NECK_BOX_MM / 2) & (radial <= 2.0 * r_neck),
        "total_hip": np.isin(region_of, [REGION_LABELS[r] for r in TOTAL_HIP]),
    }
    rois, numbers = {}, {}
    for name, chosen in selections.items():
        hit = np.zeros(shape, bool)
        hit[row[chosen], col[chosen]] = True
        area = float(hit.sum()) * pixel_cm2
        bmc = float(mass_mg[chosen].sum()) / 1000.0
        rois[name] = hit
        numbers[name] = {"area_cm2": round(area, 3), "bmc_g": round(bmc, 4),
                         "abmd_g_cm2": round(bmc / area, 4) if area > 0 else None}
    return DxaProjection(abmd, rois, numbers)


def dxa_numbers(projection: DxaProjection) -> dict[str, Any]:
    """The ``report.json`` entry."""
    return projection.numbers
