"""Benchmark and realism report of the synthetic QCT cohort (issue 3).

Usage::

    python benchmarks/synth.py timing [--n 5] [--append docs/benchmarks.md]
    python benchmarks/synth.py distributions [--n 20] [--preset full]
    python benchmarks/synth.py figure --out docs/images/synthetic_views.png [--seeds 0,1,2]
    python benchmarks/synth.py real --slices /work/shared/realct/slices

``timing`` generates full-preset subjects one after the other in this process
(one core) and reports the median and maximum time; ``distributions`` prints
the measured tissue HU, cortical thickness per region, head radius and
neck-shaft angle as Markdown; ``figure`` draws axial, coronal and sagittal
slices; ``real`` compares histogram statistics with real CT slices.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from femurseg.data.synthetic import PRESETS, generate_subject
from femurseg.data.synthetic.femur import REGIONS
from femurseg.data.synthetic.measure import cortical_thickness, head_radius, tissue_hu

PUBLISHED = {
    "fat": "-120 to -80", "muscle": "35 to 65", "air": "-1000", "cortical": "700 to 1800",
    "trabecular": "50 to 400", "marrow": "-50 to 50", "skin": "(30 to 60)", "pelvis": "(bone, mixed)",
    "head": "0.3-1", "neck_superior": "0.5-2", "calcar": "2-4", "trochanter": "0.3-1", "shaft": "4-7",
}


def timing(n: int, append: Path | None) -> str:
    """Time ``n`` subjects per preset; return (and optionally append) a Markdown section."""
    rows = []
    for name in ("tiny", "quick", "full"):
        times, voxels = [], []
        for seed in range(n):
            start = time.perf_counter()
            case = generate_subject(seed, name)
            times.append(time.perf_counter() - start)
            voxels.append(int(np.prod(case.image.GetSize())))
        rows.append(f"| {name} | {n} | {np.median(times):.2f} | {np.max(times):.2f} | "
                    f"{np.median(voxels) / 1e6:.2f} | {np.max(voxels) / 1e6:.2f} |")
    text = "\n".join([
        "", "## Synthetic cohort generation (benchmarks/synth.py, issue 3)", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (shared), "
        f"Python {platform.python_version()}, NumPy {np.__version__}; one process, seeds 0..{n - 1}, "
        "wall-clock seconds per subject (sampling + rendering, no file writing).", "",
        "| preset | subjects | median s | max s | median Mvoxels | max Mvoxels |",
        "|---|---|---|---|---|---|", *rows, "",
    ])
    if append is not None:
        with append.open("a") as stream:
            stream.write(text)
    return text


def distributions(n: int, preset: str) -> str:
    """Measured distributions over ``n`` subjects as Markdown tables."""
    hu: dict[str, list[tuple[float, float]]] = {}
    thick: dict[str, list[float]] = {r: [] for r in REGIONS}
    radius, radius_true, nsa, groups, sides, spacing = [], [], [], [], [], []
    for seed in range(n):
        case = generate_subject(seed, preset)
        for name, (mean, sd, _) in tissue_hu(case).items():
            hu.setdefault(name, []).append((mean, sd))
        for region, stats in cortical_thickness(case).items():
            thick[region].append(stats["median"])
        radius.append(head_radius(case))
        radius_true.append(case.meta["femur"]["head_radius"])
        nsa.append(case.meta["femur"]["neck_shaft_angle"])
        groups.append(case.meta["group"])
        sides.append(case.meta["side"])
        spacing.append(case.meta["spacing"])
    sp = np.asarray(spacing)
    lines = [f"Subjects: {n} ({preset} preset, seeds 0..{n - 1}); sides: {sides.count('left')} left / "
             f"{sides.count('right')} right; groups: " + ", ".join(f"{g} {groups.count(g)}" for g in sorted(set(groups)))
             + f"; in-plane spacing {sp[:, 0].min():.2f}-{sp[:, 0].max():.2f} mm, slices {sp[:, 2].min():.2f}-"
             f"{sp[:, 2].max():.2f} mm.", "",
             "| tissue | published HU | mean HU (range over subjects) | SD HU (median) | subjects |",
             "|---|---|---|---|---|"]
    for name, values in hu.items():
        arr = np.asarray(values)
        lines.append(f"| {name} | {PUBLISHED.get(name, '')} | {np.median(arr[:, 0]):.0f} "
                     f"({arr[:, 0].min():.0f} to {arr[:, 0].max():.0f}) | {np.median(arr[:, 1]):.0f} | {len(arr)} |")
    lines += ["", "| cortical region | published mm | measured median mm (range over subjects) | subjects |",
              "|---|---|---|---|"]
    for region, values in thick.items():
        if values:
            lines.append(f"| {region} | {PUBLISHED[region]} | {np.median(values):.2f} "
                         f"({np.min(values):.2f} to {np.max(values):.2f}) | {len(values)} |")
    r, rt = np.asarray(radius), np.asarray(radius_true)
    lines += ["", "| shape | published | measured median (range) |", "|---|---|---|",
              f"| head radius, from label (mm) | 20-26 | {np.median(r):.1f} ({r.min():.1f} to {r.max():.1f}); "
              f"error vs sampled {np.abs(r - rt).mean():.2f} mm mean |",
              f"| neck-shaft angle, sampled (deg) | 120-140 | {np.median(nsa):.1f} ({min(nsa):.1f} to {max(nsa):.1f}) |"]
    return "\n".join(lines)


def figure(out: Path, seeds: list[int], preset: str) -> None:
    """Axial (head centre and 40 mm lower), coronal and sagittal slices through the head centre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(seeds), 4, figsize=(13, 3.4 * len(seeds)), facecolor="black")
    axes = np.atleast_2d(axes)
    for row, seed in enumerate(seeds):
        case = generate_subject(seed, preset)
        image = sitk.GetArrayFromImage(case.image).astype(np.float32)
        sx, sy, sz = case.image.GetSpacing()
        i, j, k = case.image.TransformPhysicalPointToIndex(tuple(case.meta["head_centre_mm"]))
        low = max(k - int(round(40.0 / sz)), 0)
        label = sitk.GetArrayFromImage(case.label)
        if label[low].any():  # coronal plane through the neck and shaft rather than the head centre
            j = int(round(np.nonzero(label[low])[0].mean()))
        views = [(image[k], sy / sx, "axial, head centre"), (image[low], sy / sx, "axial, 40 mm lower"),
                 (image[:, j, :][::-1], sz / sx, "coronal, through the neck"), (image[:, :, i][::-1], sz / sy, "sagittal")]
        for col, (view, aspect, title) in enumerate(views):
            ax = axes[row, col]
            ax.imshow(view, cmap="gray", vmin=-250, vmax=1250, aspect=aspect, interpolation="bilinear")
            ax.set_axis_off()
            ax.set_title(f"{case.subject_id} {case.meta['side']}, {title}" if col == 0 else title,
                         color="white", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=56, facecolor="black")


