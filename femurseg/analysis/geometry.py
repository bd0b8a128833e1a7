"""Hip geometry of one femur's mask: head sphere, neck and shaft axes, angles, neck section.

All coordinates are the scan's physical LPS millimetres. Steps:

1. **Head**: the most superior point whose distance to the surface is at least 70 %
   of the femur's largest (the head and the intertrochanteric mass are the thickest
   parts; the head is above), moved to the local maximum within 15 mm, starts a sphere fit to the periosteal
   surface (marching cubes of the mask at 0.5): least-squares sphere over the surface
   points within 15 % of the current radius, repeated with the points within
   ``max(1.5 mm, 1.5 voxels)`` of the sphere, so that the neck's fillet drops out.
2. **Shaft axis**: a line through the centroids of the axial sections of the
   lowest 15 mm of the femur (at most 30 % of its height below the head centre; higher
   up, the trochanters blend into the shaft and tilt the centroids),
   oriented proximally.
3. **Neck axis**: from the head centre towards the centroid of the narrowest
   cross-section of the neck: sections perpendicular to the current axis every
   1 mm from the head's edge outwards (the section is the part of the mask connected
   to the axis point within 35 mm), the axis then redrawn through the narrowest
   section's centroid, until it moves less than 0.1°.
4. **Angles and lengths**: neck-shaft angle = 3D angle between the neck axis
   (towards the head) and the shaft axis (distal); neck axis length = length of the
   femur along the neck axis line, from the head's apex to the lateral cortex
   (the inside run through the head centre); minimal neck cross-sectional area =
   area of the narrowest section (integral, label ≥ 1).

The side follows from anatomy: the head is medial, so for a left femur (patient's
left is +x) the head lies at smaller x than the femur's centre of mass below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from femurseg.errors import AnalysisError

__all__ = ["HipGeometry", "hip_geometry", "Frame"]


@dataclass
class Frame:
    """Index ↔ physical mapping of a grid (``(x, y, z)`` index order, LPS mm)."""

    origin: np.ndarray
    matrix: np.ndarray  # direction @ diag(spacing): physical = origin + matrix @ index_xyz
    inverse: np.ndarray
    spacing: np.ndarray

    @classmethod
    def of(cls, image: sitk.Image) -> Frame:
        direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
        spacing = np.asarray(image.GetSpacing(), float)
        matrix = direction @ np.diag(spacing)
        return cls(np.asarray(image.GetOrigin(), float), matrix, np.linalg.inv(matrix), spacing)

    def to_physical(self, zyx: np.ndarray) -> np.ndarray:
        """``(N, 3)`` array indices ``(z, y, x)`` → ``(N, 3)`` physical ``(x, y, z)``."""
        return self.origin + np.asarray(zyx, float)[:, ::-1] @ self.matrix.T

    def to_index(self, xyz: np.ndarray) -> np.ndarray:
        """``(..., 3)`` physical → ``(..., 3)`` continuous array indices ``(z, y, x)``."""
        return ((np.asarray(xyz, float) - self.origin) @ self.inverse.T)[..., ::-1]


@dataclass
class HipGeometry:
    """Landmarks of one femur (LPS mm, unit vectors, degrees, mm²)."""

    side: str
    head_centre_mm: np.ndarray
    head_radius_mm: float
    neck_axis: np.ndarray  # unit, from the neck towards the head
    shaft_axis: np.ndarray  # unit, proximal
    shaft_point_mm: np.ndarray
    neck_shaft_angle_deg: float
    neck_axis_length_mm: float
    min_neck_area_mm2: float
    neck_section_mm: float  # distance of the narrowest section from the head centre, along -neck_axis
    neck_base_mm: float  # where the neck widens into the trochanters (2 × the narrowest area)
    shaft_start_mm: float  # along the shaft axis from the neck–shaft crossing, where the shaft begins
    shaft_radius_mm: float
    crossing_mm: np.ndarray  # point of the shaft axis closest to the neck axis
    fit: dict[str, Any] = field(default_factory=dict)

    def landmarks(self) -> dict[str, Any]:
        """The ``landmarks.json`` entry of this femur."""
        r = lambda v, n=3: [round(float(c), n) for c in v]  # noqa: E731
        return {
            "side": self.side, "head_centre_mm": r(self.head_centre_mm, 2), "head_radius_mm": round(self.head_radius_mm, 2),
            "neck_axis": r(self.neck_axis, 5), "shaft_axis": r(self.shaft_axis, 5),
            "shaft_point_mm": r(self.shaft_point_mm, 2),
            "neck_shaft_angle_deg": round(self.neck_shaft_angle_deg, 2),
            "neck_axis_length_mm": round(self.neck_axis_length_mm, 2),
            "min_neck_area_mm2": round(self.min_neck_area_mm2, 1),
            "min_neck_section_centre_mm": r(self.head_centre_mm - self.neck_section_mm * self.neck_axis, 2),
            "fit": self.fit,
        }


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / max(float(np.linalg.norm(v)), 1e-12)


def _basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane perpendicular to ``normal``."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    a = _unit(np.cross(normal, helper))
    return a, np.cross(normal, a)


def _section(mask: np.ndarray, frame: Frame, point: np.ndarray, normal: np.ndarray, reach: float = 35.0,
             step: float = 0.5) -> tuple[float, np.ndarray]:
    """Area (mm²) and centroid of the mask's section through ``point`` ⟂ ``normal`` connected to ``point``."""
    a, b = _basis(normal)
    grid = np.arange(-reach, reach + step / 2, step)
    u, v = np.meshgrid(grid, grid, indexing="ij")
    xyz = point + u[..., None] * a + v[..., None] * b
    idx = frame.to_index(xyz.reshape(-1, 3)).T
    inside = ndimage.map_coordinates(mask, idx, order=1, mode="constant", cval=0.0).reshape(u.shape) >= 0.5
    centre = len(grid) // 2
    components, _ = ndimage.label(inside)
    core = components[centre - 2:centre + 3, centre - 2:centre + 3]
    labels = core[core > 0]
    if labels.size == 0:
        return 0.0, point
    keep = components == np.bincount(labels).argmax()
    area = float(keep.sum()) * step * step
    centroid = xyz[keep].mean(axis=0)
    return area, centroid


