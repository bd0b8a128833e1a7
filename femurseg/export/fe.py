"""Finite-element volume mesh of the femur: voxel elements, cortical and trabecular regions kept apart.

The default is the classic voxel FE mesh of bone, built without any mesh generator
(so femurseg stays Apache-2.0 in its default install; GPL/AGPL generators such as
gmsh or TetGen are not used):

- each block of ``coarsen`` × ``coarsen`` × ``coarsen`` voxels becomes one element
  when at least half of its voxels are femur (label ≥ 1); its region is the majority of its
  femur voxels (1 cortical, 2 trabecular), its density the mean of the density map
  over those voxels;
- ``element="tet"`` (default) splits each block into the 6 tetrahedra of the Kuhn
  (Freudenthal) subdivision along its main diagonal, which is conforming between
  neighbouring blocks; ``element="hex"`` keeps the block as one 8-node hexahedron;
- nodes are the blocks' corners in patient millimetres (:mod:`~femurseg.export.frames`,
  LPS by default), shared between neighbouring elements (one connected mesh,
  regions conforming at their interface);
- every element is oriented to a positive volume (node order flipped where the
  scan's direction matrix mirrors), so there are no inverted elements by
  construction; :func:`mesh_quality` checks it and reports the minimum dihedral
  angle, the aspect ratio and the minimum element volume.

The surface is a voxel staircase, as in voxel FE models of bone; ``coarsen`` trades
resolution for size (elements scale as ``1 / coarsen³``).

Examples
--------
>>> mesh = voxel_mesh(label, coarsen=2)                   # doctest: +SKIP
>>> mesh.nodes.shape, mesh.elements.shape, mesh.quality()  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from femurseg.export.frames import Frame, index_to_patient, mirrors, to_frame
from femurseg.labels import CORTICAL, TRABECULAR, periosteal_mask

__all__ = ["FEMesh", "voxel_mesh", "mesh_quality", "element_volumes", "ElementType"]

ElementType = Literal["tet", "hex"]
#: hexahedron corner offsets (x, y, z) in VTK / Abaqus C3D8 order: bottom face counter-clockwise, then top
_HEX = np.array([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)])
#: Kuhn subdivision: one tetrahedron per axis order, from corner (0,0,0) to (1,1,1), as hexahedron corner numbers
_KUHN = []
for order in itertools.permutations(range(3)):
    corner, path = np.zeros(3, int), [0]
    for axis in order:
        corner[axis] = 1
        path.append(int(np.nonzero((_HEX == corner).all(axis=1))[0][0]))
    _KUHN.append(path)
_KUHN = np.array(_KUHN)


@dataclass
class FEMesh:
    """A volume mesh of one element type.

    Attributes
    ----------
    nodes
        ``(N, 3)`` patient mm in ``frame``.
    elements
        ``(M, 4)`` (tet) or ``(M, 8)`` (hex) node indices, positively oriented.
    element_type
        ``"tet"`` or ``"hex"``.
    region
        ``(M,)`` 1 cortical, 2 trabecular.
    density_mg_cm3
        ``(M,)`` mean density of the element's femur voxels, or ``None``.
    frame
        ``LPS`` or ``RAS``.
    info
        How it was built (coarsen, voxel size, block volume).
    """

    nodes: np.ndarray
    elements: np.ndarray
    element_type: str
    region: np.ndarray
    density_mg_cm3: np.ndarray | None
    frame: str
    info: dict[str, Any] = field(default_factory=dict)

    def quality(self) -> dict[str, Any]:
        """:func:`mesh_quality` of this mesh."""
        return mesh_quality(self.nodes, self.elements, self.element_type)


def _blocks(array: np.ndarray, k: int) -> np.ndarray:
    """``(Z/k, Y/k, X/k, k³)`` view of a ``(z, y, x)`` array padded to multiples of ``k``."""
    pad = [(0, (-s) % k) for s in array.shape]
    padded = np.pad(array, pad)
    z, y, x = (s // k for s in padded.shape)
    return padded.reshape(z, k, y, k, x, k).transpose(0, 2, 4, 1, 3, 5).reshape(z, y, x, k ** 3)


def voxel_mesh(
    label: sitk.Image,
    density: np.ndarray | None = None,
    coarsen: int = 1,
    element: ElementType = "tet",
    frame: Frame = "LPS",
) -> FEMesh:
    """Voxel FE mesh of a 0/1/2 label map (see the module docstring).

    Parameters
    ----------
    label
        ``uint8`` label map with the scan's geometry.
    density
        ``(z, y, x)`` density map in mg/cm³ on the label's grid, or ``None``.
    coarsen
        Voxels per element edge (1: one block per voxel).
    element
        ``"tet"`` (6 per block) or ``"hex"`` (1 per block).
    frame
        Node coordinates in ``LPS`` (default) or ``RAS`` mm.

    Raises
    ------
    ValueError
        For an empty femur, a bad ``coarsen`` or ``element``, or a density map of another shape.
    """
    if coarsen < 1:
        raise ValueError(f"coarsen must be >= 1, got {coarsen}")
    if element not in ("tet", "hex"):
        raise ValueError(f"unknown element {element!r}; valid: tet, hex")
    labels = sitk.GetArrayViewFromImage(label)
    if density is not None and density.shape != labels.shape:
        raise ValueError(f"density map shape {density.shape} differs from the label map's {labels.shape}")
    femur = np.asarray(periosteal_mask(labels), bool)
    if not femur.any():
        raise ValueError("the label map holds no femur: nothing to mesh")
    k = int(coarsen)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(femur))
    start = np.array([s.start for s in box])  # (z, y, x) of the box corner
    blocks = _blocks(np.asarray(labels[box]), k)
    in_femur = periosteal_mask(blocks)
    n_femur = in_femur.sum(axis=-1)
    keep = n_femur * 2 >= k ** 3 if k > 1 else n_femur > 0
    cortical = (blocks == CORTICAL).sum(axis=-1)
    region = np.where(cortical * 2 >= n_femur, CORTICAL, TRABECULAR).astype(np.uint8)[keep]
    element_density = None
    if density is not None:
        sums = (_blocks(np.asarray(density[box], np.float64), k) * in_femur).sum(axis=-1)
        element_density = (sums[keep] / n_femur[keep]).astype(np.float64)
    where = np.argwhere(keep)  # (z, y, x) block indices
    grid = np.array(keep.shape) + 1
    corner_zyx = where[:, None, :] + _HEX[None, :, ::-1]  # (B, 8, 3) corner (z, y, x) in block units
    flat = np.ravel_multi_index(tuple(corner_zyx.reshape(-1, 3).T), grid)
    unique, inverse = np.unique(flat, return_inverse=True)
    hexes = inverse.reshape(-1, 8)
    corners = np.stack(np.unravel_index(unique, grid), axis=1)  # (N, 3) z, y, x
    index_xyz = (corners * k + start)[:, ::-1] - 0.5  # continuous voxel index of the block corners
    affine = index_to_patient(label, frame)
    nodes = to_frame(index_xyz.astype(float), affine)
    if element == "hex":
        elements = hexes[:, [0, 3, 2, 1, 4, 7, 6, 5]] if mirrors(affine) else hexes
        regions, densities = region, element_density
    else:
        elements = hexes[:, _KUHN].reshape(-1, 4)
        volumes = _tet_signed_volumes(nodes, elements)
        flip = volumes < 0
        elements[flip] = elements[flip][:, [0, 2, 1, 3]]
        regions = np.repeat(region, 6)
        densities = None if element_density is None else np.repeat(element_density, 6)
    spacing = np.asarray(label.GetSpacing(), float)
    info = {"coarsen": k, "element": element, "voxel_mm": spacing.round(6).tolist(),
            "block_mm3": round(float(np.prod(spacing)) * k ** 3, 6), "blocks": int(len(where))}
    return FEMesh(nodes, elements.astype(np.int64), element, regions, densities, frame, info)


def _tet_signed_volumes(nodes: np.ndarray, tets: np.ndarray) -> np.ndarray:
    a, b, c, d = (nodes[tets[:, i]] for i in range(4))
    return np.einsum("ij,ij->i", b - a, np.cross(c - a, d - a)) / 6.0


def _hex_signed_volumes(nodes: np.ndarray, hexes: np.ndarray) -> np.ndarray:
    """Corner-0 Jacobian ``(p1 - p0) · ((p3 - p0) × (p4 - p0))``: the signed volume of a parallelepiped."""
    p0 = nodes[hexes[:, 0]]
    return np.einsum("ij,ij->i", nodes[hexes[:, 1]] - p0, np.cross(nodes[hexes[:, 3]] - p0, nodes[hexes[:, 4]] - p0))


def element_volumes(mesh: FEMesh) -> np.ndarray:
    """Signed volume (mm³) of every element (voxel hexahedra are parallelepipeds)."""
    if mesh.element_type == "tet":
        return _tet_signed_volumes(mesh.nodes, mesh.elements)
    return _hex_signed_volumes(mesh.nodes, mesh.elements)


def _dihedral_angles(nodes: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """``(M, 6)`` interior dihedral angles (degrees) of tetrahedra."""
    p = nodes[tets]  # (M, 4, 3)
    faces = [(1, 2, 3), (0, 2, 3), (0, 1, 3), (0, 1, 2)]  # face i is opposite vertex i
    normals = []
    for (i, j, l), opposite in zip(faces, range(4)):
        n = np.cross(p[:, j] - p[:, i], p[:, l] - p[:, i])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        sign = np.sign(np.einsum("ij,ij->i", n, p[:, opposite] - p[:, i]))
        normals.append(-n * sign[:, None])  # outward
    angles = [np.degrees(np.pi - np.arccos(np.clip(np.einsum("ij,ij->i", normals[a], normals[b]), -1, 1)))
              for a, b in itertools.combinations(range(4), 2)]
    return np.stack(angles, axis=1)


def mesh_quality(nodes: np.ndarray, elements: np.ndarray, element_type: str, chunk: int = 500_000) -> dict[str, Any]:
    """Element quality: inverted elements, minimum volume, dihedral angles, aspect ratio.

    For tetrahedra the dihedral angles are the six interior ones and the aspect ratio
    is the longest edge over the shortest altitude (1.22 for a regular tetrahedron);
    a (voxel) hexahedron reports its corner Jacobian as volume, its face angle (90°
    for a voxel) and its longest over shortest edge.
    """
    min_volume, min_angle, max_angle, max_aspect = np.inf, 180.0, 0.0, 0.0
    for lo in range(0, len(elements), chunk):
        part = elements[lo:lo + chunk]
        volume = (_tet_signed_volumes if element_type == "tet" else _hex_signed_volumes)(nodes, part)
        min_volume = min(min_volume, float(volume.min()))
        if element_type == "tet":
            angles = _dihedral_angles(nodes, part)
            min_angle, max_angle = min(min_angle, float(angles.min())), max(max_angle, float(angles.max()))
            p = nodes[part]
            edges = np.stack([np.linalg.norm(p[:, a] - p[:, b], axis=1)
                              for a, b in itertools.combinations(range(4), 2)], axis=1)
            areas = np.stack([np.linalg.norm(np.cross(p[:, j] - p[:, i], p[:, l] - p[:, i]), axis=1) / 2
                              for i, j, l in [(1, 2, 3), (0, 2, 3), (0, 1, 3), (0, 1, 2)]], axis=1)
            altitude = 3 * np.abs(volume)[:, None] / areas
            max_aspect = max(max_aspect, float((edges.max(axis=1) / altitude.min(axis=1)).max()))
    if element_type == "hex":
        p = nodes[elements[:1]][0]
        edges = [np.linalg.norm(p[b] - p[a]) for a, b in ((0, 1), (0, 3), (0, 4))]
        max_aspect = float(max(edges) / min(edges))
        min_angle = max_angle = float(np.degrees(np.arccos(np.clip(
            np.dot(p[1] - p[0], p[3] - p[0]) / (edges[0] * edges[1]), -1, 1))))
    return {"elements": int(len(elements)), "nodes": int(len(nodes)), "inverted_any": bool(min_volume <= 0),
            "min_volume_mm3": round(min_volume, 6), "min_dihedral_deg": round(min_angle, 3),
            "max_dihedral_deg": round(max_angle, 3), "max_aspect_ratio": round(max_aspect, 4)}
