"""Cortical thickness on the periosteal surface: between the two contours, and by a profile fit.

The periosteal surface (label ≥ 1) and the endosteal surface (label 2) are
triangulated by marching cubes at 0.5 (scikit-image) on the scan's grid; the
thickness at each periosteal vertex is its distance to the nearest endosteal
vertex (a k-d tree). Vertices on the planes where the femur is cut by the scan's
first or last slice carry no thickness (``NaN``), nor do vertices with no
endosteal surface within 15 mm.

This is the label map's thickness: it is only as good as the contours. A cortex
thinner than about one voxel (or than the scanner's blur) cannot be resolved by
contours and reads too thick. The second measurement, with ``profile`` settings,
fits a blurred three-plateau model to the CT profile along each vertex's outward
normal (cortical bone mapping, Treece and Gee; :mod:`femurseg.analysis.profile_fit`),
which resolves cortices below the blur.

Per region (:data:`~femurseg.analysis.regions.REGION_LABELS`, by the region of
the nearest femur voxel) the report gives the mean, median, 10th and 90th
percentile (mm) and the number of vertices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from femurseg.analysis.geometry import Frame
from femurseg.analysis.profile_fit import ProfileFit, ProfileFitSettings, profile_thickness
from femurseg.analysis.regions import REGION_LABELS
from femurseg.labels import endosteal_mask, periosteal_mask

__all__ = ["ThicknessMap", "cortical_thickness", "merge_surfaces"]

_REACH_MM = 15.0


@dataclass
class ThicknessMap:
    """Periosteal surface (LPS mm) with thickness (mm, NaN where undefined) and region per vertex.

    ``thickness`` is the distance between the contours; ``fitted`` the profile-fit
    thickness (``None`` when not measured) and ``fit`` its scan-wide model values.
    """

    points: np.ndarray
    triangles: np.ndarray
    thickness: np.ndarray
    region: np.ndarray
    fitted: np.ndarray | None = None
    fit: ProfileFit | None = None

    def summary(self, which: str = "contours") -> dict[str, dict[str, float | int | None]]:
        """Mean, median, p10, p90 and vertex count per region and over all vertices.

        ``which``: ``"contours"`` (distance between the contours) or ``"profile_fit"``.
        """
        if which not in ("contours", "profile_fit"):
            raise ValueError(f"which must be 'contours' or 'profile_fit', not {which!r}")
        if which == "profile_fit" and self.fitted is None:
            raise ValueError("the profile-fit thickness was not measured")
        thickness = self.thickness if which == "contours" else self.fitted
        assert thickness is not None
        out = {}
        names = {"all": None, **{name: value for name, value in REGION_LABELS.items()}}
        for name, value in names.items():
            chosen = np.isfinite(thickness) & (True if value is None else self.region == value)
            values = thickness[chosen]
            if values.size:
                p10, p50, p90 = np.percentile(values, [10, 50, 90])
                out[name] = {"mean_mm": round(float(values.mean()), 3), "median_mm": round(float(p50), 3),
                             "p10_mm": round(float(p10), 3), "p90_mm": round(float(p90), 3), "n": int(values.size)}
            else:
                out[name] = {"mean_mm": None, "median_mm": None, "p10_mm": None, "p90_mm": None, "n": 0}
        return out

    def write_vtp(self, path: str | os.PathLike[str]) -> Path:
        """The surface with ``thickness_mm`` and ``region`` point arrays, as VTK XML PolyData (no VTK needed)."""
        from femurseg.export.vtkxml import write_vtp

        point_data = {"thickness_mm": self.thickness.astype(np.float32), "region": self.region.astype(np.uint8)}
        if self.fitted is not None:
            point_data["thickness_fit_mm"] = self.fitted.astype(np.float32)
        return write_vtp(path, self.points, self.triangles, point_data=point_data,
                         field={"frame": "LPS", "units": "mm", "source": "femurseg analyze: cortical thickness"})


def _surface(mask: np.ndarray, lo: np.ndarray, frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from skimage.measure import marching_cubes

    verts, faces, *_ = marching_cubes(np.pad(mask.astype(np.float32), 1), 0.5)
    index = verts - 1 + lo
    return frame.to_physical(index), faces.astype(np.int64), index


def cortical_thickness(label: np.ndarray, image: sitk.Image, regions: np.ndarray | None = None,
                       profile: ProfileFitSettings | None = None) -> ThicknessMap:
    """Thickness map of the femur in ``label`` (``(Z, Y, X)`` 0/1/2 of one femur) on ``image``'s grid.

    With ``profile`` settings, ``image`` must be the scan in HU: the profile-fit thickness
    is measured too (:func:`~femurseg.analysis.profile_fit.profile_thickness`).
    """
    outer = periosteal_mask(label)
    inner = endosteal_mask(label)
    nonzero = np.nonzero(outer)
    lo = np.array([max(int(a.min()) - 1, 0) for a in nonzero])
    hi = np.array([min(int(a.max()) + 2, n) for a, n in zip(nonzero, label.shape)])
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    frame = Frame.of(image)
    points, triangles, index = _surface(outer[box], lo, frame)
    thickness = np.full(len(points), np.nan, np.float32)
    if inner[box].any():
        endo, _, _ = _surface(inner[box], lo, frame)
        distance, _ = cKDTree(endo).query(points, distance_upper_bound=_REACH_MM)
        thickness = np.where(np.isfinite(distance), distance, np.nan).astype(np.float32)
    # the planes where the scan cuts the femur are not bone surfaces
    zmin, zmax = int(nonzero[0].min()), int(nonzero[0].max())
    cut = np.zeros(len(points), bool)
    if zmin == 0:
        cut |= index[:, 0] <= 0.5
    if zmax == label.shape[0] - 1:
        cut |= index[:, 0] >= label.shape[0] - 1.5
    thickness[cut] = np.nan
    region = np.zeros(len(points), np.uint8)
    if regions is not None:
        grown = ndimage.grey_dilation(regions[box], size=(3, 3, 3))
        nearest = np.clip(np.rint(index - lo).astype(int), 0, np.array(grown.shape) - 1)
        region = grown[tuple(nearest.T)]
    fitted, fit = None, None
    if profile is not None and len(points):
        volume = sitk.GetArrayViewFromImage(image)

        def inside(xyz: np.ndarray) -> np.ndarray:
            idx = np.rint(frame.to_index(xyz)).astype(int)
            ok = np.all((idx >= 0) & (idx < np.array(outer.shape)), axis=1)
            out = np.zeros(len(xyz), bool)
            out[ok] = outer[tuple(idx[ok].T)]
            return out

        fallback = 0.5 * float(max(frame.spacing[0], frame.spacing[1]))
        fit = profile_thickness(volume, frame.to_index, points, triangles, inside, thickness,
                                fallback, profile)
        fitted = np.where(cut, np.nan, fit.thickness).astype(np.float32)
    return ThicknessMap(points, triangles, thickness, region, fitted, fit)


def merge_surfaces(maps: list[ThicknessMap]) -> ThicknessMap:
    """One surface of several femora (a bilateral scan's two)."""
    offsets = np.cumsum([0] + [len(m.points) for m in maps[:-1]])
    fitted = (np.concatenate([m.fitted for m in maps])  # type: ignore[misc]
              if all(m.fitted is not None for m in maps) else None)
    return ThicknessMap(np.concatenate([m.points for m in maps]),
                        np.concatenate([m.triangles + o for m, o in zip(maps, offsets)]),
                        np.concatenate([m.thickness for m in maps]), np.concatenate([m.region for m in maps]),
                        fitted)
