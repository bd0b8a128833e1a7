"""Patient coordinate frames of exported geometry: voxel index → millimetres.

Exports place their vertices and nodes in the patient's physical millimetres, in
one of two frames:

- ``"LPS"`` (default): DICOM's patient frame and ITK's/SimpleITK's physical
  space, +x towards the patient's **L**\\ eft, +y **P**\\ osterior, +z **S**\\ uperior;
  a mesh lands on the scan as SimpleITK, ITK-SNAP and DICOM viewers place it;
- ``"RAS"``: NIfTI's and 3D Slicer's frame (x and y negated), for tools that
  expect RAS (Slicer's model loader reads LPS or RAS by a header comment).

The affine maps a continuous index ``(i, j, k)`` in SimpleITK's ``(x, y, z)``
order to the frame: ``p = origin + D · diag(spacing) · (i, j, k)``, with ``D``
the image's direction matrix. Going from LPS to RAS is a rotation (two axes
negated), so it never turns a surface inside out; a direction matrix with
determinant −1 does, which :func:`mirrors` reports so that writers can keep
faces and elements positively oriented.

Examples
--------
>>> image = sitk.Image(4, 4, 4, sitk.sitkUInt8)
>>> image.SetSpacing((0.5, 0.5, 2.0)); image.SetOrigin((10.0, 0.0, 0.0))
>>> index_to_patient(image, "RAS") @ (1, 0, 1, 1)
array([-10.5,   0. ,   2. ,   1. ])
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import SimpleITK as sitk

__all__ = ["Frame", "FRAMES", "FRAME_NAMES", "index_to_patient", "to_frame", "mirrors", "check_frame"]

Frame = Literal["LPS", "RAS"]
FRAMES: tuple[str, ...] = ("LPS", "RAS")
#: the frames spelled out, for file headers and reports
FRAME_NAMES: dict[str, str] = {
    "LPS": "LPS (DICOM patient frame: +x left, +y posterior, +z superior), millimetres",
    "RAS": "RAS (NIfTI/Slicer frame: +x right, +y anterior, +z superior), millimetres",
}
_LPS_TO = {"LPS": np.diag([1.0, 1.0, 1.0, 1.0]), "RAS": np.diag([-1.0, -1.0, 1.0, 1.0])}


def check_frame(frame: str) -> Frame:
    """``frame`` in upper case, or ``ValueError`` naming the valid frames."""
    upper = str(frame).upper()
    if upper not in FRAMES:
        raise ValueError(f"unknown frame {frame!r}; valid: {', '.join(FRAMES)}")
    return upper  # type: ignore[return-value]


def index_to_patient(image: sitk.Image, frame: Frame = "LPS") -> np.ndarray:
    """The ``(4, 4)`` affine from a continuous ``(x, y, z)`` voxel index of ``image`` to ``frame`` mm."""
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return _LPS_TO[check_frame(frame)] @ affine


def to_frame(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a ``(4, 4)`` affine to ``(N, 3)`` points."""
    points = np.asarray(points, float)
    return points @ affine[:3, :3].T + affine[:3, 3]


def mirrors(affine: np.ndarray) -> bool:
    """Whether the affine reverses orientation (negative determinant)."""
    return bool(np.linalg.det(affine[:3, :3]) < 0)
