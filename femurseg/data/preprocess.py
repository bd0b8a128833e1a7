"""Preprocessing shared by training and inference: one function, one set of settings.

A scan is resampled (in one SimpleITK ``Resample``) onto an axis-aligned grid with
identity direction (the canonical orientation) and the target spacing, covering the
scan's whole physical extent; then its HU are clipped to a window and mapped
linearly to ``[-1, 1]``. Labels are resampled onto the same grid with
nearest-neighbour interpolation; for training, :func:`label_fractions` also
resamples the periosteal and endosteal masks linearly, as the image is, giving
each voxel's partial-volume fraction of both regions (the soft targets that let a
network trained at 2 mm place a surface between its voxel centres). The settings
travel inside every checkpoint, so inference always preprocesses exactly as
training did.

Examples
--------
>>> settings = Preprocessing(spacing=(1.5, 1.5, 1.5))
>>> image = preprocess_image(read_image("scan.nii.gz"), settings)   # doctest: +SKIP
>>> image.GetSpacing(), image.GetDirection()[:3]                    # doctest: +SKIP
((1.5, 1.5, 1.5), (1.0, 0.0, 0.0))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from femurseg.labels import endosteal_mask, periosteal_mask
from femurseg.voxels import bounding_box

__all__ = [
    "Preprocessing", "canonical_grid", "crop_to_label", "preprocess_image", "preprocess_label", "label_fractions",
    "scale_hu",
]


@dataclass(frozen=True)
class Preprocessing:
    """Preprocessing settings.

    Parameters
    ----------
    spacing
        Target voxel spacing in mm, in (x, y, z) order as SimpleITK reports it.
    hu_window
        HU clipped to ``[low, high]`` before scaling to ``[-1, 1]``.
    crop_margin_mm
        If not ``None``, training volumes are cropped to the femur's bounding box
        plus this margin (inference always sees the whole scan).
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    hu_window: tuple[float, float] = (-1000.0, 2000.0)
    crop_margin_mm: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.spacing) != 3 or any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be three positive numbers in mm, got {self.spacing}")
        low, high = self.hu_window
        if not low < high:
            raise ValueError(f"hu_window must be (low, high) with low < high, got {self.hu_window}")
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "hu_window", (float(low), float(high)))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, stored in checkpoints and cache keys."""
        data = asdict(self)
        data["spacing"] = list(self.spacing)
        data["hu_window"] = list(self.hu_window)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`."""
        return cls(
            spacing=tuple(data["spacing"]),
            hu_window=tuple(data["hu_window"]),
            crop_margin_mm=data.get("crop_margin_mm"),
            extra=dict(data.get("extra", {})),
        )


def canonical_grid(image: sitk.Image, spacing: tuple[float, float, float]) -> sitk.Image:
    """An empty axis-aligned image covering ``image``'s physical extent at ``spacing``."""
    size = np.array(image.GetSize())
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * (size - 1)
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])
    low, high = points.min(axis=0), points.max(axis=0)
    new_size = [max(1, int(math.floor((h - lo) / s + 1e-6)) + 1) for lo, h, s in zip(low, high, spacing)]
    grid = sitk.Image(new_size, sitk.sitkUInt8)
    grid.SetSpacing(spacing)
    grid.SetOrigin(low.tolist())
    grid.SetDirection(np.eye(3).ravel().tolist())
    return grid


def scale_hu(array: np.ndarray, hu_window: tuple[float, float]) -> np.ndarray:
    """Clip HU to ``hu_window`` and map linearly to ``[-1, 1]`` (float32)."""
    low, high = hu_window
    clipped = np.clip(array.astype(np.float32, copy=False), low, high)
    return ((clipped - (low + high) / 2) / ((high - low) / 2)).astype(np.float32)


def preprocess_image(image: sitk.Image, settings: Preprocessing) -> sitk.Image:
    """Resample a CT scan onto the canonical grid and scale its HU.

    Parameters
    ----------
    image
        3D CT in HU, any pixel type, any orientation.
    settings
        Target spacing and HU window.

    Returns
    -------
    SimpleITK.Image
        ``float32`` in ``[-1, 1]`` with identity direction and ``settings.spacing``.
    """
    grid = canonical_grid(image, settings.spacing)
    low = settings.hu_window[0]
    resampled = sitk.Resample(
        sitk.Cast(image, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, low, sitk.sitkFloat32
    )
    scaled = sitk.GetImageFromArray(scale_hu(sitk.GetArrayViewFromImage(resampled), settings.hu_window))
    scaled.CopyInformation(resampled)
    return scaled


def preprocess_label(label: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Resample a label map onto a preprocessed image's grid (nearest neighbour)."""
    return sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def label_fractions(label: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Partial-volume fractions of the periosteal and endosteal regions on ``reference``'s grid.

    The masks ``label ≥ 1`` and ``label = 2`` are resampled with linear
    interpolation, like the image, so a voxel straddling a surface gets the
    fraction the interpolated image shows there; the endosteal fraction never
    exceeds the periosteal one (linear interpolation keeps the nesting).

    Parameters
    ----------
    label
        0/1/2 label map on the scan's grid.
    reference
        The preprocessed image (target grid).

    Returns
    -------
    SimpleITK.Image
        2-component ``float32`` image in ``[0, 1]``: periosteal, endosteal fraction.
    """
    parts = [
        sitk.Resample(sitk.Cast(mask, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                      sitk.sitkFloat32)
        for mask in (periosteal_mask(label), endosteal_mask(label))
    ]
    return sitk.Compose(parts)


def crop_to_label(image: sitk.Image, label: sitk.Image, margin_mm: float) -> tuple[sitk.Image, sitk.Image, list[int]]:
    """Crop both to the bounding box of ``label > 0`` plus ``margin_mm`` (clipped to the image).

    Returns
    -------
    image, label, box
        The cropped images (their origins keep them in place) and the box as
        ``[x0, y0, z0, x1, y1, z1]`` voxel indices of the uncropped grid (end exclusive).
    """
    array = sitk.GetArrayViewFromImage(label) > 0  # (z, y, x)
    margins_zyx = [int(math.ceil(margin_mm / spacing)) for spacing in reversed(image.GetSpacing())]
    box_zyx = bounding_box(array, margin=margins_zyx)
    if box_zyx is None:
        return image, label, [0, 0, 0, *image.GetSize()]
    low = [int(axis.start) for axis in reversed(box_zyx)]
    high = [int(axis.stop) for axis in reversed(box_zyx)]
    box = (slice(low[0], high[0]), slice(low[1], high[1]), slice(low[2], high[2]))
    return image[box], label[box], low + high
