"""vBMD and BMC per compartment with a model's masks against the truth (issue 18: within 5 %).

Usage::

    python benchmarks/heldout.py --model femur-ct-v3 --work WORK          # phantoms + segmentations
    python benchmarks/analysis_masks.py --work WORK [--refine half-maximum] [--append docs/benchmarks.md]

For every phantom of ``WORK/phantoms/manifest.csv`` with a segmentation in
``WORK/segmentation_<refine>/<subject>/segmentation.nii.gz``, runs
``femurseg.analysis.analyze`` with the phantom's true calibration line (``given``, so that
only the masks differ) on the true label map and on the segmentation, and compares each
compartment's vBMD (mg/cm³) and BMC (mg) with the truth: the true line applied to the scan
inside the true masks (what ``benchmarks/analysis_phantoms.py`` checks the true-mask analysis
against). Prints one row per phantom and the mean, range and count within 5 %.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

COMPARTMENTS = ("integral", "cortical", "trabecular")
SECTION = "## Analysis with a model's masks: vBMD and BMC against the truth (benchmarks/analysis_masks.py, issue 18)"


def truth(image: sitk.Image, label: sitk.Image, slope: float, intercept: float) -> dict[str, dict[str, float]]:
    hu = sitk.GetArrayFromImage(image).astype(np.float64)
    lab = sitk.GetArrayFromImage(label)
    voxel_cm3 = float(np.prod(image.GetSpacing())) / 1000.0
    out = {}
    for name, mask in (("integral", lab > 0), ("cortical", lab == 1), ("trabecular", lab == 2)):
        rho = (hu[mask] - intercept) / slope
        out[name] = {"vbmd": float(rho.mean()), "bmc": float(rho.sum() * voxel_cm3)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--refine", default="half-maximum")
    parser.add_argument("--note", default="")
    parser.add_argument("--append", type=Path, default=None)
    args = parser.parse_args()
    from femurseg.analysis import analyze

    rows = []
    with open(args.work / "phantoms" / "manifest.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    for record in records:
        subject = record["subject_id"]
        seg = args.work / f"segmentation_{args.refine}" / subject / "segmentation.nii.gz"
        if not seg.is_file():
            continue
        root = args.work / "phantoms"
        image = sitk.ReadImage(str(root / record["image"]))
        label = sitk.ReadImage(str(root / record["label"]))
        meta = json.loads((root / "meta" / f"{subject}.json").read_text())
        line = (meta["calibration"]["slope"], meta["calibration"]["intercept"])
        expected = truth(image, label, *line)
        predicted = analyze(image, sitk.ReadImage(str(seg)), given=line, thickness=False, dxa=False, qc=False)
        row: dict[str, float | str] = {"subject": subject}
        for name in COMPARTMENTS:
            got = predicted.report["densitometry"][name]
            row[f"{name}_vbmd_pct"] = 100.0 * (got["vbmd_mg_cm3"] / expected[name]["vbmd"] - 1.0)
            row[f"{name}_bmc_pct"] = 100.0 * (got["bmc_mg"] / expected[name]["bmc"] - 1.0)
        rows.append(row)
        print(", ".join(f"{k}={v:+.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if not rows:
        print("no segmentations found", file=sys.stderr)
        return 1
    lines = [SECTION, "", f"{len(rows)} phantoms from `{args.work}`, segmentations `--refine {args.refine}`. "
             + args.note, "",
             "| compartment | vBMD error: mean (range) | within 5 % | BMC error: mean (range) | within 5 % |",
             "|---|---|---|---|---|"]
    for name in COMPARTMENTS:
        v = np.array([r[f"{name}_vbmd_pct"] for r in rows], float)
        b = np.array([r[f"{name}_bmc_pct"] for r in rows], float)
        lines.append(f"| {name} | {v.mean():+.1f} % ({v.min():+.1f} to {v.max():+.1f}) | {int((abs(v) <= 5).sum())} of "
                     f"{len(v)} | {b.mean():+.1f} % ({b.min():+.1f} to {b.max():+.1f}) | {int((abs(b) <= 5).sum())} of "
                     f"{len(b)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        sys.path.insert(0, str(Path(__file__).parent))
        from markdown_section import replace_section

        replace_section(args.append, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
