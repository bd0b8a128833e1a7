"""Outputs that the next tool opens: surface meshes, FE models, DICOM-SEG, 3D Slicer segmentations.

Reads a 0/1/2 label map and its scan, never :mod:`femurseg.inference`, so it serves
label maps from any source. Modules: :mod:`~femurseg.export.frames` (voxel index →
patient LPS/RAS mm), :mod:`~femurseg.export.vtkxml` (plain-XML VTK writers),
:mod:`~femurseg.export.meshes` (periosteal and endosteal surfaces),
:mod:`~femurseg.export.segments` (names, colours, codes), :mod:`~femurseg.export.slicer`
(``.seg.nrrd``), :mod:`~femurseg.export.dicomseg` (DICOM-SEG), :mod:`~femurseg.export.fe`
(voxel FE mesh and its quality), :mod:`~femurseg.export.materials` (density-modulus laws),
:mod:`~femurseg.export.fefiles` (VTU, Abaqus, materials table),
:mod:`~femurseg.export.outputs` (everything requested, in one call). The command
line is :mod:`femurseg.commands.export`; docs/export.md describes formats and frames.

Names are imported lazily so that ``import femurseg.export`` stays cheap.
"""

from __future__ import annotations

from femurseg.lazy import lazy_exports

_EXPORTS = {
    "MeshSettings": "femurseg.export.meshes",
    "SurfaceMesh": "femurseg.export.meshes",
    "surface_mesh": "femurseg.export.meshes",
    "write_surface": "femurseg.export.meshes",
    "export_meshes": "femurseg.export.meshes",
    "ExportRequest": "femurseg.export.outputs",
    "export_outputs": "femurseg.export.outputs",
    "check_label": "femurseg.export.outputs",
    "index_to_patient": "femurseg.export.frames",
    "write_vtp": "femurseg.export.vtkxml",
    "write_vtu": "femurseg.export.vtkxml",
    "write_seg_nrrd": "femurseg.export.slicer",
    "write_dicom_seg": "femurseg.export.dicomseg",
    "segment_definitions": "femurseg.export.segments",
    "voxel_mesh": "femurseg.export.fe",
    "mesh_quality": "femurseg.export.fe",
    "FESettings": "femurseg.export.fefiles",
    "export_fe": "femurseg.export.fefiles",
    "LAWS": "femurseg.export.materials",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
