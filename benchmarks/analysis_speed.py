"""Time and peak memory of ``femurseg.analysis.analyze`` on a 512×512×300 scan (issue 18's target: ≤ 20 s, ≤ 4 GB).

Usage::

    python benchmarks/analysis_speed.py [--runs 3] [--seed 7000] [--append docs/benchmarks.md]

The scan is a held-out full-preset phantom (its femur, pelvis, soft tissue and calibration
phantom) resampled onto a 512×512×300 grid centred on it: 0.7 mm in-plane (air around it,
-1024 HU, as in a clinical field of view larger than the body) and its own z extent in 300
slices (no air slices above or below, which no real scan has and which would hide the
calibration phantom's along-z constancy), with its true label map on the same grid; so the whole-volume steps (rod
search, density map, QC picture) see a clinical-size volume and the femur steps a real
femur. Each run is a fresh process (`analyze` with default settings: phantom calibration,
densitometry, geometry, regions, contour and profile-fit thickness, DXA, QC; outputs written
to a temporary folder): wall time of `analyze` + `write`, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHAPE_XYZ = (512, 512, 300)
INPLANE = 0.7
SECTION = "## Analysis of a 512×512×300 scan (benchmarks/analysis_speed.py, issue 18)"


def make_scan(seed: int, folder: Path) -> tuple[Path, Path]:
    from femurseg.data.synthetic import generate_subject

    case = generate_subject(seed, preset="full")
    spacing = np.array([INPLANE, INPLANE, (case.image.GetSize()[2] - 1) * case.image.GetSpacing()[2] / SHAPE_XYZ[2]])
    first = np.asarray(case.image.GetOrigin())
    centre = first + (np.asarray(case.image.GetSize()) - 1) * np.asarray(case.image.GetSpacing()) / 2.0
    origin = centre - (np.asarray(SHAPE_XYZ) - 1) * spacing / 2.0
    reference = sitk.Image(SHAPE_XYZ, sitk.sitkInt16)
    reference.SetSpacing(tuple(float(v) for v in spacing))
    reference.SetOrigin(tuple(float(v) for v in origin))
    image = sitk.Resample(case.image, reference, sitk.Transform(), sitk.sitkLinear, -1024, sitk.sitkInt16)
    label = sitk.Resample(case.label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    paths = folder / "scan.nii.gz", folder / "label.nii.gz"
    sitk.WriteImage(image, str(paths[0]))
    sitk.WriteImage(label, str(paths[1]))
    return paths


def worker(scan: str, label: str) -> None:
    from femurseg.analysis import analyze

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = analyze(scan, label)
        result.write(out)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB → GiB
    side = result.report["sides"][0]
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_gib": round(peak, 2),
                      "calibration": result.calibration.method,
                      "integral_vbmd": result.report["densitometry"]["integral"]["vbmd_mg_cm3"],
                      "thickness_fit_vertices": side.get("thickness_profile_fit", {}).get("all", {}).get("n")}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument("--append", type=Path, default=None, help="replace or add this section in a Markdown file")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        scan, label = make_scan(args.seed, Path(tmp))
        runs = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, __file__, "--worker", str(scan), str(label)], check=True,
                                 capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(runs[-1], flush=True)
    seconds = statistics.median(r["seconds"] for r in runs)
    peak = max(r["peak_rss_gib"] for r in runs)
    import torch  # only for the machine line

    text = (f"{SECTION}\n\nMachine: {platform.machine()}, {platform.processor() or 'CPU'}, "
            f"{len(__import__('os').sched_getaffinity(0))} logical CPUs, Python {platform.python_version()}, "
            f"torch {torch.__version__} (not used by the analysis).\n\n"
            f"Scan: full-preset phantom seed {args.seed} resampled onto {SHAPE_XYZ[0]}×{SHAPE_XYZ[1]}×{SHAPE_XYZ[2]} "
            f"voxels ({INPLANE} mm in-plane, the phantom's z extent in {SHAPE_XYZ[2]} slices), its true label map; "
            f"`analyze` with default settings "
            f"+ `write` (calibration {runs[0]['calibration']}, {runs[0]['thickness_fit_vertices']} profile-fit "
            "vertices), one fresh process per run.\n\n"
            "| runs | median s | min s | max s | peak RSS GiB |\n|---|---|---|---|---|\n"
            f"| {len(runs)} | {seconds:.1f} | {min(r['seconds'] for r in runs):.1f} | "
            f"{max(r['seconds'] for r in runs):.1f} | {peak:.2f} |\n")
    print(text)
    if args.append:
        from markdown_section import replace_section

        replace_section(args.append, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
