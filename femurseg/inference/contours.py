"""Per-slice contours of the label map as polygons in physical millimetres.

Each axial slice (constant third image index ``k``) of the periosteal mask
(label ≥ 1) and of the endosteal mask (label = 2) is traced with marching squares
(:func:`skimage.measure.find_contours` at level 0.5 on the binary slice, padded so
that every polygon is closed). Vertices lie half-way between inside and outside
pixel centres; they are mapped from continuous index ``(i, j, k)`` to physical
``(x, y, z)`` mm with the image's origin, spacing and direction (SimpleITK's LPS
convention), so contours stay correct for oblique or flipped scans.

:func:`contours_to_mask` is the inverse (even-odd polygon filling with
:func:`skimage.draw.polygon`): a mask's contours fill back to the same mask.

Examples
--------
>>> label = np.zeros((3, 10, 10), np.uint8); label[1, 2:8, 2:8] = 1; label[1, 4:6, 4:6] = 2
>>> data = label_contours(label, geometry_of(sitk.GetImageFromArray(label)))
>>> [(s["index"], len(s["periosteal"]), len(s["endosteal"])) for s in data["slices"]]
[(1, 1, 1)]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk
from skimage.draw import polygon as fill_polygon
from skimage.measure import find_contours

from femurseg.labels import endosteal_mask, periosteal_mask

__all__ = ["Geometry", "geometry_of", "slice_polygons", "label_contours", "contours_to_mask", "CONTOUR_FORMAT"]

CONTOUR_FORMAT = 1
Geometry = dict[str, list[float] | list[int]]
_DECIMALS = 4  # 0.1 µm: exact enough to fill back to the same pixels


def geometry_of(image: sitk.Image) -> Geometry:
    """Size, spacing, origin and direction of an image as plain lists."""
    return {
        "size": list(image.GetSize()),
        "spacing": list(image.GetSpacing()),
        "origin": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
    }


def _index_to_physical(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Matrix ``A`` and offset ``b`` with ``physical = A @ index + b``."""
    direction = np.asarray(geometry["direction"], float).reshape(3, 3)
    return direction * np.asarray(geometry["spacing"], float), np.asarray(geometry["origin"], float)


def slice_polygons(mask_2d: np.ndarray) -> list[np.ndarray]:
    """Closed marching-squares polygons ``(N, 2)`` of a 2D mask in ``(row, col)`` index units.

    The last vertex repeats the first. Diagonal-only neighbours are separate polygons.
    """
    padded = np.pad(np.asarray(mask_2d, bool), 1).astype(np.float32)
    return [c - 1.0 for c in find_contours(padded, 0.5, fully_connected="low")]


def label_contours(label: np.ndarray, geometry: Geometry) -> dict[str, Any]:
    """Periosteal and endosteal polygons of every axial slice that holds bone.

    Parameters
    ----------
    label
        ``uint8`` 0/1/2 map ``(z, y, x)`` (``sitk.GetArrayFromImage`` order).
    geometry
        The label image's geometry (:func:`geometry_of`).

    Returns
    -------
    dict
        ``{"format_version", "coordinates", "geometry", "slices": [{"index": k,
        "periosteal": [polygon, ...], "endosteal": [...]}]}``; a polygon is a list of
        ``[x, y, z]`` mm, closed (last vertex = first).
    """
    matrix, offset = _index_to_physical(geometry)
    slices = []
    for k in np.flatnonzero(periosteal_mask(label).any(axis=(1, 2))):
        entry: dict[str, Any] = {"index": int(k)}
        for name, mask in (("periosteal", periosteal_mask(label[k])), ("endosteal", endosteal_mask(label[k]))):
            polygons = []
            for rows_cols in slice_polygons(mask):
                index = np.column_stack([rows_cols[:, 1], rows_cols[:, 0], np.full(len(rows_cols), float(k))])
                points = index @ matrix.T + offset
                polygons.append(np.round(points, _DECIMALS).tolist())
            entry[name] = polygons
        slices.append(entry)
    return {
        "format_version": CONTOUR_FORMAT,
        "coordinates": "physical mm, (x, y, z) in the scan's LPS frame; one entry per axial slice index k",
        "geometry": geometry,
        "slices": slices,
    }


def contours_to_mask(data: dict[str, Any], which: str = "periosteal", geometry: Geometry | None = None) -> np.ndarray:
    """Fill the polygons of :func:`label_contours` back into a boolean ``(z, y, x)`` mask.

    Pixels whose centre lies inside an odd number of a slice's polygons are set
    (even-odd rule, so holes stay holes).

    Parameters
    ----------
    data
        Output of :func:`label_contours` (or ``contours.json`` loaded).
    which
        ``periosteal`` or ``endosteal``.
    geometry
        Grid to fill; default the one stored in ``data``.
    """
    geometry = geometry or data["geometry"]
    size = [int(s) for s in geometry["size"]]
    mask = np.zeros(size[::-1], bool)
    matrix, offset = _index_to_physical(geometry)
    inverse = np.linalg.inv(matrix)
    for entry in data["slices"]:
        k = int(entry["index"])
        for points in entry[which]:
            index = (np.asarray(points, float) - offset) @ inverse.T
            rows, cols = fill_polygon(index[:, 1], index[:, 0], shape=mask.shape[1:])
            mask[k, rows, cols] ^= True
    return mask
