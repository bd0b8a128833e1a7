"""The scan grid and fast evaluation of implicit surfaces on it.

World (scanner) coordinates are LPS millimetres; the patient frame is the
world frame rotated by the patient's tilt about the femoral head centre (the
origin of both). Points are produced for a sub-box of the grid, in any frame
given by a ``(3, 3)`` world-to-frame matrix, either for the whole box
(broadcast) or for a flat list of voxels.

:func:`banded` evaluates a signed distance cheaply: on a coarse lattice first,
then exactly only in the band around the surface where the coarse value could
be wrong by more than the band the caller needs (signed distances are
1-Lipschitz, so far from the surface the coarse value is good enough).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from femurseg.data.synthetic.sdf import Points

__all__ = ["Grid", "Box", "banded"]

Box = tuple[slice, slice, slice]
"""Voxel slices ``(z, y, x)`` of a sub-box of the grid."""


@dataclass(frozen=True)
class Grid:
    """Axis-aligned scan grid.

    Attributes
    ----------
    origin
        World position of voxel ``(0, 0, 0)``, ``(x, y, z)`` mm.
    spacing
        ``(sx, sy, sz)`` mm.
    size
        ``(nx, ny, nz)``.
    tilt
        ``(3, 3)`` patient-to-world rotation.
    """

    origin: np.ndarray
    spacing: np.ndarray
    size: np.ndarray
    tilt: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(Z, Y, X)``."""
        return int(self.size[2]), int(self.size[1]), int(self.size[0])

    def axis(self, i: int) -> np.ndarray:
        """World coordinates along axis ``i`` (0 = x, 1 = y, 2 = z), float32."""
        return (self.origin[i] + self.spacing[i] * np.arange(self.size[i])).astype(np.float32)

    def box(self, low: np.ndarray, high: np.ndarray) -> Box:
        """Voxel slices covering the patient-frame box ``[low, high]``."""
        corners = np.array([[a, b, c] for a in (low[0], high[0]) for b in (low[1], high[1])
                            for c in (low[2], high[2])])
        world = corners @ self.tilt.T
        lo = np.clip(np.floor((world.min(axis=0) - self.origin) / self.spacing).astype(int) - 1, 0, self.size)
        hi = np.clip(np.ceil((world.max(axis=0) - self.origin) / self.spacing).astype(int) + 2, 0, self.size)
        return slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])

    def points(self, frame: np.ndarray, box: Box, flat: np.ndarray | None = None,
               stride: int = 1) -> Points:
        """Coordinates in ``frame`` of the voxels of ``box``.

        Parameters
        ----------
        frame
            ``(3, 3)`` world-to-frame rotation (e.g. ``tilt.T`` for the patient frame).
        box
            Sub-box of the grid.
        flat
            Flat indices into the box (C order); all voxels when omitted
            (the arrays then broadcast to the box shape).
        stride
            Lattice step (voxels) when ``flat`` is omitted; the lattice runs
            one step past the box end so that it covers every voxel.
        """
        start = np.array([box[2].start, box[1].start, box[0].start])
        shape = (box[0].stop - box[0].start, box[1].stop - box[1].start, box[2].stop - box[2].start)
        o = (self.origin + self.spacing * start).astype(np.float64)
        s = self.spacing.astype(np.float64)
        if flat is None:
            n = [int(np.ceil((shape[2 - i] - 1) / stride)) + 1 for i in range(3)]
            idx = [np.arange(n[i]) * stride for i in range(3)]
            x = (o[0] + s[0] * idx[0]).astype(np.float32)[None, None, :]
            y = (o[1] + s[1] * idx[1]).astype(np.float32)[None, :, None]
            z = (o[2] + s[2] * idx[2]).astype(np.float32)[:, None, None]
        else:
            k, j, i = np.unravel_index(flat, shape)
            x = (o[0] + s[0] * i).astype(np.float32)
            y = (o[1] + s[1] * j).astype(np.float32)
            z = (o[2] + s[2] * k).astype(np.float32)
        m = frame.astype(np.float32)
        return (m[0, 0] * x + m[0, 1] * y + m[0, 2] * z,
                m[1, 0] * x + m[1, 1] * y + m[1, 2] * z,
                m[2, 0] * x + m[2, 1] * y + m[2, 2] * z)


def banded(
    field: Callable[[Points], np.ndarray],
    grid: Grid,
    frame: np.ndarray,
    box: Box,
    band: float,
    stride: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate a signed distance on ``box``, exactly within ``band`` mm of its surface.

    Returns
    -------
    distance, flat, width
        The ``(Z, Y, X)`` field (normalised by its gradient norm inside the
        band, coarse outside), the flat indices of the band, and the voxel width
        along the surface normal (mm) at those indices.
    """
    shape = (box[0].stop - box[0].start, box[1].stop - box[1].start, box[2].stop - box[2].start)
    lattice = grid.points(frame, box, stride=stride)
    coarse = np.broadcast_to(field(lattice), np.broadcast(*lattice).shape)
    maps = [np.minimum(np.rint(np.arange(n) / stride).astype(int), coarse.shape[a] - 1)
            for a, n in enumerate(shape)]
    dist = coarse[np.ix_(*maps)].astype(np.float32)
    reach = band + 0.75 * stride * float(np.linalg.norm(grid.spacing))
    flat = np.flatnonzero(np.abs(dist) < reach)
    dist.ravel()[flat] = field(grid.points(frame, box, flat))
    return _normalise_band(dist, flat, grid.spacing)


def _normalise_band(
    dist: np.ndarray, flat: np.ndarray, spacing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Divide the band values by their central-difference gradient norm."""
    nz, ny, nx = dist.shape
    k, j, i = np.unravel_index(flat, dist.shape)
    values = dist.ravel()
    grads = []
    for index, n, step, s in ((i, nx, 1, spacing[0]), (j, ny, nx, spacing[1]), (k, nz, nx * ny, spacing[2])):
        up = np.where(index + 1 < n, flat + step, flat)
        down = np.where(index > 0, flat - step, flat)
        span = ((up - down) // step).astype(np.float32) * np.float32(s)
        grads.append((values[up] - values[down]) / np.maximum(span, np.float32(1e-6)))
    gx, gy, gz = grads
    norm = np.maximum(np.sqrt(gx * gx + gy * gy + gz * gz), np.float32(0.2))
    width = (np.abs(gx) * np.float32(spacing[0]) + np.abs(gy) * np.float32(spacing[1])
             + np.abs(gz) * np.float32(spacing[2])) / norm
    out = dist.copy()
    out.ravel()[flat] = values[flat] / norm
    return out, flat, width.astype(np.float32)