def _head(mask: np.ndarray, frame: Frame) -> tuple[np.ndarray, float, dict[str, Any]]:
    from skimage.measure import marching_cubes

    spacing_zyx = frame.spacing[::-1]
    edt = ndimage.distance_transform_edt(mask, sampling=spacing_zyx)
    deepest = float(edt.max())
    if deepest < 5.0:
        raise AnalysisError(f"no femoral head found: the thickest part of the femur is {deepest:.1f} mm from its "
                            "surface (a head has a radius of about 20-26 mm): is this a proximal femur?")
    # the head is the most superior of the thick parts (the intertrochanteric mass can be as thick)
    thick = np.argwhere(edt >= 0.7 * deepest)
    heights = frame.to_physical(thick)[:, 2]
    top = thick[int(np.argmax(heights))]
    reach0 = np.ceil(15.0 / spacing_zyx).astype(int)
    lo0, hi0 = np.maximum(top - reach0, 0), np.minimum(top + reach0 + 1, mask.shape)
    local = edt[lo0[0]:hi0[0], lo0[1]:hi0[1], lo0[2]:hi0[2]]
    peak = np.array(np.unravel_index(int(np.argmax(local)), local.shape)) + lo0
    centre = frame.to_physical(peak[None])[0]
    radius = float(edt[tuple(peak)])
    reach = np.ceil(1.8 * radius / spacing_zyx).astype(int)
    lo = np.maximum(peak - reach, 0)
    hi = np.minimum(peak + reach + 1, mask.shape)
    crop = np.pad(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32), 1)
    verts, *_ = marching_cubes(crop, 0.5)
    points = frame.to_physical(verts - 1 + lo)
    band = 0.15
    used = 0
    for _ in range(8):
        d = np.linalg.norm(points - centre, axis=1)
        tolerance = band * radius
        near = np.abs(d - radius) < tolerance
        if near.sum() < 50:
            break
        p = points[near]
        design = np.column_stack([2 * p, np.ones(len(p))])
        solution, *_ = np.linalg.lstsq(design, (p * p).sum(axis=1), rcond=None)
        new_centre = solution[:3]
        radius = float(np.sqrt(max(solution[3] + new_centre @ new_centre, 1.0)))
        moved = float(np.linalg.norm(new_centre - centre))
        centre = new_centre
        used = int(near.sum())
        band = max(1.5, 1.5 * float(frame.spacing.max())) / radius
        if moved < 0.01:
            break
    d = np.linalg.norm(points - centre, axis=1)
    near = np.abs(d - radius) < band * radius
    rms = float(np.sqrt(np.mean((d[near] - radius) ** 2))) if near.any() else float("nan")
    coverage = _coverage(points[near] - centre)
    limit = 1.0 + 0.1 * float(frame.spacing.max())
    if not (rms <= limit and coverage >= 0.45 and 12.0 <= radius <= 40.0):
        raise AnalysisError(f"no femoral head found: the best sphere (radius {radius:.1f} mm) fits the surface with "
                            f"an RMS of {rms:.2f} mm (at most {limit:.2f}) and covers {100 * coverage:.0f} % of its "
                            f"directions (at least 45 %): is the head in the label map?")
    return centre, radius, {"head_points": used, "head_rms_mm": round(rms, 3), "head_coverage": round(coverage, 3)}


