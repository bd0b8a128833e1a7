"""``femurseg analyze``: calibrated bone density, hip geometry and cortical thickness of a label map.

Examples
--------
.. code-block:: console

    femurseg analyze --image scan.nii.gz --label out/scan/segmentation.nii.gz --output out/scan/analysis
    femurseg analyze --image scan.nii.gz --label ref.nii.gz --output a/ --phantom qrm_bdc_3
    femurseg analyze --image scan.nii.gz --label ref.nii.gz --output a/ --calibration-densities 0 50 100 200
    femurseg analyze --image scan.nii.gz --label ref.nii.gz --output a/ --phantomless
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from femurseg.errors import FemursegError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``femurseg analyze``."""
    parser = argparse.ArgumentParser(
        prog="femurseg analyze",
        description="Calibrate a hip CT and measure the femur of a 0/1/2 label map on its grid: density.nii.gz "
                    "(mg/cm³), calibration.json, report.json and summary.csv (volume, vBMD, BMC per compartment and "
                    "region), landmarks.json, regions.nii.gz, cortical thickness, DXA-equivalent aBMD and a QC "
                    "picture. Exit code 2 for invalid input or a refused calibration (nothing is written).",
    )
    parser.add_argument("--image", required=True, type=Path, help="the CT scan in HU (file or DICOM folder)")
    parser.add_argument("--label", required=True, type=Path, help="0/1/2 label map on the scan's grid")
    parser.add_argument("--output", required=True, type=Path, help="output folder")
    parser.add_argument("--subject", default=None, help="name in the report (default: the image file's stem)")
    calibration = parser.add_argument_group(
        "calibration (one of; default: look for the default phantom, fall back to internal calibration)")
    calibration.add_argument("--phantom", metavar="NAME_OR_JSON",
                             help="in-scan phantom: a registered name (synthetic_k2hpo4, qrm_bdc_3, ...) or a JSON "
                                  "definition file")
    calibration.add_argument("--calibration-densities", type=float, nargs="+", metavar="MG_CM3",
                             help="in-scan phantom with these rod densities (mg/cm³ of --material)")
    calibration.add_argument("--material", choices=("k2hpo4", "hydroxyapatite"), default="k2hpo4",
                             help="material of --calibration-densities or --calibration (default k2hpo4)")
    calibration.add_argument("--calibration-json", type=Path, metavar="FILE",
                             help="asynchronous: a line from a separate phantom scan (a calibration.json, or "
                                  "{\"slope\": S, \"intercept\": I})")
    calibration.add_argument("--phantom-scan", type=Path, metavar="SCAN",
                             help="asynchronous: measure the line on this separate phantom scan (rods named by "
                                  "--phantom or --calibration-densities)")
    calibration.add_argument("--calibration", type=float, nargs=2, metavar=("SLOPE", "INTERCEPT"),
                             help="given line HU = INTERCEPT + SLOPE * density (mg/cm³)")
    calibration.add_argument("--phantomless", "--internal-calibration", action="store_true", dest="phantomless",
                             help="internal calibration from the air, fat and muscle of the scan")
    calibration.add_argument("--warn-r2", type=float, default=0.98, help="warn below this R² (default 0.98)")
    calibration.add_argument("--refuse-r2", type=float, default=0.90, help="refuse below this R² (default 0.90)")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--no-thickness", action="store_true", help="skip the cortical thickness map")
    outputs.add_argument("--no-profile-fit", action="store_true",
                         help="thickness from the contours only, no model fit of the CT profiles")
    outputs.add_argument("--cortical-hu", type=float, default=None,
                         help="profile fit: the cortical bone's HU (default: estimated from thick cortex)")
    outputs.add_argument("--blur-sigma-mm", type=float, default=None,
                         help="profile fit: the scanner blur's Gaussian SD in mm (default: estimated from thick cortex)")
    outputs.add_argument("--no-dxa", action="store_true", help="skip the DXA-equivalent projection")
    outputs.add_argument("--no-qc", action="store_true", help="skip analysis_qc.png")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``femurseg analyze``; 0 on success, 2 on invalid input or a refused calibration."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from femurseg.analysis import AnalysisSettings, CalibrationGates, analyze
    from femurseg.analysis.profile_fit import ProfileFitSettings

    phantom_scan = str(args.phantom_scan) if args.phantom_scan else None
    settings = AnalysisSettings(
        phantom=args.phantom, densities=tuple(args.calibration_densities) if args.calibration_densities else None,
        material=args.material, calibration_json=str(args.calibration_json) if args.calibration_json else None,
        phantom_scan=phantom_scan, given=tuple(args.calibration) if args.calibration else None,
        internal=args.phantomless, gates=CalibrationGates(warn_r2=args.warn_r2, refuse_r2=args.refuse_r2),
        thickness=not args.no_thickness, dxa=not args.no_dxa, qc=not args.no_qc,
        profile_fit=None if args.no_profile_fit else ProfileFitSettings(cortical_hu=args.cortical_hu,
                                                                         sigma_mm=args.blur_sigma_mm),
    )
    try:
        result = analyze(args.image, args.label, settings, subject=args.subject)
        result.write(args.output)
    except (FemursegError, ValueError) as error:
        print(f"femurseg analyze: error: {error}", file=sys.stderr)
        return 2
    line = result.calibration
    print(f"femurseg analyze: {result.subject}: {line.method} calibration (slope {line.slope:.4f} HU per mg/cm³, "
          f"intercept {line.intercept:.2f} HU"
          + (f", R² {line.r2:.4f}" if line.r2 is not None else "") + f"); outputs in {args.output}")
    for warning in result.report.get("warnings", []):
        print(f"  warning: {warning}")
    return 0
