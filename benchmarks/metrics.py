"""Speed of the femurseg metrics on full-size QCT label maps (512 × 512 × 300), against MONAI.

Usage::

    python benchmarks/metrics.py [--runs 5] [--monai-runs 3] [--append docs/benchmarks.md]

Builds a femur-like 0/1/2 reference (shaft, neck and head; cortex 1.5-4 mm) on a
512 × 512 × 300 grid with 0.7 × 0.7 × 1.0 mm voxels and a prediction whose surface
is displaced by smooth random noise (≈ ±1.5 mm), then times, in this process on one
core:

- ``surface_metrics`` for the periosteal target (HD, HD95, ASSD, surface Dice from
  one pair of distance transforms),
- ``evaluate_label_maps`` (all metrics for periosteal, endosteal and cortical),
- MONAI 1.x ``compute_hausdorff_distance(percentile=95)``,
  ``compute_average_surface_distance(symmetric=True)`` and ``compute_surface_dice``
  for the periosteal target (the same four numbers; reference),

and checks that both give the same values. With ``--append`` the Markdown section
"Metrics" of the file is replaced (or added at the end); other sections are kept.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
from scipy import ndimage

from femurseg.metrics import evaluate_label_maps, surface_metrics

from markdown_section import replace_section  # benchmarks/ is on sys.path when run as a script

SHAPE = (300, 512, 512)  # (z, y, x)
SPACING = (1.0, 0.7, 0.7)  # mm, array order
SECTION = "## Metrics (benchmarks/metrics.py, issue 7)"


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance (mm) from points (N, 3) to the segment a-b."""
    ab = b - a
    t = np.clip(((points - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def femur_phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reference and prediction 0/1/2 maps of a simple femur-like shape, (z, y, x)."""
    rng = np.random.default_rng(seed)
    box = (slice(0, 300), slice(150, 330), slice(170, 370))
    zz, yy, xx = np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij")
    points = np.stack([zz * SPACING[0], yy * SPACING[1], xx * SPACING[2]], axis=-1).reshape(-1, 3)
    shaft_a, shaft_b = np.array([0.0, 168.0, 189.0]), np.array([230.0, 168.0, 189.0])
    neck_b = np.array([260.0, 168.0, 235.0])
    head_c, head_r = neck_b + np.array([8.0, 0.0, 6.0]), 23.0
    sdf = np.minimum.reduce([
        _segment_distance(points, shaft_a, shaft_b) - 14.0,
        _segment_distance(points, shaft_b, neck_b) - 15.0,
        np.linalg.norm(points - head_c, axis=1) - head_r,
    ]).reshape(zz.shape)
    thickness = 1.5 + 2.5 * np.clip(1.0 - zz / 260.0, 0.0, 1.0)  # thick shaft, thin head
    coarse = rng.standard_normal((12, 8, 8))
    noise = ndimage.zoom(coarse, np.array(sdf.shape) / coarse.shape, order=3)[tuple(slice(0, n) for n in sdf.shape)]
    noise *= 1.5 / np.abs(noise).max()
    ref, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    for out, field in ((ref, sdf), (pred, sdf + noise)):
        crop = np.where(field <= 0, np.uint8(1), np.uint8(0))
        crop[field <= -thickness] = 2
        out[box] = crop
    return pred, ref


def _median_time(function: Callable[[], object], runs: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(runs):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), value


def _monai_surface(pred: np.ndarray, ref: np.ndarray, tolerance_mm: float) -> dict[str, float]:
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    p = torch.from_numpy(pred[None, None].astype(np.float32))
    r = torch.from_numpy(ref[None, None].astype(np.float32))
    kwargs = {"include_background": True, "spacing": list(SPACING)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "hd_mm": float(compute_hausdorff_distance(p, r, **kwargs)),
            "hd95_mm": float(compute_hausdorff_distance(p, r, percentile=95, **kwargs)),
            "assd_mm": float(compute_average_surface_distance(p, r, symmetric=True, **kwargs)),
            "surface_dice": float(compute_surface_dice(p, r, [tolerance_mm], **kwargs)),
        }


def run(runs: int, monai_runs: int) -> str:
    """Time the metrics and return the Markdown section."""
    load = os.getloadavg()[0]
    pred_labels, ref_labels = femur_phantom()
    pred, ref = pred_labels >= 1, ref_labels >= 1
    t_surface, ours = _median_time(lambda: surface_metrics(pred, ref, SPACING, 1.0), runs)
    t_all, row = _median_time(lambda: evaluate_label_maps(pred_labels, ref_labels, SPACING, 1.0), runs)
    lines = [
        f"| femurseg `surface_metrics` (periosteal: HD, HD95, ASSD, NSD) | {runs} | {t_surface:.2f} |",
        f"| femurseg `evaluate_label_maps` (3 targets, all metrics) | {runs} | {t_all:.2f} |",
    ]
    agreement = ""
    if monai_runs > 0:
        t_monai, theirs = _median_time(lambda: _monai_surface(pred, ref, 1.0), monai_runs)
        lines.append(f"| MONAI HD + HD95 + ASSD + NSD (periosteal, CPU) | {monai_runs} | {t_monai:.2f} |")
        diff = max(abs(ours[k] - theirs[k]) for k in ours)  # type: ignore[index]
        agreement = (
            f"Largest difference from MONAI over the four periosteal values: {diff:.2e} "
            f"(femurseg/MONAI time ratio {t_surface / t_monai:.2f}). "
        )
    box_voxels = int(np.prod([s.stop - s.start for s in ndimage.find_objects((pred | ref).astype(np.uint8))[0]]))
    values = ", ".join(f"{k.removeprefix('periosteal_')} {row[k]:.3g}" for k in (  # type: ignore[index]
        "periosteal_dice", "periosteal_hd95_mm", "periosteal_assd_mm", "periosteal_surface_dice"))
    return "\n".join([
        SECTION, "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (shared), "
        f"load average {load:.1f} at start, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"SciPy {scipy.__version__}; one process. "
        f"Masks {SHAPE[2]}×{SHAPE[1]}×{SHAPE[0]} voxels of {SPACING[2]}×{SPACING[1]}×{SPACING[0]} mm, "
        f"femur-like phantom (union bounding box {box_voxels / 1e6:.1f} of {np.prod(SHAPE) / 1e6:.0f} Mvoxels); "
        "median wall-clock seconds.", "",
        "| what | runs | median s |", "|---|---|---|", *lines, "",
        f"{agreement}Periosteal values: {values}.", "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--monai-runs", type=int, default=3, help="0 skips MONAI")
    parser.add_argument("--append", type=Path, default=None, help="Markdown file to update, e.g. docs/benchmarks.md")
    args = parser.parse_args()
    text = run(args.runs, args.monai_runs)
    print(text)
    if args.append is not None:
        replace_section(args.append, SECTION, text)


if __name__ == "__main__":
    main()