def _coverage(vectors: np.ndarray, bins: int = 200) -> float:
    """Fraction of ``bins`` evenly spread directions that some vector points to (within their spacing)."""
    if len(vectors) == 0:
        return 0.0
    k = np.arange(bins) + 0.5
    polar, azimuth = np.arccos(1 - 2 * k / bins), np.pi * (1 + 5 ** 0.5) * k
    directions = np.column_stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)])
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    nearest = np.argmax(units[:: max(1, len(units) // 20000)] @ directions.T, axis=1)
    return float(len(np.unique(nearest))) / bins


def _shaft(mask: np.ndarray, frame: Frame, head_z: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Point, proximal unit direction and mean radius of the shaft from the lowest slices."""
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    slice_z = frame.to_physical(np.column_stack([zs, np.zeros_like(zs), np.zeros_like(zs)]))[:, 2]
    bottom = slice_z.min()
    span = min(15.0, 0.3 * max(head_z - bottom, 1.0))
    chosen = zs[(slice_z >= bottom + 2.0) & (slice_z <= bottom + 2.0 + span)]
    if chosen.size < 3:
        chosen = zs[np.argsort(slice_z)[:max(3, min(len(zs), 3))]]
    centroids, areas = [], []
    for k in chosen:
        comp, n = ndimage.label(mask[k])
        if n == 0:
            continue
        largest = comp == (np.bincount(comp.ravel())[1:].argmax() + 1)
        j, i = np.nonzero(largest)
        centroids.append(frame.to_physical(np.array([[k, j.mean(), i.mean()]]))[0])
        areas.append(largest.sum() * frame.spacing[0] * frame.spacing[1])
    centroids = np.asarray(centroids)
    if len(centroids) < 2:
        raise AnalysisError("no femoral shaft found below the trochanters: the label map's femur is too short")
    point = centroids.mean(axis=0)
    _, _, vt = np.linalg.svd(centroids - point)
    direction = vt[0] if len(centroids) >= 3 else _unit(centroids[-1] - centroids[0])
    if direction[2] < 0:
        direction = -direction
    radius = float(np.sqrt(np.median(areas) / np.pi))
    return point, _unit(direction), radius


def _closest_on_line(point: np.ndarray, direction: np.ndarray, other: np.ndarray, other_dir: np.ndarray) -> np.ndarray:
    """Point of line (point, direction) closest to line (other, other_dir)."""
    w0 = point - other
    a, b, c = direction @ direction, direction @ other_dir, other_dir @ other_dir
    d, e = direction @ w0, other_dir @ w0
    denom = a * c - b * b
    t = (b * e - c * d) / denom if abs(denom) > 1e-9 else 0.0
    return point + t * direction


def hip_geometry(mask: np.ndarray, image: sitk.Image, side: str | None = None) -> HipGeometry:
    """Landmarks of the femur in ``mask`` (``(Z, Y, X)`` bool, periosteal) on ``image``'s grid.

    Raises
    ------
    AnalysisError
        No head (nothing thicker than 5 mm) or no shaft below it.
    """
    nonzero = np.nonzero(mask)
    if not nonzero[0].size:
        raise AnalysisError("no femur found: the mask is empty")
    lo = np.array([max(int(a.min()) - 2, 0) for a in nonzero])
    hi = np.array([min(int(a.max()) + 3, n) for a, n in zip(nonzero, mask.shape)])
    mask = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    full = Frame.of(image)
    frame = Frame(full.origin + full.matrix @ lo[::-1].astype(float), full.matrix, full.inverse, full.spacing)
    fmask = mask.astype(np.float32)
    centre, radius, fit = _head(mask, frame)
    shaft_point, shaft_up, shaft_radius = _shaft(mask, frame, float(centre[2]))
    # initial neck direction: from the head centre to the femur's centroid between 1.3 and 2.5 radii
    zyx = np.argwhere(mask)
    pts = frame.to_physical(zyx[:: max(1, len(zyx) // 200000)])
    d = np.linalg.norm(pts - centre, axis=1)
    shell = pts[(d > 1.3 * radius) & (d < 2.5 * radius)]
    if len(shell) < 10:
        raise AnalysisError("no femoral neck found next to the head")
    neck = _unit(centre - shell.mean(axis=0))  # towards the head
    best = (np.inf, 0.0)
    areas: list[tuple[float, float]] = []
    for _ in range(6):
        areas = [(t, *_section(fmask, frame, centre - t * neck, neck, step=0.75))
                 for t in np.arange(0.6 * radius, 0.6 * radius + 46.0, 2.0)]
        valid = [a for a in areas if a[1] > 0]
        if not valid:
            raise AnalysisError("no femoral neck found next to the head")
        t0 = min(valid, key=lambda a: a[1])[0]
        fine = [(t, *_section(fmask, frame, centre - t * neck, neck)) for t in np.arange(t0 - 2.0, t0 + 2.01, 0.5)]
        t_min, a_min, c_min = min((a for a in fine if a[1] > 0), key=lambda a: a[1])
        new = _unit(centre - c_min)
        angle = float(np.degrees(np.arccos(np.clip(new @ neck, -1.0, 1.0))))
        neck, best = new, (a_min, t_min)
        if angle < 0.1:
            break
    a_min, t_min = best
    base = next((t for t, a, _ in areas if t > t_min and a > 2.0 * a_min), areas[-1][0])
    # neck axis length: the inside run of the neck line through the head centre
    ts = np.arange(-2.0 * radius, 3.0 * radius + 120.0, 0.5)
    idx = frame.to_index(centre[None] - ts[:, None] * neck[None]).T
    inside = ndimage.map_coordinates(fmask, idx, order=1, mode="constant") >= 0.5
    start = int(np.searchsorted(ts, 0.0))
    lo = start
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    hi = start
    gap = 0
    while hi + 1 < len(ts) and (inside[hi + 1] or gap < 4):
        gap = 0 if inside[hi + 1] else gap + 1
        hi += 1
    while hi > start and not inside[hi]:
        hi -= 1
    length = float(ts[hi] - ts[lo]) + 0.5
    angle = float(np.degrees(np.arccos(np.clip(neck @ -shaft_up, -1.0, 1.0))))
    crossing = _closest_on_line(shaft_point, shaft_up, centre, neck)
    shaft_start = _shaft_start(fmask, frame, crossing, shaft_up, shaft_radius)
    if side is None:
        side = "left" if centre[0] < pts[:, 0].mean() else "right"
    fit.update({"neck_iterations_converged": True, "shaft_radius_mm": round(shaft_radius, 2)})
    return HipGeometry(side, centre, radius, neck, shaft_up, shaft_point, angle, length, a_min, float(t_min),
                       float(base), float(shaft_start), shaft_radius, crossing, fit)


def _shaft_start(fmask: np.ndarray, frame: Frame, crossing: np.ndarray, up: np.ndarray, radius: float) -> float:
    """Distance below the neck–shaft crossing (along the shaft axis) where sections become shaft-like."""
    shaft_area = np.pi * radius * radius
    for h in np.arange(10.0, 150.0, 2.0):
        area, _ = _section(fmask, frame, crossing - h * up, up, reach=45.0, step=1.0)
        if 0 < area < 1.3 * shaft_area:
            return float(h)
    return 150.0
