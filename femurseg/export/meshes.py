"""Surface meshes of the periosteal and endosteal surfaces, in patient millimetres.

Each surface is the boundary of one mask of the 0/1/2 label map
(:mod:`femurseg.labels`): **periosteal** (label ≥ 1, the whole femur) and
**endosteal** (label 2, the trabecular compartment with the shaft's marrow). The
pipeline of :func:`surface_mesh`:

1. marching cubes (scikit-image, Lewiner) at 0.5 on the binary mask padded by
   one voxel, so every surface closes (also where the femur touches the edge of
   the scan); vertices are mapped to patient mm through the scan's origin,
   spacing and direction (:mod:`~femurseg.export.frames`: LPS by default, RAS
   on request) and faces are oriented outwards (positive enclosed volume);
2. Taubin λ|μ smoothing (``λ = 0.5``, ``μ = −0.53``, trimesh's
   ``filter_taubin``): removes the voxel staircase without the shrinkage of
   plain Laplacian smoothing;
3. quadric decimation (fast-simplification) to at most ``max_faces`` triangles;
   a decimation that breaks closedness is retried with a gentler target, and
   the undecimated mesh is kept if none stays closed;
4. checks with trimesh: watertight (each edge shared by exactly two faces),
   winding consistent, the number of bodies, and the enclosed volume beside the
   voxel volume of the mask.

Writers (:func:`write_surface`, chosen by suffix) are plain code with the frame
written into the file where the format has room: binary STL (80-byte header),
binary PLY (``comment`` lines), VTK XML PolyData (``FieldData`` strings and an
XML comment).

Examples
--------
>>> label = sitk.GetImageFromArray(np.pad(np.ones((6, 6, 6), np.uint8), 2))
>>> mesh = surface_mesh(label, "periosteal", MeshSettings(smoothing_iterations=0))
>>> mesh.report["watertight"], mesh.report["voxel_volume_mm3"]
(True, 216.0)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from femurseg.atomic import atomic_write_bytes
from femurseg.export.frames import FRAME_NAMES, Frame, check_frame, index_to_patient, to_frame
from femurseg.export.vtkxml import write_vtp
from femurseg.labels import endosteal_mask, periosteal_mask

__all__ = ["MeshSettings", "SurfaceMesh", "SURFACES", "MESH_FORMATS", "surface_mesh", "write_surface",
           "export_meshes", "mesh_summary"]

#: surface name -> mask of the label map whose boundary it is
SURFACES = {"periosteal": periosteal_mask, "endosteal": endosteal_mask}
MESH_FORMATS: tuple[str, ...] = ("stl", "ply", "vtp")


@dataclass(frozen=True)
class MeshSettings:
    """How surfaces are meshed.

    Parameters
    ----------
    frame
        ``"LPS"`` (DICOM, default) or ``"RAS"`` patient millimetres.
    smoothing_iterations
        Taubin iterations (each one λ step and one μ step); 0 keeps the marching-cubes surface.
    smoothing_lambda, smoothing_mu
        Taubin's shrink and inflate factors (``μ`` given as a positive number, applied as ``−μ``).
    max_faces
        Decimate to at most this many triangles; ``None`` keeps every triangle.
    """

    frame: Frame = "LPS"
    smoothing_iterations: int = 20
    smoothing_lambda: float = 0.5
    smoothing_mu: float = 0.53
    max_faces: int | None = 100_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame", check_frame(self.frame))
        if self.smoothing_iterations < 0:
            raise ValueError(f"smoothing_iterations must be >= 0, got {self.smoothing_iterations}")
        if self.max_faces is not None and self.max_faces < 4:
            raise ValueError(f"max_faces must be >= 4 or None, got {self.max_faces}")


@dataclass
class SurfaceMesh:
    """A closed triangle surface.

    Attributes
    ----------
    name
        ``periosteal`` or ``endosteal``.
    vertices
        ``(N, 3)`` float64 patient mm in ``frame``.
    faces
        ``(M, 3)`` int64, counter-clockwise seen from outside (normals point out).
    frame
        ``LPS`` or ``RAS``.
    report
        Faces, vertices, watertight, winding_consistent, bodies, mesh and voxel
        volumes (mm³) and their relative difference, decimation notes.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    frame: str
    report: dict[str, Any] = field(default_factory=dict)


