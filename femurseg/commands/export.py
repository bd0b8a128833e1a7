"""``femurseg export``: surface meshes (and other outputs) of any 0/1/2 label map (:mod:`femurseg.export`).

The export options are defined once here (:func:`add_export_arguments`) and reused
by ``femurseg segment``, which writes the same files into each subject's folder.

Examples
--------
.. code-block:: console

    femurseg export --image scan.nii.gz --label segmentation.nii.gz --output out --meshes stl,vtp
    femurseg segment scan.nii.gz --output out --meshes stl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from femurseg.errors import FemursegError

__all__ = ["main", "add_export_arguments", "request_from_args"]


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the opt-in export options (``--meshes`` and its settings, ``--seg-nrrd``, ``--dicom-seg``) to ``parser``."""
    group = parser.add_argument_group("exports (each one opt-in; see docs/export.md)")
    group.add_argument("--meshes", default=None, metavar="FORMATS",
                       help="surface meshes periosteal.* and endosteal.*: comma-separated stl, ply, vtp")
    group.add_argument("--frame", choices=("LPS", "RAS"), default="LPS",
                       help="patient frame of mesh coordinates (mm): LPS as DICOM (default) or RAS as NIfTI/Slicer")
    group.add_argument("--mesh-faces", type=int, default=100_000, metavar="N",
                       help="decimate each surface to at most N triangles (0: no decimation; default 100000)")
    group.add_argument("--mesh-smoothing", type=int, default=20, metavar="ITER",
                       help="Taubin smoothing iterations (0: raw marching cubes; default 20)")
    group.add_argument("--seg-nrrd", action="store_true",
                       help="segmentation.seg.nrrd: a 3D Slicer segmentation with named, coloured segments")
    group.add_argument("--dicom-seg", action="store_true",
                       help="seg.dcm: DICOM-SEG referencing the scan's DICOM series (a derived CT series ct/ for "
                            "other inputs)")
    fe = parser.add_argument_group("finite-element model (--fe; voxel elements, see docs/export.md)")
    fe.add_argument("--fe", default=None, metavar="FORMATS",
                    help="FE model femur.vtu / femur.inp with materials.csv: comma-separated vtu, inp")
    fe.add_argument("--fe-element", choices=("tet", "hex"), default="tet",
                    help="6 tetrahedra per voxel block (default) or one 8-node hexahedron")
    fe.add_argument("--fe-coarsen", type=int, default=1, metavar="K", help="voxels per element edge (default 1)")
    fe.add_argument("--density", default=None, metavar="NIFTI",
                    help="density image (mg/cm³) on the scan's grid for the element materials")
    fe.add_argument("--hu-to-density", type=float, nargs=2, default=None, metavar=("SLOPE", "INTERCEPT"),
                    help="density (mg/cm³) = SLOPE * HU + INTERCEPT of the scan (with segment: default --calibration)")
    fe.add_argument("--law", default="morgan2003_femoral_neck",
                    help="density-modulus law: morgan2003_femoral_neck (default), morgan2003_pooled, keyak1994")
    fe.add_argument("--density-conversion", type=float, nargs=2, default=(1.0, 0.0), metavar=("SCALE", "OFFSET"),
                    help="density the law sees (g/cm³) = SCALE * density (g/cm³) + OFFSET (default 1 0)")
    fe.add_argument("--material-bins", type=int, default=50, metavar="N", help="number of materials (default 50)")


def request_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~femurseg.export.outputs.ExportRequest` of parsed options (``ValueError`` if invalid)."""
    from femurseg.export.fefiles import FE_FORMATS, FESettings
    from femurseg.export.meshes import MESH_FORMATS, MeshSettings
    from femurseg.export.outputs import ExportRequest, parse_formats

    hu_to_density = args.hu_to_density or getattr(args, "calibration", None)  # segment's --calibration line
    hu_to_density = tuple(hu_to_density) if hu_to_density and args.density is None else None
    settings = MeshSettings(frame=args.frame, smoothing_iterations=args.mesh_smoothing,
                            max_faces=args.mesh_faces or None)
    request = ExportRequest(meshes=parse_formats(args.meshes, MESH_FORMATS, "--meshes"), mesh_settings=settings,
                            seg_nrrd=args.seg_nrrd, dicom_seg=args.dicom_seg,
                            fe=parse_formats(args.fe, FE_FORMATS, "--fe"),
                            fe_settings=FESettings(element=args.fe_element, coarsen=args.fe_coarsen, frame=args.frame,
                                                   law=args.law, bins=args.material_bins,
                                                   density_scale=args.density_conversion[0],
                                                   density_offset=args.density_conversion[1]),
                            density=args.density, hu_to_density=hu_to_density)
    if missing := request.missing_packages():
        extra = "dicom" if {"highdicom", "pydicom"} & set(missing) else "export"
        raise ValueError(f"the requested exports need {', '.join(missing)}: pip install 'femurseg[{extra}]'")
    return request


def main(argv: list[str] | None = None) -> int:
    """``femurseg export --image SCAN --label LABELMAP --output DIR [--meshes stl,vtp,ply] [--seg-nrrd] [--dicom-seg]
    [--fe vtu,inp]``.

    Returns
    -------
    int
        0 on success, 2 for invalid arguments or inputs.
    """
    parser = argparse.ArgumentParser(
        prog="femurseg export",
        description="Export a 0/1/2 label map (0 background, 1 cortical, 2 trabecular; ours, a reference or another "
                    "tool's) as surface meshes in patient millimetres, a 3D Slicer segmentation, DICOM-SEG or a "
                    "voxel finite-element model. "
                    "Writes the files and export.json into "
                    "--output. Exit code 2 for invalid arguments or inputs.",
    )
    parser.add_argument("--image", required=True, type=Path,
                        help="the scan (file or DICOM series folder) the label map belongs to")
    parser.add_argument("--label", required=True, type=Path, help="0/1/2 label map on the scan's grid")
    parser.add_argument("--output", required=True, type=Path, help="output folder")
    add_export_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from femurseg.data.io import read_image
    from femurseg.export.meshes import mesh_summary
    from femurseg.export.outputs import EXPORT_REPORT_FILE, export_outputs

    try:
        request = request_from_args(args)
        if request.empty:
            raise ValueError("nothing to export: give --meshes, --seg-nrrd, --dicom-seg or --fe")
        image = read_image(args.image)
        label = read_image(args.label)
        report = export_outputs(label, args.output, request, image=image, source=str(args.image))
    except (FemursegError, ValueError, ImportError) as error:
        print(f"femurseg export: error: {error}", file=sys.stderr)
        return 2
    if "meshes" in report:
        print(mesh_summary(report["meshes"]))
    if "fe" in report:
        quality, check = report["fe"]["quality"], report["fe"].get("density_check")
        print(f"fe: {quality['elements']} elements, {quality['nodes']} nodes, inverted: {quality['inverted_any']}, "
              f"min dihedral {quality['min_dihedral_deg']}°, max aspect ratio {quality['max_aspect_ratio']}"
              + (f"; element density mean {100 * check['relative_difference']:+.2f} % from the map's" if check else ""))
    print(f"femurseg export: wrote {args.output} (report: {args.output / EXPORT_REPORT_FILE})")
    return 0
