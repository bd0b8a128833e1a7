"""Write the FE model of a label map: ``femur.vtu``, ``femur.inp`` (Abaqus) and ``materials.csv``.

:func:`export_fe` builds the voxel mesh (:mod:`~femurseg.export.fe`), maps a
calibrated density to every element (a density NIfTI on the scan's grid, or a
linear HU → density line applied to the scan), turns densities into binned
materials with a density-modulus law (:mod:`~femurseg.export.materials`), and
writes:

- ``femur.vtu``: VTK XML UnstructuredGrid (plain XML, no VTK needed) with cell data
  ``region`` (1 cortical, 2 trabecular), ``density_mg_cm3``, ``modulus_mpa``,
  ``material`` and the frame in ``FieldData``;
- ``femur.inp``: Abaqus input (mm, MPa): ``*Node``, ``*Element`` (C3D4 or C3D8),
  element sets ``CORTICAL``, ``TRABECULAR`` and one per material ``MAT001...``,
  a ``*Solid Section`` and ``*Material`` / ``*Elastic`` (E, ν) per material;
- ``materials.csv``: one row per material: density range and mean, modulus,
  Poisson's ratio, number of elements, and the share of cortical elements.

Without a density, materials are per region with the placeholder moduli of
:class:`FESettings` (``homogeneous_moduli_mpa``), recorded as such in the report.
The report holds the mesh quality and the density check: the element densities'
volume-weighted mean against the density map's mean over the femur (label ≥ 1).

Examples
--------
>>> export_fe(label, "out/", ("vtu", "inp"), FESettings(coarsen=2), hu_to_density=(0.8, -2.0), image=scan)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from femurseg.atomic import atomic_write_csv, atomic_write_text
from femurseg.export.fe import ElementType, FEMesh, element_volumes, voxel_mesh
from femurseg.export.frames import FRAME_NAMES, Frame, check_frame
from femurseg.export.materials import LAWS, Materials, bin_materials
from femurseg.export.vtkxml import VTK_HEXAHEDRON, VTK_TETRA, write_vtu
from femurseg.labels import CORTICAL, TRABECULAR, periosteal_mask

__all__ = ["FESettings", "FE_FORMATS", "export_fe", "write_inp", "write_materials_csv", "FE_VTU_FILE", "FE_INP_FILE",
           "MATERIALS_FILE"]

FE_FORMATS: tuple[str, ...] = ("vtu", "inp")
FE_VTU_FILE, FE_INP_FILE, MATERIALS_FILE = "femur.vtu", "femur.inp", "materials.csv"
_REGION_NAMES = {CORTICAL: "CORTICAL", TRABECULAR: "TRABECULAR"}


@dataclass(frozen=True)
class FESettings:
    """How the FE model is built.

    Parameters
    ----------
    element
        ``"tet"`` (6 Kuhn tetrahedra per block, default) or ``"hex"``.
    coarsen
        Voxels per element edge.
    frame
        Node coordinates in ``LPS`` (default) or ``RAS`` mm.
    law
        Name in :data:`~femurseg.export.materials.LAWS`.
    bins
        Number of materials (equal density width).
    density_scale, density_offset
        ``ρ_law = scale · ρ + offset`` (g/cm³): from the map's density to the law's density kind.
    poisson
        Poisson's ratio of every material.
    min_modulus_mpa
        Floor of the modulus (elements of zero or negative density).
    homogeneous_moduli_mpa
        ``(cortical, trabecular)`` moduli used when no density is given: placeholders
        of the order of cortical and trabecular bone; give your own.
    """

    element: ElementType = "tet"
    coarsen: int = 1
    frame: Frame = "LPS"
    law: str = "morgan2003_femoral_neck"
    bins: int = 50
    density_scale: float = 1.0
    density_offset: float = 0.0
    poisson: float = 0.3
    min_modulus_mpa: float = 1.0
    homogeneous_moduli_mpa: tuple[float, float] = (17000.0, 500.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame", check_frame(self.frame))
        if self.law not in LAWS:
            raise ValueError(f"unknown density-modulus law {self.law!r}; valid: {', '.join(LAWS.names())}")
        if self.coarsen < 1 or self.bins < 1:
            raise ValueError(f"coarsen and bins must be >= 1, got {self.coarsen} and {self.bins}")


def _elset(name: str, ids: np.ndarray) -> str:
    lines = [f"*Elset, elset={name}"]
    for start in range(0, len(ids), 16):
        lines.append(", ".join(str(int(i)) for i in ids[start:start + 16]))
    return "\n".join(lines)


def write_inp(path: str | os.PathLike[str], mesh: FEMesh, material: np.ndarray, moduli: np.ndarray,
              poisson: float, heading: str) -> Path:
    """Write an Abaqus input file (1-based ids; ``material`` is the 0-based material of each element)."""
    buffer = io.StringIO()
    buffer.write(f"*Heading\n** {heading}\n** units: mm, N, MPa\n*Node\n")
    ids = np.arange(1, len(mesh.nodes) + 1)
    np.savetxt(buffer, np.column_stack([ids, mesh.nodes]), fmt=["%d"] + ["%.6f"] * 3, delimiter=", ")
    kind = "C3D4" if mesh.element_type == "tet" else "C3D8"
    buffer.write(f"*Element, type={kind}, elset=FEMUR\n")
    element_ids = np.arange(1, len(mesh.elements) + 1)
    np.savetxt(buffer, np.column_stack([element_ids, mesh.elements + 1]), fmt="%d", delimiter=", ")
    for value, name in _REGION_NAMES.items():
        buffer.write(_elset(name, element_ids[mesh.region == value]) + "\n")
    for m, modulus in enumerate(moduli):
        name = f"MAT{m + 1:03d}"
        buffer.write(_elset(name, element_ids[material == m]) + "\n")
        buffer.write(f"*Solid Section, elset={name}, material={name}\n,\n"
                     f"*Material, name={name}\n*Elastic\n{modulus:.6g}, {poisson:.6g}\n")
    return atomic_write_text(path, buffer.getvalue())


def write_materials_csv(path: str | os.PathLike[str], materials: Materials, region: np.ndarray, poisson: float,
                        law: str) -> Path:
    """Write ``materials.csv``: one row per material."""
    columns = ["material", "density_min_mg_cm3", "density_max_mg_cm3", "density_mean_mg_cm3", "modulus_mpa",
               "poisson", "elements", "cortical_fraction", "law"]
    rows = []
    for m in range(len(materials.modulus_mpa)):
        members = materials.element_material == m
        values = [f"MAT{m + 1:03d}", f"{materials.bounds_mg_cm3[m, 0]:.3f}", f"{materials.bounds_mg_cm3[m, 1]:.3f}",
                  f"{materials.density_mg_cm3[m]:.3f}", f"{materials.modulus_mpa[m]:.6g}", poisson,
                  int(materials.count[m]), f"{float((region[members] == CORTICAL).mean()):.4f}", law]
        rows.append(dict(zip(columns, values)))
    return atomic_write_csv(path, rows, columns)


def _homogeneous(mesh: FEMesh, settings: FESettings) -> Materials:
    values = [CORTICAL, TRABECULAR]
    material = np.searchsorted(values, mesh.region)
    count = np.bincount(material, minlength=2)
    return Materials(material, np.full(2, np.nan), np.asarray(settings.homogeneous_moduli_mpa, float),
                     np.full((2, 2), np.nan), count)


def export_fe(
    label: sitk.Image,
    output: str | os.PathLike[str],
    formats: Sequence[str] = FE_FORMATS,
    settings: FESettings | None = None,
    density: sitk.Image | None = None,
    hu_to_density: tuple[float, float] | None = None,
    image: sitk.Image | None = None,
    source: str = "",
) -> dict[str, Any]:
    """Build the voxel FE model of ``label`` and write ``femur.vtu`` / ``femur.inp`` and ``materials.csv``.

    Parameters
    ----------
    label
        0/1/2 label map.
    output
        Folder.
    formats
        Any of ``vtu``, ``inp``.
    settings
        :class:`FESettings`.
    density
        Density image (mg/cm³) on the label's grid; exclusive with ``hu_to_density``.
    hu_to_density
        ``(slope, intercept)``: density = slope · HU + intercept, applied to ``image``.
    image
        The scan in HU (for ``hu_to_density``).
    source
        The scan's path (file metadata).

    Returns
    -------
    dict
        Files, mesh info and ``quality``, ``density_check`` and the materials summary.

    Raises
    ------
    ValueError
        For unknown formats, both or an unusable density source, or an empty femur.
    """
    settings = settings or FESettings()
    formats = [f.lower().lstrip(".") for f in formats]
    if unknown := [f for f in formats if f not in FE_FORMATS]:
        raise ValueError(f"unknown FE format(s) {', '.join(unknown)}; valid: {', '.join(FE_FORMATS)}")
    if density is not None and hu_to_density is not None:
        raise ValueError("give a density image or a HU -> density line, not both")
    values = None
    if density is not None:
        if tuple(density.GetSize()) != tuple(label.GetSize()):
            raise ValueError(f"density image size {density.GetSize()} differs from the label map's {label.GetSize()}")
        values = sitk.GetArrayFromImage(density).astype(np.float64)
    elif hu_to_density is not None:
        if image is None:
            raise ValueError("a HU -> density line needs the scan")
        values = hu_to_density[0] * sitk.GetArrayFromImage(image).astype(np.float64) + hu_to_density[1]
    mesh = voxel_mesh(label, values, settings.coarsen, settings.element, settings.frame)
    law = LAWS.get(settings.law)
    if mesh.density_mg_cm3 is not None:
        materials = bin_materials(mesh.density_mg_cm3, law, settings.bins, settings.density_scale,
                                  settings.density_offset, settings.min_modulus_mpa)
    else:
        materials = _homogeneous(mesh, settings)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    volumes = element_volumes(mesh)
    modulus = materials.modulus_mpa[materials.element_material]
    report: dict[str, Any] = {"settings": asdict(settings), "mesh": mesh.info, "quality": mesh.quality(),
                              "volume_mm3": round(float(volumes.sum()), 3), "files": []}
    femur = np.asarray(periosteal_mask(sitk.GetArrayViewFromImage(label)), bool)
    report["voxel_volume_mm3"] = round(float(femur.sum() * np.prod(label.GetSpacing())), 3)
    if values is not None:
        element_mean = float((mesh.density_mg_cm3 * volumes).sum() / volumes.sum())
        map_mean = float(values[femur].mean())
        difference = element_mean / map_mean - 1.0 if map_mean else float("nan")
        report["density_check"] = {"element_mean_mg_cm3": round(element_mean, 3), "map_mean_mg_cm3": round(map_mean, 3),
                                   "relative_difference": round(difference, 5), "within_2_percent": bool(abs(difference) <= 0.02)}
        report["materials"] = {"law": settings.law, "law_reference": law.reference, "law_density": law.density,
                               "count": int(len(materials.modulus_mpa)),
                               "modulus_range_mpa": [round(float(modulus.min()), 3), round(float(modulus.max()), 3)]}
    else:
        report["materials"] = {"law": None, "homogeneous_moduli_mpa": list(settings.homogeneous_moduli_mpa),
                               "note": "no density given: one placeholder material per region"}
    field = {"frame": settings.frame, "units": "mm, MPa, mg/cm3", "frame_description": FRAME_NAMES[settings.frame],
             "generator": "femurseg.export.fefiles", "law": str(report["materials"]["law"]), "source": source}
    if "vtu" in formats:
        cells: dict[str, np.ndarray] = {"region": mesh.region.astype(np.uint8),
                                        "material": (materials.element_material + 1).astype(np.int32),
                                        "modulus_mpa": modulus.astype(np.float32)}
        if mesh.density_mg_cm3 is not None:
            cells["density_mg_cm3"] = mesh.density_mg_cm3.astype(np.float32)
        write_vtu(output / FE_VTU_FILE, mesh.nodes, mesh.elements,
                  VTK_TETRA if mesh.element_type == "tet" else VTK_HEXAHEDRON, cell_data=cells, field=field)
        report["files"].append(FE_VTU_FILE)
    if "inp" in formats:
        heading = f"femurseg voxel FE model of {source or 'a label map'}; {FRAME_NAMES[settings.frame]}"
        write_inp(output / FE_INP_FILE, mesh, materials.element_material, materials.modulus_mpa, settings.poisson,
                  heading)
        report["files"].append(FE_INP_FILE)
    if formats:
        if mesh.density_mg_cm3 is not None:
            write_materials_csv(output / MATERIALS_FILE, materials, mesh.region, settings.poisson, settings.law)
        else:
            rows = "material,region,modulus_mpa,poisson,elements\n" + "".join(
                f"MAT{m + 1:03d},{_REGION_NAMES[v].lower()},{materials.modulus_mpa[m]:.6g},{settings.poisson},"
                f"{int(materials.count[m])}\n" for m, v in enumerate((CORTICAL, TRABECULAR)))
            atomic_write_text(output / MATERIALS_FILE, rows)
        report["files"].append(MATERIALS_FILE)
    return report