def _trimesh():
    try:
        import trimesh
    except ImportError as error:  # pragma: no cover - exercised without the extra
        raise ImportError("surface meshes need trimesh and fast-simplification: "
                          "pip install 'femurseg[export]'") from error
    return trimesh


def _marching_cubes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices as continuous ``(x, y, z)`` indices of the unpadded mask, and faces."""
    from skimage.measure import marching_cubes

    nonzero = np.nonzero(mask)
    low = [int(a.min()) for a in nonzero]
    box = tuple(slice(lo, int(a.max()) + 1) for lo, a in zip(low, nonzero))
    padded = np.pad(mask[box], 1).astype(np.float32)
    vertices, faces, _, _ = marching_cubes(padded, 0.5, allow_degenerate=False)
    vertices = vertices - 1.0 + np.asarray(low, float)  # (z, y, x) index of the full mask
    return vertices[:, ::-1].copy(), faces.astype(np.int64)


def _closed(mesh: Any) -> bool:
    return bool(mesh.is_watertight and mesh.is_winding_consistent)


def _decimate(mesh: Any, max_faces: int, trimesh: Any) -> tuple[Any, str]:
    import fast_simplification

    if len(mesh.faces) <= max_faces:
        return mesh, "not needed"
    target = max_faces
    for _ in range(4):
        points, faces = fast_simplification.simplify(mesh.vertices, mesh.faces.astype(np.int32), target_count=target)
        decimated = trimesh.Trimesh(points, faces, process=True)
        if _closed(decimated) and abs(decimated.volume) > 0:
            return decimated, f"to {len(decimated.faces)} faces"
        target = min(len(mesh.faces), target * 2)
    return mesh, "kept undecimated: no decimation stayed closed"


def surface_mesh(label: sitk.Image, surface: str = "periosteal", settings: MeshSettings | None = None) -> SurfaceMesh:
    """Mesh one surface of a 0/1/2 label map (see the module docstring).

    Parameters
    ----------
    label
        ``uint8`` label map with the scan's geometry.
    surface
        ``"periosteal"`` or ``"endosteal"``.
    settings
        :class:`MeshSettings`.

    Raises
    ------
    ValueError
        If the surface name is unknown or its mask is empty.
    """
    settings = settings or MeshSettings()
    trimesh = _trimesh()
    if surface not in SURFACES:
        raise ValueError(f"unknown surface {surface!r}; valid: {', '.join(SURFACES)}")
    mask = np.asarray(SURFACES[surface](sitk.GetArrayViewFromImage(label)), bool)
    if not mask.any():
        raise ValueError(f"the {surface} mask is empty: no surface to mesh")
    affine = index_to_patient(label, settings.frame)
    index_vertices, faces = _marching_cubes(mask)
    mesh = trimesh.Trimesh(to_frame(index_vertices, affine), faces, process=True)
    if mesh.volume < 0:  # marching cubes on (z, y, x) arrays, or a mirroring direction matrix
        mesh.invert()
    marching_faces = len(mesh.faces)
    if settings.smoothing_iterations:
        trimesh.smoothing.filter_taubin(mesh, lamb=settings.smoothing_lambda, nu=settings.smoothing_mu,
                                        iterations=settings.smoothing_iterations)
    decimation = "off"
    if settings.max_faces is not None:
        mesh, decimation = _decimate(mesh, settings.max_faces, trimesh)
    voxel_volume = float(mask.sum()) * float(np.prod(label.GetSpacing()))
    volume = float(mesh.volume)
    report = {
        "surface": surface, "frame": settings.frame, "faces": int(len(mesh.faces)),
        "vertices": int(len(mesh.vertices)), "marching_cubes_faces": int(marching_faces),
        "decimation": decimation, "watertight": bool(mesh.is_watertight),
        "winding_consistent": bool(mesh.is_winding_consistent), "bodies": int(mesh.body_count),
        "euler_number": int(mesh.euler_number),
        "volume_mm3": round(volume, 3), "voxel_volume_mm3": round(voxel_volume, 3),
        "volume_difference": round(volume / voxel_volume - 1.0, 5),
        "settings": asdict(settings),
    }
    return SurfaceMesh(surface, np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64),
                       settings.frame, report)


def _header_text(mesh: SurfaceMesh, source: str = "") -> dict[str, str]:
    text = {"surface": mesh.name, "frame": mesh.frame, "units": "mm", "frame_description": FRAME_NAMES[mesh.frame],
            "generator": "femurseg.export.meshes"}
    if source:
        text["source"] = source
    return text


def _write_stl(path: Path, mesh: SurfaceMesh, source: str) -> Path:
    v = mesh.vertices[mesh.faces]
    normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    records = np.zeros(len(v), dtype=[("normal", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])
    records["normal"], records["vertices"] = normals, v
    header = f"femurseg {mesh.name} surface, {mesh.frame} mm".encode("ascii")[:80].ljust(80, b" ")
    return atomic_write_bytes(path, header + struct.pack("<I", len(v)) + records.tobytes())


def _write_ply(path: Path, mesh: SurfaceMesh, source: str) -> Path:
    comments = "".join(f"comment {k}: {v}\n" for k, v in _header_text(mesh, source).items())
    header = (f"ply\nformat binary_little_endian 1.0\n{comments}element vertex {len(mesh.vertices)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              f"element face {len(mesh.faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    faces = np.zeros(len(mesh.faces), dtype=[("n", "u1"), ("v", "<i4", 3)])
    faces["n"], faces["v"] = 3, mesh.faces
    data = header.encode("ascii") + mesh.vertices.astype("<f4").tobytes() + faces.tobytes()
    return atomic_write_bytes(path, data)


def _write_vtp(path: Path, mesh: SurfaceMesh, source: str) -> Path:
    return write_vtp(path, mesh.vertices, mesh.faces, field=_header_text(mesh, source))


_WRITERS = {"stl": _write_stl, "ply": _write_ply, "vtp": _write_vtp}


def write_surface(mesh: SurfaceMesh, path: str | os.PathLike[str], source: str = "") -> Path:
    """Write a surface as STL, PLY or VTP (by the file's suffix), atomically.

    Parameters
    ----------
    mesh
        From :func:`surface_mesh`.
    path
        ``*.stl`` (binary), ``*.ply`` (binary little-endian) or ``*.vtp`` (VTK XML).
    source
        Where the label map came from (PLY and VTP metadata).

    Raises
    ------
    ValueError
        If the suffix is not one of :data:`MESH_FORMATS`.
    """
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in _WRITERS:
        raise ValueError(f"{path}: unknown mesh format {kind!r}; valid: {', '.join(MESH_FORMATS)}")
    return _WRITERS[kind](path, mesh, source)


def export_meshes(
    label: sitk.Image,
    output: str | os.PathLike[str],
    formats: Sequence[str] = ("stl",),
    settings: MeshSettings | None = None,
    surfaces: Sequence[str] = tuple(SURFACES),
    source: str = "",
) -> dict[str, Any]:
    """Mesh each surface and write ``<output>/<surface>.<format>`` for every format.

    Parameters
    ----------
    label
        0/1/2 label map with the scan's geometry.
    output
        Folder (created if needed).
    formats
        Any of ``stl``, ``ply``, ``vtp``.
    settings
        :class:`MeshSettings`.
    surfaces
        Which surfaces; an empty mask is reported (``"error"``) and skipped.
    source
        Where the label map came from (file metadata).

    Returns
    -------
    dict
        Per surface, :attr:`SurfaceMesh.report` plus the files written (file names).
    """
    formats = [f.lower().lstrip(".") for f in formats]
    unknown = [f for f in formats if f not in MESH_FORMATS]
    if unknown:
        raise ValueError(f"unknown mesh format(s) {', '.join(unknown)}; valid: {', '.join(MESH_FORMATS)}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    reports: dict[str, Any] = {}
    for surface in surfaces:
        try:
            mesh = surface_mesh(label, surface, settings)
        except ValueError as error:
            reports[surface] = {"error": str(error)}
            continue
        files = [write_surface(mesh, output / f"{surface}.{kind}", source).name for kind in formats]
        reports[surface] = {**mesh.report, "files": files}
    return reports


def mesh_summary(reports: Mapping[str, Any]) -> str:
    """One line per surface: faces, closedness and the volume against the voxel volume."""
    lines = []
    for name, report in reports.items():
        if "error" in report:
            lines.append(f"{name}: {report['error']}")
            continue
        lines.append(f"{name}: {report['faces']} faces, {'closed' if report['watertight'] else 'NOT closed'}, "
                     f"{report['volume_mm3'] / 1000:.3f} cm³ (voxels {report['voxel_volume_mm3'] / 1000:.3f} cm³, "
                     f"{100 * report['volume_difference']:+.2f} %)")
    return "\n".join(lines)
