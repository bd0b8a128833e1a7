"""Measurements on synthetic subjects: what the tests and ``docs/synthetic.md`` report.

Everything here is measured on the written outputs (image, label, tissue map),
using the subject's meta only to locate the femoral head and to rebuild the
region map of the femur (head, superior neck, calcar, trochanter, shaft).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from femurseg.data.synthetic.body import Tissue
from femurseg.data.synthetic.femur import REGIONS, FemurGeometry, FemurParams
from femurseg.data.synthetic.grid import Grid
from femurseg.data.synthetic.scanner import rotation_matrix

if TYPE_CHECKING:
    from femurseg.data.synthetic import SyntheticCase

__all__ = ["tissue_hu", "cortical_thickness", "head_radius", "region_map", "true_axes"]


def _left_arrays(case: SyntheticCase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, label and tissue arrays ``(Z, Y, X)`` oriented as a left hip."""
    image = sitk.GetArrayFromImage(case.image)
    label = sitk.GetArrayFromImage(case.label)
    tissue = case.tissue
    if case.meta["side"] == "right":
        return image[:, :, ::-1], label[:, :, ::-1], tissue[:, :, ::-1]
    return image, label, tissue


def _left_origin(case: SyntheticCase) -> np.ndarray:
    origin = np.asarray(case.image.GetOrigin(), dtype=np.float64)
    if case.meta["side"] == "right":
        nx, sx = case.image.GetSize()[0], case.image.GetSpacing()[0]
        origin[0] = -(origin[0] + (nx - 1) * sx)
    return origin


def tissue_hu(case: SyntheticCase, erode: int = 1) -> dict[str, tuple[float, float, int]]:
    """Mean, standard deviation and voxel count of the image per tissue.

    Each tissue's voxels are eroded by ``erode`` voxels first, so that partial
    volume at its border does not enter the statistics.
    """
    image, _, tissue = _left_arrays(case)
    out: dict[str, tuple[float, float, int]] = {}
    for code, name in enumerate(Tissue.NAMES):
        mask = tissue == code
        if erode:
            mask = ndimage.binary_erosion(mask, iterations=erode)
        if mask.sum() >= 10:
            values = image[mask].astype(np.float64)
            out[name] = (float(values.mean()), float(values.std()), int(mask.sum()))
    return out


def region_map(case: SyntheticCase) -> np.ndarray:
    """Femur region code per voxel (``REGIONS`` order, 255 = none), left-hip orientation."""
    meta = case.meta
    femur = FemurGeometry(FemurParams(**meta["femur"]))
    tilt = rotation_matrix(tuple(meta["scanner"]["tilt"]))  # type: ignore[arg-type]
    grid = Grid(origin=_left_origin(case), spacing=np.asarray(case.image.GetSpacing(), dtype=np.float64),
                size=np.asarray(case.image.GetSize()), tilt=tilt)
    box = (slice(0, grid.shape[0]), slice(0, grid.shape[1]), slice(0, grid.shape[2]))
    _, label, _ = _left_arrays(case)
    flat = np.flatnonzero(label.ravel() == 1)
    regions = np.full(label.size, 255, dtype=np.uint8)
    regions[flat] = femur.regions(grid.points(femur.frame(tilt), box, flat))
    return regions.reshape(label.shape)


def cortical_thickness(case: SyntheticCase) -> dict[str, dict[str, Any]]:
    """Cortical thickness per femur region, measured from the label.

    For every cortical voxel, the distance to the nearest background voxel plus
    the distance to the nearest trabecular voxel, minus the in-plane voxel size,
    estimates the local thickness of the cortex (unbiased on average for a flat
    shell whose normal lies in-plane; a cortex thinner than a voxel reads as
    about one voxel where it is hit and is missed elsewhere). Reported per region: median, 10th and 90th percentile (mm) and the
    number of voxels.
    """
    _, label, _ = _left_arrays(case)
    spacing = case.image.GetSpacing()[::-1]
    outside = ndimage.distance_transform_edt(label != 0, sampling=spacing)
    inside = ndimage.distance_transform_edt(label != 2, sampling=spacing)
    thickness = outside + inside - float(min(spacing))
    regions = region_map(case)
    out: dict[str, dict[str, Any]] = {}
    for code, name in enumerate(REGIONS):
        values = thickness[regions == code]
        if values.size:
            p10, p50, p90 = np.percentile(values, [10, 50, 90])
            out[name] = {"median": float(p50), "p10": float(p10), "p90": float(p90), "n": int(values.size)}
    return out


def head_radius(case: SyntheticCase) -> float:
    """Femoral head radius (mm): distance from the head centre to the outside of the label."""
    _, label, _ = _left_arrays(case)
    spacing = np.asarray(case.image.GetSpacing(), dtype=np.float64)
    origin = _left_origin(case)
    exact = (np.asarray(case.meta["head_centre_mm"]) - origin) / spacing
    index = np.rint(exact).astype(int)
    box = tuple(slice(max(i - 60, 0), i + 60) for i in index[::-1])
    sub = label[box] > 0
    edt = ndimage.distance_transform_edt(sub, sampling=spacing[::-1])
    centre = tuple(int(i - b.start) for i, b in zip(index[::-1], box))
    # The voxel nearest the centre sees the surface closer by at most its offset.
    return float(edt[centre]) + float(np.linalg.norm((exact - index) * spacing))


def true_axes(meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """World (LPS) unit vectors of the rendered neck tube's axis (towards the head) and the shaft (proximal).

    The neck tube runs from the head centre to ``junction + 4 mm * shaft_dir``, about 3° off
    ``neck_dir`` (the direction the meta's neck-shaft angle describes). The truth that hip
    geometry (:mod:`femurseg.analysis.geometry`) is checked against.
    """
    femur = FemurGeometry(FemurParams(**meta["femur"]))
    to_world = rotation_matrix(tuple(meta["scanner"]["tilt"])) @ femur.pose
    neck = to_world @ (femur.p.neck_length * femur.neck_dir - 4.0 * femur.shaft_dir)
    shaft = -(to_world @ femur.shaft_dir)
    if meta["side"] == "right":
        neck, shaft = neck * [-1, 1, 1], shaft * [-1, 1, 1]
    return neck / np.linalg.norm(neck), shaft
