"""Speed and memory of ``femurseg segment`` against MONAI's sliding window.

Usage::

    python benchmarks/inference.py --checkpoint runs/.../best.ckpt [--runs 5] [--append docs/benchmarks.md]
    python benchmarks/inference.py --random-weights ...   # the quick-start net with random weights

1. Speed: one full-preset synthetic scan (seed 0) is preprocessed with the
   checkpoint's settings; the same network, window (the checkpoint's patch size),
   overlap 0.5 and Gaussian blending are run by MONAI ``sliding_window_inference``
   (fp32, the network in PyTorch's default layout: the reference; and once more with
   femurseg's channels-last weights), by femurseg's ``sliding_window_inference`` in
   fp32 over every window, with femurseg's defaults (channels-last weights,
   coarse-to-fine ``sparse`` windows, precision ``auto``: bf16 only where it is
   fast), and with the opt-in skipping of
   windows whose densest voxel is below 300 HU. Runs are interleaved; medians of
   ``--runs``. Agreement is the fraction of voxels with the same argmax.
2. Memory and growth: ``Predictor.predict`` end to end (read-in image → label map,
   report) in a fresh process per size on femur-like scans of 0.7 × 0.7 × 1.0 mm
   voxels up to 512 × 512 × 300, periosteal + endosteal models (the same weights
   twice), no TTA; wall time and peak RSS of the process.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
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
import torch

from markdown_section import replace_section  # benchmarks/ is on sys.path when run as a script

SKIP_HU = 300.0  # the opt-in --skip-below-hu value timed as a third variant
SECTION = "## Inference (benchmarks/inference.py, issue 6)"


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()}, {cpu}, {os.cpu_count()} logical CPUs (shared; load average {load:.1f} at start), "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads, CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}, Python {platform.python_version()}")


def _checkpoint(args: argparse.Namespace, folder: Path) -> Path:
    """The checkpoint to time, or a random-weight quick-start net saved like SegmentationModule does."""
    if args.checkpoint:
        return Path(args.checkpoint)
    from femurseg.data.preprocess import Preprocessing
    from femurseg.models import NETS

    kwargs = {"in_channels": 1, "out_channels": 2, "channels": [8, 16, 32, 64], "strides": [2, 2, 2]}
    torch.manual_seed(0)
    net = NETS.create("unet3d", **kwargs)
    path = folder / "random_periosteal.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "femurseg": {"format_version": 1, "target": "periosteal", "net": "unet3d", "net_kwargs": kwargs,
                             "preprocessing": Preprocessing(spacing=(2.0, 2.0, 2.0)).to_dict(),
                             "patch_size": [48, 48, 48], "classes": ["background", "periosteal"]}}, path)
    return path


def _relabelled(path: Path, target: str, folder: Path) -> Path:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["femurseg"]["target"] = target
    out = folder / f"{target}.ckpt"
    torch.save({"state_dict": checkpoint["state_dict"], "femurseg": checkpoint["femurseg"]}, out)
    return out


def speed(checkpoint: Path, runs: int) -> dict[str, float]:
    from monai.inferers import sliding_window_inference as monai_sliding_window

    from femurseg.data.preprocess import preprocess_image
    from femurseg.data.synthetic import generate_subject
    from femurseg.models.checkpoints import build_net, read_checkpoint
    from femurseg.inference.predictor import InferenceSettings, resolve_precision
    from femurseg.sliding import SparseWindows, sliding_window_inference

    info = read_checkpoint(checkpoint)
    net = build_net(info)  # femurseg's layout: channels-last weights
    plain = copy.deepcopy(net).to(memory_format=torch.contiguous_format)  # as a MONAI user builds it
    case = generate_subject(0, "full")
    pre = preprocess_image(case.image, info.preprocessing)
    volume = torch.from_numpy(np.ascontiguousarray(sitk.GetArrayFromImage(pre).transpose(2, 1, 0)))[None, None]
    defaults = InferenceSettings()
    low, high = info.preprocessing.hu_window
    level = (SKIP_HU - (low + high) / 2) / ((high - low) / 2)
    precision = resolve_precision(defaults.precision, torch.device("cpu"))
    patch = info.patch_size
    windows_seen: list[int] = []

    def counted(x: torch.Tensor) -> torch.Tensor:
        windows_seen.append(x.shape[0])
        return net(x)

    def counted_plain(x: torch.Tensor) -> torch.Tensor:
        windows_seen.append(x.shape[0])
        return plain(x)

    variants = {
        "monai": lambda: monai_sliding_window(volume, patch, defaults.batch_size, lambda x: torch.softmax(plain(x), 1),
                                              overlap=defaults.overlap, mode="gaussian"),
        "monai_channels_last": lambda: monai_sliding_window(
            volume, patch, defaults.batch_size, lambda x: torch.softmax(net(x), 1), overlap=defaults.overlap,
            mode="gaussian"),
        "femurseg_fp32_all": lambda: sliding_window_inference(volume, counted_plain, patch, defaults.overlap,
                                                              "gaussian", defaults.batch_size, activation="softmax"),
        "femurseg_default": lambda: sliding_window_inference(
            volume, counted, patch, defaults.overlap, "gaussian", defaults.batch_size, activation="softmax",
            precision=precision, pad_value=-1.0, skip_value=[1.0, 0.0],
            sparse=SparseWindows(channel=1, threshold=defaults.sparse_threshold, core=defaults.sparse_core)),
        "femurseg_skip": lambda: sliding_window_inference(
            volume, counted, patch, defaults.overlap, "gaussian", defaults.batch_size, activation="softmax",
            precision=precision, pad_value=-1.0, skip=lambda w: w.flatten(1).amax(1) < level, skip_value=[1.0, 0.0]),
    }
    assert defaults.windows == "sparse", "the default run below assumes sparse windows"
    times: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    with torch.no_grad():
        for _ in range(runs):
            for name, run in variants.items():
                windows_seen.clear()
                start = time.perf_counter()
                outputs[name] = run()
                times[name].append(time.perf_counter() - start)
                counts[name] = sum(windows_seen)
    labels = {k: v.argmax(1) for k, v in outputs.items()}
    reference = labels["femurseg_fp32_all"]
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {
        "scan": f"{case.image.GetSize()} voxels at {tuple(round(s, 2) for s in case.image.GetSpacing())} mm",
        "grid": "x".join(str(s) for s in volume.shape[2:]), "patch": "x".join(map(str, patch)),
        "precision": precision, "runs": runs,
        **{f"{k}_s": round(v, 2) for k, v in medians.items()},
        "windows_all": counts["femurseg_fp32_all"], "windows_skip": counts["femurseg_skip"],
        "windows_default": counts["femurseg_default"],
        "ratio_default_vs_monai": round(medians["femurseg_default"] / medians["monai"], 3),
        "ratio_skip_vs_monai": round(medians["femurseg_skip"] / medians["monai"], 3),
        "ratio_fp32_all_vs_monai": round(medians["femurseg_fp32_all"] / medians["monai"], 3),
        "ratio_monai_channels_last_vs_monai": round(medians["monai_channels_last"] / medians["monai"], 3),
        "agreement_default_vs_fp32": float((labels["femurseg_default"] == reference).float().mean()),
        "agreement_skip_vs_fp32": float((labels["femurseg_skip"] == reference).float().mean()),
        "agreement_monai_vs_fp32": float((labels["monai"] == reference).float().mean()),
        "max_abs_prob_diff_monai_vs_fp32": float((outputs["monai"] - outputs["femurseg_fp32_all"]).abs().max()),
        "foreground_fraction_fp32": float((reference == 1).float().mean()),
    }


def femur_like_scan(shape_zyx: tuple[int, int, int], path: Path) -> None:
    """Soft tissue with noise, a table, and a femur-like tube of cortex around marrow."""
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]]
    ny, nx = shape_zyx[1], shape_zyx[2]
    body = ((y - ny / 2) / (0.4 * ny)) ** 2 + ((x - nx / 2) / (0.45 * nx)) ** 2 <= 1
    radius = np.sqrt((y - ny / 2) ** 2 + (x - 0.62 * nx) ** 2) * 0.7
    section = np.where(body, 40, -1000)
    section = np.where(radius < 14, 1200, section)
    section = np.where(radius < 10, 150, section).astype(np.int16)   # (1, y, x): the same tube on every slice
    hu = np.empty(shape_zyx, np.int16)
    for k in range(shape_zyx[0]):
        hu[k] = section[0] + (15 * rng.standard_normal((ny, nx), dtype=np.float32)).astype(np.int16)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.7, 0.7, 1.0))
    sitk.WriteImage(image, str(path))


def _memory_worker(scan: str, periosteal: str, endosteal: str, refine: str = "half-maximum") -> None:
    from femurseg.data.io import read_image
    from femurseg.models.checkpoints import load_checkpoints
    from femurseg.inference.predictor import InferenceSettings, Predictor
    from femurseg.inference.refine import Refinement

    settings = InferenceSettings(tta="none", refinement=Refinement() if refine == "half-maximum" else None)
    predictor = Predictor(load_checkpoints(periosteal=[periosteal], endosteal=[endosteal]), settings)
    image = read_image(scan)
    start = time.perf_counter()
    result = predictor.predict(image, "memory")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB → GiB
    print(json.dumps({"seconds": round(seconds, 1), "peak_rss_gib": round(peak, 2),
                      "volume_cm3": result.report["volume_cm3"]["periosteal"]}))


def memory(checkpoint: Path, folder: Path, sizes: list[tuple[int, int, int]],
           refine: str = "half-maximum") -> list[dict[str, object]]:
    periosteal = _relabelled(checkpoint, "periosteal", folder)
    endosteal = _relabelled(checkpoint, "endosteal", folder)
    rows = []
    for shape in sizes:
        scan = folder / f"scan_{'x'.join(map(str, shape))}.nii.gz"
        femur_like_scan(shape, scan)
        output = subprocess.run([sys.executable, __file__, "--memory-worker", str(scan), str(periosteal), str(endosteal),
                                 refine], check=True, capture_output=True, text=True).stdout
        data = json.loads(output.strip().splitlines()[-1])
        rows.append({"size_xyz": f"{shape[2]}x{shape[1]}x{shape[0]}",
                     "mvoxels": round(np.prod(shape) / 1e6, 1), **data})
        scan.unlink()
    return rows


def _markdown(machine: str, weights: str, result: dict[str, object], rows: list[dict[str, object]]) -> str:
    lines = [SECTION, "", f"Machine: {machine}.", "", f"Weights: {weights}.", "",
             f"### Sliding window on a full-preset synthetic scan ({result['scan']}; network grid {result['grid']}, "
             f"window {result['patch']}, overlap 0.5, Gaussian, batch 4; median of {result['runs']} interleaved runs)",
             "", "| run | windows evaluated | median s | ÷ MONAI | argmax agreement with femurseg fp32 (all windows) |",
             "|---|---|---|---|---|",
             f"| MONAI sliding_window_inference, fp32 (reference) | {result['windows_all']} | {result['monai_s']} | 1.000 | "
             f"{result['agreement_monai_vs_fp32']:.5f} |",
             f"| MONAI, fp32, the same weights channels-last | {result['windows_all']} | "
             f"{result['monai_channels_last_s']} | {result['ratio_monai_channels_last_vs_monai']} | – |",
             f"| femurseg, fp32, every window | {result['windows_all']} | {result['femurseg_fp32_all_s']} | "
             f"{result['ratio_fp32_all_vs_monai']} | 1 |",
             f"| **femurseg default** (sparse windows, precision auto → {result['precision']}) | "
             f"{result['windows_default']} | "
             f"{result['femurseg_default_s']} | {result['ratio_default_vs_monai']} | "
             f"{result['agreement_default_vs_fp32']:.5f} |",
             f"| femurseg `--windows all --skip-below-hu 300` (opt-in) | {result['windows_skip']} | "
             f"{result['femurseg_skip_s']} | {result['ratio_skip_vs_monai']} | "
             f"{result['agreement_skip_vs_fp32']:.5f} |", "",
             f"Largest probability difference MONAI vs femurseg fp32: {result['max_abs_prob_diff_monai_vs_fp32']:.1e}; "
             f"foreground fraction: {result['foreground_fraction_fp32']:.4f}.", "",
             "### End to end (`Predictor.predict`, periosteal + endosteal models, no TTA, contour refinement), one process per size", "",
             "| scan (x×y×z, 0.7×0.7×1.0 mm) | Mvoxels | seconds | peak RSS GiB |", "|---|---|---|---|"]
    lines += [f"| {r['size_xyz']} | {r['mvoxels']} | {r['seconds']} | {r['peak_rss_gib']} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-worker":
        _memory_worker(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a periosteal checkpoint (default: random quick-start weights)")
    parser.add_argument("--weights-note", default="", help="how the checkpoint was trained, for the table")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="100x256x256,150x512x512,300x512x512", help="z x y x x per scan")
    parser.add_argument("--append", type=Path, help="replace or add this section in a Markdown file")
    args = parser.parse_args()
    machine = _machine()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = _checkpoint(args, folder)
        result = speed(checkpoint, args.runs)
        print(json.dumps(result, indent=1))
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
        rows = memory(checkpoint, folder, sizes)  # type: ignore[arg-type]
        print(json.dumps(rows, indent=1))
    weights = args.weights_note or (f"checkpoint {args.checkpoint}" if args.checkpoint else
                                    "random weights of the quick-start unet3d (8-16-32-64 channels, 2 mm, 48³ windows)")
    text = _markdown(machine, weights, result, rows)
    print(text)
    if args.append:
        replace_section(args.append, SECTION, text)


if __name__ == "__main__":
    main()
