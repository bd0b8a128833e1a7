"""Contours: marching squares in physical mm, and back to the same masks."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from femurseg.inference.contours import contours_to_mask, geometry_of, label_contours, slice_polygons


def _label(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:12, :30, :26]
    radius = 9 + rng.normal(0, 1.2, (12, 30, 26))         # a rough, irregular outline
    outer = (y - 15) ** 2 + (x - 13) ** 2 <= radius**2
    inner = ((y - 15) ** 2 + (x - 12) ** 2 <= 25) & outer
    inner[:, 15, 12] = False                                # a hole inside the endosteal region
    label = np.where(inner, 2, np.where(outer, 1, 0)).astype(np.uint8)
    label[:, 0, :3] = 1                                     # touches the field of view's edge
    label[0] = 0
    return label


def _image(label: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(label)
    image.SetSpacing((0.7, 0.9, 2.5))
    image.SetOrigin((-40.0, 12.5, 300.0))
    rotation = sitk.VersorTransform((0.2, -0.1, 0.3), 0.4).GetMatrix()  # oblique
    image.SetDirection(rotation)
    return image


def test_round_trip_to_masks_on_an_oblique_grid():
    label = _label()
    image = _image(label)
    data = json.loads(json.dumps(label_contours(label, geometry_of(image))))
    assert [s["index"] for s in data["slices"]] == list(range(1, 12))
    assert (contours_to_mask(data, "periosteal") == (label >= 1)).all()
    assert (contours_to_mask(data, "endosteal") == (label == 2)).all()


def test_vertices_are_physical_points_of_the_slice():
    label = _label(1)
    image = _image(label)
    data = label_contours(label, geometry_of(image))
    entry = data["slices"][3]
    point = np.asarray(entry["periosteal"][0][0])
    index = image.TransformPhysicalPointToContinuousIndex(point.tolist())
    assert abs(index[2] - entry["index"]) < 1e-4   # vertices are rounded to 0.1 µm
    polygon = np.asarray(entry["periosteal"][0])
    assert np.allclose(polygon[0], polygon[-1])               # closed


def test_marching_squares_half_pixel_outline():
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:4] = True
    (polygon,) = slice_polygons(mask)
    assert polygon[:, 0].min() == 0.5 and polygon[:, 0].max() == 3.5
