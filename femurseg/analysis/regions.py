"""Hip regions of one femur from its geometry: head, neck, trochanter, intertrochanteric, shaft.

Coordinates of a femur voxel ``p`` (:class:`~femurseg.analysis.geometry.HipGeometry`):
``t = (c - p) · u`` along the neck axis from the head centre ``c`` (``u`` points to
the head), ``rho`` its distance from the neck axis, ``h = (o - p) · s`` its depth
below the neck–shaft crossing ``o`` along the shaft axis ``s`` (proximal), and
``l = (p - o) · lat`` its lateral offset in the neck–shaft plane. With head radius
``R``, neck radius ``r_n = sqrt(min_neck_area / pi)`` and shaft radius ``r_s``:

====================  ===========================================================
region (label)        voxels
====================  ===========================================================
head (1)              ``t <= sqrt(R² - r_n²)`` (beyond the head–neck junction, where
                      a sphere of radius R meets a neck of radius r_n) and within
                      1.2 R of the centre
neck (2)              not head, ``t <=`` the neck base (where the neck's section
                      reaches twice its narrowest area) and ``rho <= 1.6 r_n``
shaft (5)             not head or neck, ``h >=`` the shaft start (the first section
                      ⟂ the shaft axis below the crossing whose area is under 1.3 ×
                      the shaft's)
trochanter (3)        the rest with ``l >= 0.5 r_s`` and ``h <= 0.5`` shaft start
                      (the greater trochanter: lateral and high)
intertrochanteric (4) the rest (between neck, trochanter and shaft, with the lesser
                      trochanter)
====================  ===========================================================

``total_hip`` = neck ∪ trochanter ∪ intertrochanteric (the DXA total hip, which
leaves out the head and the shaft).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from femurseg.analysis.geometry import Frame, HipGeometry

__all__ = ["REGION_LABELS", "TOTAL_HIP", "region_map"]

#: region name -> value in ``regions.nii.gz``
REGION_LABELS: dict[str, int] = {"head": 1, "neck": 2, "trochanter": 3, "intertrochanteric": 4, "shaft": 5}
#: the regions whose union is reported as ``total_hip``
TOTAL_HIP: tuple[str, ...] = ("neck", "trochanter", "intertrochanteric")


def region_map(mask: np.ndarray, image: sitk.Image, geometry: HipGeometry) -> np.ndarray:
    """``uint8`` region labels (:data:`REGION_LABELS`, 0 outside ``mask``) of one femur, ``(Z, Y, X)``."""
    out = np.zeros(mask.shape, np.uint8)
    zyx = np.argwhere(mask)
    if not len(zyx):
        return out
    p = Frame.of(image).to_physical(zyx)
    g = geometry
    u, s = g.neck_axis, g.shaft_axis
    t = (g.head_centre_mm - p) @ u
    radial = np.linalg.norm((p - g.head_centre_mm) - np.outer((p - g.head_centre_mm) @ u, u), axis=1)
    r_neck = float(np.sqrt(g.min_neck_area_mm2 / np.pi))
    head_plane = float(np.sqrt(max(g.head_radius_mm ** 2 - r_neck ** 2, 0.0)))
    h = (g.crossing_mm - p) @ s
    lateral = -u - (-u @ s) * s
    lateral /= max(float(np.linalg.norm(lateral)), 1e-9)
    ell = (p - g.crossing_mm) @ lateral
    distance = np.linalg.norm(p - g.head_centre_mm, axis=1)
    region = np.full(len(p), REGION_LABELS["intertrochanteric"], np.uint8)
    trochanter = (ell >= 0.5 * g.shaft_radius_mm) & (h <= 0.5 * g.shaft_start_mm)
    region[trochanter] = REGION_LABELS["trochanter"]
    region[h >= g.shaft_start_mm] = REGION_LABELS["shaft"]
    neck = (t <= g.neck_base_mm) & (radial <= 1.6 * r_neck)
    region[neck] = REGION_LABELS["neck"]
    head = (t <= head_plane) & (distance <= 1.2 * g.head_radius_mm)
    region[head] = REGION_LABELS["head"]
    out[tuple(zyx.T)] = region
    return out
