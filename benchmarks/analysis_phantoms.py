"""The analysis layer against the synthetic phantoms' truth (the validation figures of docs/analysis.md).

Usage::

    python benchmarks/analysis_phantoms.py --seed 7000 --n 20 [--preset full] [--out results.csv]

Generates ``--n`` phantoms (seeds ``seed .. seed+n-1``; pick seeds not used in development) and, on
their true label maps, runs ``femurseg.analysis.analyze`` with default settings. Per phantom it
prints the calibration error (slope %, intercept HU) against ``meta["calibration"]``, the vBMD and
BMC error per compartment against the true line applied to the scan inside the same masks, the head
centre error (mm), the neck and shaft axis errors (°, against the rendered neck tube's axis and the
shaft cone's axis), the neck-shaft angle error (°), the cortical thickness error (mm; contour
distance and profile fit, median over the head, trochanter and shaft regions, against the generator's
``cortex_head``, ``cortex_trochanter`` and ``cortex_shaft``) and the run time; then a summary.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

import numpy as np
import SimpleITK as sitk

from femurseg.analysis import analyze
from femurseg.data.synthetic import generate_subject
from femurseg.data.synthetic.measure import true_axes


def angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b), -1.0, 1.0))))


def measure(seed: int, preset: str) -> dict[str, float | str]:
    case = generate_subject(seed, preset)
    start = time.perf_counter()
    result = analyze(case.image, case.label, subject=case.subject_id)
    seconds = time.perf_counter() - start
    truth = case.meta["calibration"]
    line = result.calibration
    row: dict[str, float | str] = {
        "subject": case.subject_id, "side": case.meta["side"], "method": line.method,
        "slope_error_pct": 100.0 * (line.slope / truth["slope"] - 1.0),
        "intercept_error_hu": line.intercept - truth["intercept"], "seconds": seconds,
        "size": "x".join(str(s) for s in case.image.GetSize()),
    }
    hu = sitk.GetArrayFromImage(case.image).astype(np.float64)
    label = sitk.GetArrayFromImage(case.label)
    for name, mask in (("integral", label > 0), ("cortical", label == 1), ("trabecular", label == 2)):
        expected = float(np.mean((hu[mask] - truth["intercept"]) / truth["slope"]))
        measured = result.report["densitometry"][name]["vbmd_mg_cm3"]
        row[f"{name}_vbmd_error_pct"] = 100.0 * (measured / expected - 1.0)
    if result.landmarks is not None:
        marks = result.landmarks
        neck, shaft = true_axes(case.meta)
        row["head_error_mm"] = float(np.linalg.norm(np.asarray(marks["head_centre_mm"]) - case.meta["head_centre_mm"]))
        row["radius_error_mm"] = marks["head_radius_mm"] - case.meta["femur"]["head_radius"]
        row["neck_axis_error_deg"] = angle(np.asarray(marks["neck_axis"]), neck)
        row["shaft_axis_error_deg"] = angle(np.asarray(marks["shaft_axis"]), shaft)
        row["nsa_error_deg"] = marks["neck_shaft_angle_deg"] - angle(neck, -shaft)
    side = result.report["sides"][0] if result.report["sides"] else {}
    femur = case.meta["femur"]
    for region, key in (("head", "cortex_head"), ("trochanter", "cortex_trochanter"), ("shaft", "cortex_shaft")):
        for method, entry in (("contour", "thickness"), ("fit", "thickness_profile_fit")):
            value = side.get(entry, {}).get(region, {}).get("median_mm")
            if value is not None:
                row[f"{region}_{method}_error_mm"] = value - femur[key]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--preset", default="full")
    parser.add_argument("--out", default=None, help="CSV of the per-phantom rows")
    args = parser.parse_args()
    rows = []
    for seed in range(args.seed, args.seed + args.n):
        row = measure(seed, args.preset)
        rows.append(row)
        print(", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if args.out:
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted({k for r in rows for k in r}))
            writer.writeheader()
            writer.writerows(rows)
    ok = sum(abs(r["slope_error_pct"]) <= 1.0 and abs(r["intercept_error_hu"]) <= 3.0 for r in rows)
    print(f"calibration within 1 % and 3 HU: {ok} of {len(rows)}")
    for key in ("slope_error_pct", "intercept_error_hu", "integral_vbmd_error_pct", "cortical_vbmd_error_pct",
                "trabecular_vbmd_error_pct", "head_error_mm", "radius_error_mm", "neck_axis_error_deg",
                "shaft_axis_error_deg", "nsa_error_deg", "head_contour_error_mm", "head_fit_error_mm",
                "trochanter_contour_error_mm", "trochanter_fit_error_mm", "shaft_contour_error_mm",
                "shaft_fit_error_mm", "seconds"):
        values = np.array([r[key] for r in rows if key in r], float)
        if values.size:
            print(f"{key}: mean {values.mean():+.3f}, max |.| {np.abs(values).max():.3f}, "
                  f"median {np.median(values):+.3f} (n={values.size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
