"""Signed-distance primitives for the synthetic phantom.

Every function takes point coordinates as three broadcastable ``float32``
arrays ``(x, y, z)`` in millimetres and returns the signed distance (negative
inside) with the broadcast shape. Shapes are combined with the polynomial
smooth minimum of Quilez, which blends surfaces without seams; the blended field
is no longer an exact distance, so callers that need one divide by the gradient
norm (:func:`femurseg.data.synthetic.grid.banded` does).

Examples
--------
>>> import numpy as np
>>> x, y, z = np.meshgrid(*(np.linspace(-5, 5, 11, dtype=np.float32),) * 3, indexing="ij")
>>> d = sphere((x, y, z), (0.0, 0.0, 0.0), 3.0)
>>> float(d[5, 5, 5])
-3.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "Points",
    "sphere",
    "round_cone",
    "ellipsoid",
    "elliptic_tube",
    "smooth_union",
    "smooth_subtract",
    "unit",
]

Points = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Three broadcastable coordinate arrays ``(x, y, z)`` in mm."""


def unit(vector: Sequence[float]) -> np.ndarray:
    """Return ``vector`` scaled to unit length (float64)."""
    v = np.asarray(vector, dtype=np.float64)
    return v / np.linalg.norm(v)


def _offset(p: Points, centre: Sequence[float]) -> Points:
    return (p[0] - np.float32(centre[0]), p[1] - np.float32(centre[1]), p[2] - np.float32(centre[2]))


def sphere(p: Points, centre: Sequence[float], radius: float) -> np.ndarray:
    """Exact signed distance to a sphere."""
    x, y, z = _offset(p, centre)
    return np.sqrt(x * x + y * y + z * z) - np.float32(radius)


def round_cone(
    p: Points, a: Sequence[float], b: Sequence[float], ra: float, rb: float
) -> np.ndarray:
    """Signed distance to a tapered capsule from ``a`` (radius ``ra``) to ``b`` (``rb``).

    The radius is interpolated linearly along the axis; the result is exact for
    a cylinder and a close bound for gentle tapers.
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    axis = b64 - a64
    length2 = float(axis @ axis)
    x, y, z = _offset(p, a64)
    t = (x * np.float32(axis[0]) + y * np.float32(axis[1]) + z * np.float32(axis[2])) / np.float32(length2)
    t = np.clip(t, 0.0, 1.0)
    dx = x - t * np.float32(axis[0])
    dy = y - t * np.float32(axis[1])
    dz = z - t * np.float32(axis[2])
    return np.sqrt(dx * dx + dy * dy + dz * dz) - (np.float32(ra) + t * np.float32(rb - ra))


def _frame_coordinates(p: Points, centre: Sequence[float], frame: np.ndarray) -> Points:
    x, y, z = _offset(p, centre)
    f = frame.astype(np.float32)
    return tuple(x * f[i, 0] + y * f[i, 1] + z * f[i, 2] for i in range(3))  # type: ignore[return-value]


def ellipsoid(
    p: Points, centre: Sequence[float], semi_axes: Sequence[float], frame: np.ndarray | None = None
) -> np.ndarray:
    """Approximate signed distance to an ellipsoid (accurate near its surface).

    Parameters
    ----------
    p
        Point coordinates.
    centre
        Centre in mm.
    semi_axes
        Semi-axes ``(a, b, c)`` in mm along the rows of ``frame``.
    frame
        ``(3, 3)`` orthonormal matrix whose rows are the ellipsoid's axes;
        identity when omitted.
    """
    frame = np.eye(3) if frame is None else np.asarray(frame)
    u, v, w = _frame_coordinates(p, centre, frame)
    a, b, c = (np.float32(s) for s in semi_axes)
    k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2)
    k1 = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2 + (w / (c * c)) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, np.float32(1e-6))


def elliptic_tube(
    p: Points,
    a: Sequence[float],
    b: Sequence[float],
    radii_a: tuple[float, float],
    radii_b: tuple[float, float],
    up: Sequence[float],
    waist: float = 0.0,
) -> np.ndarray:
    """Approximate signed distance to a tube of elliptic section from ``a`` to ``b``.

    Parameters
    ----------
    p
        Point coordinates.
    a, b
        End points of the axis in mm.
    radii_a, radii_b
        Section semi-axes ``(along up, across)`` at ``a`` and at ``b``.
    up
        Direction of the first semi-axis (projected perpendicular to the axis).
    waist
        Fractional narrowing at mid-length (0.1 narrows the middle by 10 %).
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    axis = b64 - a64
    length = float(np.linalg.norm(axis))
    e1 = axis / length
    e2 = np.asarray(up, np.float64) - (np.asarray(up, np.float64) @ e1) * e1
    e2 /= np.linalg.norm(e2)
    e3 = np.cross(e1, e2)
    s, u, v = _frame_coordinates(p, a64, np.stack([e1, e2, e3]))
    t = np.clip(s / np.float32(length), 0.0, 1.0)
    shrink = 1.0 - np.float32(4.0 * waist) * t * (1.0 - t)
    ru = (np.float32(radii_a[0]) + t * np.float32(radii_b[0] - radii_a[0])) * shrink
    rv = (np.float32(radii_a[1]) + t * np.float32(radii_b[1] - radii_a[1])) * shrink
    k0 = np.sqrt((u / ru) ** 2 + (v / rv) ** 2)
    radial = (k0 - 1.0) * np.minimum(ru, rv) * np.float32(0.5) + (k0 - 1.0) * np.sqrt(ru * rv) * np.float32(0.5)
    beyond = np.maximum(-s, s - np.float32(length))
    return np.maximum(radial, beyond)


def smooth_union(d1: np.ndarray, d2: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum of two distances with blend radius ``k`` mm."""
    k32 = np.float32(k)
    h = np.maximum(k32 - np.abs(d1 - d2), 0.0) / k32
    return np.minimum(d1, d2) - h * h * k32 * np.float32(0.25)


def smooth_subtract(d1: np.ndarray, d2: np.ndarray, k: float) -> np.ndarray:
    """Remove shape ``d2`` from ``d1`` with a rounded edge of radius ``k`` mm."""
    return -smooth_union(-d1, d2, k)