def _slice_stats(image: np.ndarray, femur: np.ndarray) -> tuple[float, float, float, float]:
    """Fat peak, muscle peak, femur mean HU and femur 95th percentile HU of one axial slice."""
    body = image[(image > -300) & (image < 200)]
    hist, edges = np.histogram(body, bins=np.arange(-300, 201, 5))
    centres = (edges[:-1] + edges[1:]) / 2
    fat = centres[centres < -30][np.argmax(hist[centres < -30])]
    muscle = centres[centres > 0][np.argmax(hist[centres > 0])]
    bone = image[femur > 0]
    return float(fat), float(muscle), float(bone.mean()), float(np.percentile(bone, 95))


def real(slices: Path, n: int, preset: str) -> str:
    """Compare axial-slice statistics of real CT slices and synthetic subjects."""
    stats_real = []
    for path in sorted(glob.glob(str(slices / "*_ct.nii.gz"))):
        image = sitk.GetArrayFromImage(sitk.ReadImage(path)).squeeze().astype(np.float32)
        femur = sitk.GetArrayFromImage(sitk.ReadImage(path.replace("_ct.", "_femur."))).squeeze()
        if femur.sum() > 50:
            stats_real.append(_slice_stats(image, femur))
    stats_syn = []
    for seed in range(n):
        case = generate_subject(seed, preset)
        image = sitk.GetArrayFromImage(case.image).astype(np.float32)
        label = sitk.GetArrayFromImage(case.label)
        k = case.image.TransformPhysicalPointToIndex(tuple(case.meta["head_centre_mm"]))[2]
        for dz in (-45.0, -20.0, 0.0):
            z = k + int(round(dz / case.image.GetSpacing()[2]))
            if 0 <= z < image.shape[0] and label[z].sum() > 50:
                stats_syn.append(_slice_stats(image[z], label[z]))
    a, b = np.asarray(stats_real), np.asarray(stats_syn)
    names = ["fat peak HU", "muscle peak HU", "femur mean HU (periosteal mask)", "femur 95th percentile HU"]
    lines = [f"| axial-slice statistic | real: median (IQR), {len(a)} slices | synthetic: median (IQR), {len(b)} slices |",
             "|---|---|---|"]
    for i, name in enumerate(names):
        qa, qb = np.percentile(a[:, i], [25, 50, 75]), np.percentile(b[:, i], [25, 50, 75])
        lines.append(f"| {name} | {qa[1]:.0f} ({qa[0]:.0f} to {qa[2]:.0f}) | {qb[1]:.0f} ({qb[0]:.0f} to {qb[2]:.0f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("timing")
    t.add_argument("--n", type=int, default=5)
    t.add_argument("--append", type=Path, default=None)
    d = sub.add_parser("distributions")
    d.add_argument("--n", type=int, default=20)
    d.add_argument("--preset", default="full", choices=sorted(PRESETS))
    f = sub.add_parser("figure")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--seeds", default="0,1,2")
    f.add_argument("--preset", default="full", choices=sorted(PRESETS))
    r = sub.add_parser("real")
    r.add_argument("--slices", type=Path, default=Path("/work/shared/realct/slices"))
    r.add_argument("--n", type=int, default=10)
    r.add_argument("--preset", default="full", choices=sorted(PRESETS))
    args = parser.parse_args()
    if args.command == "timing":
        print(timing(args.n, args.append))
    elif args.command == "distributions":
        print(distributions(args.n, args.preset))
    elif args.command == "figure":
        figure(args.out, [int(s) for s in args.seeds.split(",")], args.preset)
    else:
        print(real(args.slices, args.n, args.preset))


if __name__ == "__main__":
    main()
