"""Roofline of inference: the machine's conv3d peak, FLOPs per window, and what each backend reaches.

Usage::

    python benchmarks/roofline.py [--runs 5] [--append docs/benchmarks.md]
    python benchmarks/roofline.py --quick ...        # fewer shapes and runs (a loaded or slow machine)

Measured, with the bundled default model (``femur-ct-v2``, like v1 a 3-class unet3d 16-32-64-128,
48³ windows at 2 mm) and every installed backend (:mod:`femurseg.inference.backends`):

1. **Conv3d peak**: the best GFLOP/s a single large 3×3×3 convolution (stride 1,
   "same" padding, fp32) reaches here, over several shapes and channel counts, run by
   PyTorch (default and channels-last layout) and by each exported runtime. The peak
   is the largest median.
2. **FLOPs per window**: ``torch.utils.flop_counter`` on one window, checked against
   an analytic count from the module shapes (2 × multiply-adds of every Conv3d and
   ConvTranspose3d; normalisation and activations are not counted).
3. **Sliding window** on a full-preset synthetic scan (seed 0) preprocessed with the
   model's settings: MONAI ``sliding_window_inference`` fp32 (the network in PyTorch's
   default layout: the reference) against femurseg's sliding window with each backend,
   every window (``all``) and coarse-to-fine (``sparse``, the default), overlap 0.5,
   Gaussian, batch 4, no test-time flips (the same network call as MONAI's). Runs are
   interleaved; medians of ``--runs``. Agreement: fraction of voxels with the same
   3-class argmax as MONAI. Fraction of peak: windows × FLOPs per window ÷ median time ÷
   conv3d peak.
4. **End to end**: ``Predictor.predict`` with default settings (test-time flips ``auto``,
   sparse windows, refinement) on a 512×512×300 femur-like scan (0.7×0.7×1.0 mm), one
   fresh process per run and backend (interleaved; ``--e2e-runs``, default 3): wall time of ``predict``, the
   set-up time (load, export cache, compile) and the process's peak RSS; label
   agreement with the ``torch`` backend.
5. **GPU** (only where ``torch.cuda.is_available()``): conv3d peak in fp32, TF32, bf16
   and fp16, and the sliding window with PyTorch in fp32, bf16 and fp16 autocast and with
   ONNX Runtime's CUDA and TensorRT execution providers when the installed build has them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from markdown_section import replace_section  # benchmarks/ is on sys.path when run as a script

SECTION = "## Roofline and inference backends (benchmarks/roofline.py, issue 20)"
#: (batch, in channels, out channels, edge) of the single convolutions timed for the peak
CONV_SHAPES = [(1, 16, 16, 96), (1, 32, 32, 64), (4, 32, 32, 48), (1, 64, 64, 48), (1, 128, 128, 32),
               (1, 64, 128, 32), (8, 16, 16, 48)]
QUICK_CONV_SHAPES = [(1, 32, 32, 64), (1, 64, 64, 48), (1, 128, 128, 32)]


def _machine() -> str:
    from inference import _machine as describe  # benchmarks/inference.py: the same machine line

    return describe()


def _median_times(runners: dict[str, Callable[[], Any]], runs: int, sync: Callable[[], None] = lambda: None,
                  warmup: list[Callable[[], Any]] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Interleaved runs after a warm-up (each runner once, or the ``warmup`` calls): median seconds and last outputs."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    outputs: dict[str, Any] = {}
    for run in warmup if warmup is not None else list(runners.values()):
        run()
        sync()
    for _ in range(runs):
        for name, run in runners.items():
            sync()
            start = time.perf_counter()
            outputs[name] = run()
            sync()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}, outputs


def conv_flops(batch: int, cin: int, cout: int, edge: int, kernel: int = 3) -> int:
    """2 × multiply-adds of a stride-1 "same" 3D convolution."""
    return 2 * batch * cout * edge**3 * cin * kernel**3


def _runtime(backend: str, net: nn.Module, path: Path, **kwargs: Any) -> nn.Module:
    from femurseg.inference.backends import OnnxRuntimeNetwork, OpenVinoNetwork

    if backend == "torch":
        return net
    if backend == "onnxruntime":
        return OnnxRuntimeNetwork(path, **kwargs)
    return OpenVinoNetwork(path, **kwargs)


def conv_peak(backends: list[str], runs: int, shapes: list[tuple[int, int, int, int]], folder: Path
              ) -> list[dict[str, Any]]:
    """GFLOP/s of single convolutions per shape and runtime (fp32, CPU)."""
    from femurseg.inference.backends import export_onnx

    rows = []
    for batch, cin, cout, edge in shapes:
        torch.manual_seed(0)
        conv = nn.Conv3d(cin, cout, 3, padding=1, bias=False).eval()
        x = torch.randn(batch, cin, edge, edge, edge)
        runners: dict[str, Callable[[], Any]] = {"torch": lambda: conv(x)}
        last = copy.deepcopy(conv).to(memory_format=torch.channels_last_3d)
        x_last = x.to(memory_format=torch.channels_last_3d)
        runners["torch_channels_last"] = lambda: last(x_last)
        exported = [b for b in backends if b != "torch"]
        if exported:
            path = export_onnx(copy.deepcopy(conv), folder / f"conv_{cin}_{cout}_{edge}.onnx", (edge,) * 3, cin)
            for backend in exported:
                runner = _runtime(backend, conv, path)
                runners[backend] = lambda runner=runner: runner(x)
        with torch.no_grad():
            medians, _ = _median_times(runners, runs)
        flops = conv_flops(batch, cin, cout, edge)
        for name, seconds in medians.items():
            rows.append({"shape": f"{batch}×{cin}→{cout}×{edge}³", "runtime": name, "gflop": round(flops / 1e9, 2),
                         "seconds": round(seconds, 4), "gflops": round(flops / seconds / 1e9, 1)})
        print(json.dumps(rows[-len(medians):]), flush=True)
    return rows


def window_flops(net: nn.Module, window: tuple[int, int, int]) -> dict[str, int]:
    """FLOPs of one window: torch's flop counter and the analytic count of every (transposed) convolution."""
    from torch.utils.flop_counter import FlopCounterMode

    analytic = [0]

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        k = int(np.prod(module.kernel_size))
        if isinstance(module, nn.ConvTranspose3d):  # every input voxel scatters C_out × k values
            analytic[0] += 2 * inputs[0].numel() * (module.out_channels // module.groups) * k
        else:
            analytic[0] += 2 * output.numel() * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 1, *window))
    for handle in handles:
        handle.remove()
    transposed = sum(isinstance(m, nn.ConvTranspose3d) for m in net.modules())
    return {"counter": int(counter.get_total_flops()), "analytic": analytic[0], "convolutions": len(handles) - transposed,
            "transposed": transposed}


def _checkpoint(path: str | None) -> Path:
    """The checkpoint timed: ``path``, or the bundled default model."""
    from femurseg.models.zoo import model_path

    return Path(path) if path else model_path()


def _volume(info: Any, preset: str = "full") -> tuple[torch.Tensor, str]:
    from femurseg.data.preprocess import preprocess_image
    from femurseg.data.synthetic import generate_subject

    case = generate_subject(0, preset)
    pre = preprocess_image(case.image, info.preprocessing)
    volume = torch.from_numpy(np.ascontiguousarray(sitk.GetArrayFromImage(pre).transpose(2, 1, 0)))[None, None]
    scan = f"{case.image.GetSize()} voxels at {tuple(round(s, 2) for s in case.image.GetSpacing())} mm"
    return volume, scan


def _labels(probabilities: torch.Tensor) -> torch.Tensor:
    """3-class argmax from (P, E): background 1 - P, cortical P - E, trabecular E."""
    p, e = probabilities[0, 0].float(), probabilities[0, 1].float()
    return torch.stack([1 - p, p - e, e]).argmax(0)


def sliding(backends: list[str], runs: int, export_dir: Path, peak: float, checkpoint: Path, preset: str = "full",
            exhaustive: bool = True) -> dict[str, Any]:
    """MONAI fp32 against femurseg's sliding window per backend (every window and sparse)."""
    from monai.inferers import sliding_window_inference as monai_sliding_window

    from femurseg.inference.backends import backend_network
    from femurseg.inference.ensemble import EnsembleNetwork
    from femurseg.models.checkpoints import build_net, load_checkpoints
    from femurseg.sliding import SparseWindows, sliding_window_inference, window_starts

    info = load_checkpoints([checkpoint]).compartments[0]
    window = info.patch_size
    volume, scan = _volume(info, preset)
    plain = build_net(info).to(memory_format=torch.contiguous_format)  # as a MONAI user builds it
    flops = window_flops(copy.deepcopy(plain), window)
    reference = EnsembleNetwork(compartments=[plain]).eval()  # (P, E) of one network, no flips
    ensembles = {b: EnsembleNetwork(compartments=[backend_network(info, b, window, export_dir)]).eval()
                 for b in backends}
    counts: dict[str, list[int]] = {}

    def ours(backend: str, sparse: bool) -> Callable[[], torch.Tensor]:
        name = f"{backend}_{'sparse' if sparse else 'all'}"

        def run() -> torch.Tensor:
            counts[name] = []
            return sliding_window_inference(
                volume, ensembles[backend], window, 0.5, "gaussian", 4, pad_mode="replicate", counter=counts[name],
                skip_value=[0.0, 0.0] if sparse else None,
                sparse=SparseWindows(channel=0, threshold=0.05, core=0.5) if sparse else None)
        return run

    runners: dict[str, Callable[[], Any]] = {
        "monai": lambda: monai_sliding_window(volume, window, 4, reference, overlap=0.5, mode="gaussian")}
    for backend in backends:
        if exhaustive:
            runners[f"{backend}_all"] = ours(backend, False)
        runners[f"{backend}_sparse"] = ours(backend, True)
    batch = torch.zeros(4, 1, *window)  # warm-up: one batch per network (allocators, OpenVINO's compilation)
    warmup = [lambda net=net: net(batch) for net in [reference, *ensembles.values()]]
    with torch.no_grad():
        medians, outputs = _median_times(runners, runs, warmup=warmup)
    truth = _labels(outputs["monai"])
    windows_all = int(np.prod([len(window_starts(max(s, p), p, 0.5)) for s, p in zip(volume.shape[2:], window)]))
    rows = []
    for name, seconds in medians.items():
        windows = windows_all if name == "monai" else counts[name][0]
        rows.append({
            "run": name, "windows": windows, "seconds": round(seconds, 3),
            "ratio_vs_monai": round(seconds / medians["monai"], 3),
            "gflops": round(windows * flops["counter"] / seconds / 1e9, 1),
            "fraction_of_peak": round(windows * flops["counter"] / seconds / 1e9 / peak, 3),
            "agreement_vs_monai": float((_labels(outputs[name]) == truth).float().mean()),
            "max_abs_prob_diff_vs_monai": float((outputs[name] - outputs["monai"]).abs().max()),
        })
    return {"scan": scan, "grid": "x".join(str(s) for s in volume.shape[2:]), "window": "x".join(map(str, window)),
            "runs": runs, "flops": flops, "rows": rows}


def _e2e_worker(scan: str, backend: str, export_dir: str, label_out: str, checkpoint: str) -> None:
    from femurseg.data.io import read_image
    from femurseg.inference.predictor import InferenceSettings, Predictor
    from femurseg.models.checkpoints import load_checkpoints

    start = time.perf_counter()
    predictor = Predictor(load_checkpoints([_checkpoint(checkpoint)]), InferenceSettings(backend=backend),
                          export_dir=export_dir)
    setup = time.perf_counter() - start
    image = read_image(scan)
    start = time.perf_counter()
    result = predictor.predict(image, "e2e")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB → GiB
    if label_out:
        np.save(label_out, sitk.GetArrayViewFromImage(result.label))
    print(json.dumps({"seconds": round(seconds, 1), "setup_s": round(setup, 1), "peak_rss_gib": round(peak, 2),
                      "periosteal_cm3": result.report["volume_cm3"]["periosteal"],
                      "predictions_per_contour": result.report["ensemble"]["predictions_per_contour"]}))


def end_to_end(backends: list[str], runs: int, shape_zyx: tuple[int, int, int], folder: Path, export_dir: Path,
               checkpoint: Path) -> list[dict[str, Any]]:
    from inference import femur_like_scan  # benchmarks/inference.py: the same synthetic scan

    scan = folder / "e2e.nii.gz"
    femur_like_scan(shape_zyx, scan)
    results: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
    for index in range(runs):
        for backend in backends:
            label = str(folder / f"label_{backend}.npy") if index == 0 else ""
            output = subprocess.run([sys.executable, __file__, "--e2e-worker", str(scan), backend, str(export_dir),
                                     label, str(checkpoint)], check=True, capture_output=True, text=True).stdout
            results[backend].append(json.loads(output.strip().splitlines()[-1]))
            print(backend, results[backend][-1], flush=True)
    reference = np.load(folder / f"label_{backends[0]}.npy")
    rows = []
    for backend, values in results.items():
        agreement = float((np.load(folder / f"label_{backend}.npy") == reference).mean())
        rows.append({"backend": backend, "runs": len(values),
                     "seconds": round(statistics.median(v["seconds"] for v in values), 1),
                     "setup_s": round(statistics.median(v["setup_s"] for v in values), 1),
                     "peak_rss_gib": max(v["peak_rss_gib"] for v in values),
                     "periosteal_cm3": values[0]["periosteal_cm3"],
                     "predictions_per_contour": values[0]["predictions_per_contour"],
                     f"agreement_vs_{backends[0]}": agreement})
    return rows


def gpu(backends: list[str], runs: int, export_dir: Path, checkpoint: Path) -> dict[str, Any] | None:
    """Conv3d peak and sliding window on a CUDA device (fp32, TF32, bf16, fp16; ORT CUDA/TensorRT), if there is one."""
    if not torch.cuda.is_available():
        return None
    from femurseg.inference.backends import OnnxRuntimeNetwork, exported_model
    from femurseg.inference.ensemble import EnsembleNetwork
    from femurseg.models.checkpoints import build_net, load_checkpoints
    from femurseg.sliding import sliding_window_inference

    device = torch.device("cuda")
    sync = torch.cuda.synchronize
    peak_rows = []
    for batch, cin, cout, edge in [(4, 32, 32, 64), (2, 64, 64, 64), (2, 128, 128, 48), (8, 16, 16, 96)]:
        conv = nn.Conv3d(cin, cout, 3, padding=1, bias=False).to(device).eval()
        x = torch.randn(batch, cin, edge, edge, edge, device=device)
        runners: dict[str, Callable[[], Any]] = {}
        for name, dtype, tf32 in [("fp32", torch.float32, False), ("tf32", torch.float32, True),
                                  ("bf16", torch.bfloat16, False), ("fp16", torch.float16, False)]:
            def run(dtype: torch.dtype = dtype, tf32: bool = tf32) -> torch.Tensor:
                torch.backends.cudnn.allow_tf32 = tf32
                return conv.to(dtype)(x.to(dtype))
            runners[name] = run
        with torch.no_grad():
            medians, _ = _median_times(runners, runs, sync)
        torch.backends.cudnn.allow_tf32 = True
        flops = conv_flops(batch, cin, cout, edge)
        peak_rows += [{"shape": f"{batch}×{cin}→{cout}×{edge}³", "precision": k, "gflops": round(flops / v / 1e9, 1)}
                      for k, v in medians.items()]
    info = load_checkpoints([checkpoint]).compartments[0]
    window = info.patch_size
    volume, _ = _volume(info)
    volume = volume.to(device)
    net = build_net(info).to(device)
    ensemble = EnsembleNetwork(compartments=[net]).eval()

    def autocast(dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
        def call(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cuda", dtype=dtype):
                return ensemble(x)
        return call

    runners = {
        "torch_fp32": lambda: sliding_window_inference(volume, ensemble, window, 0.5, "gaussian", 4),
        "torch_bf16": lambda: sliding_window_inference(volume, autocast(torch.bfloat16), window, 0.5, "gaussian", 4),
        "torch_fp16": lambda: sliding_window_inference(volume, autocast(torch.float16), window, 0.5, "gaussian", 4),
    }
    if "onnxruntime" in backends:
        import onnxruntime as ort

        available = ort.get_available_providers()
        path = exported_model(info, window, export_dir)
        for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            if provider in available:
                member = OnnxRuntimeNetwork(path, providers=[provider, "CPUExecutionProvider"])
                runtime = EnsembleNetwork(compartments=[member]).eval()
                runners[f"onnxruntime_{provider.removesuffix('ExecutionProvider').lower()}"] = (
                    lambda runtime=runtime: sliding_window_inference(volume.cpu(), runtime, window, 0.5, "gaussian", 4))
    with torch.no_grad():
        medians, outputs = _median_times(runners, runs, sync)
    truth = _labels(outputs["torch_fp32"].cpu())
    rows = [{"run": k, "seconds": round(v, 3),
             "agreement_vs_fp32": float((_labels(outputs[k].cpu()) == truth).float().mean())} for k, v in medians.items()]
    return {"device": torch.cuda.get_device_name(0), "conv_peak": peak_rows, "sliding": rows}


def _markdown(machine: str, note: str, model: str, peak_rows: list[dict[str, Any]], peak: dict[str, Any],
              result: dict[str, Any], e2e: list[dict[str, Any]], e2e_shape: str, gpu_result: dict[str, Any] | None
              ) -> str:
    flops = result["flops"]
    lines = [SECTION, "", f"Machine: {machine}.", ""]
    if note:
        lines += [f"**{note}**", ""]
    lines += [f"Model: {model}, fp32.",
              "", "### Conv3d peak (single 3×3×3 convolution, stride 1, fp32, median of the runs)", "",
              "| batch×C_in→C_out×edge³ | GFLOP | " + " | ".join(sorted({r['runtime'] for r in peak_rows})) + " |",
              "|---|---|" + "---|" * len({r['runtime'] for r in peak_rows})]
    runtimes = sorted({r["runtime"] for r in peak_rows})
    for shape in dict.fromkeys(r["shape"] for r in peak_rows):
        cells = {r["runtime"]: r for r in peak_rows if r["shape"] == shape}
        lines.append(f"| {shape} | {next(iter(cells.values()))['gflop']} | "
                     + " | ".join(f"{cells[k]['gflops']}" if k in cells else "–" for k in runtimes) + " |")
    lines += ["", f"GFLOP/s per cell. **Peak: {peak['gflops']} GFLOP/s** ({peak['runtime']}, {peak['shape']}).", "",
              f"### FLOPs per {result['window']} window", "",
              f"{flops['counter'] / 1e9:.2f} GFLOP (torch.utils.flop_counter), {flops['analytic'] / 1e9:.2f} GFLOP "
              f"analytic (2 × multiply-adds of the {flops['convolutions']} convolutions and {flops['transposed']} "
              "transposed convolutions; norms and activations not counted).", "",
              f"### Sliding window ({result['scan']}; network grid {result['grid']}, window {result['window']}, "
              f"overlap 0.5, Gaussian, batch 4, no test-time flips; median of {result['runs']} interleaved runs)", "",
              "| run | windows | median s | ÷ MONAI | GFLOP/s | fraction of conv3d peak | argmax agreement with MONAI "
              "| max prob. diff |", "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        name = ("MONAI sliding_window_inference fp32 (reference)" if row["run"] == "monai"
                else f"femurseg, backend `{row['run'].rsplit('_', 1)[0]}`, windows {row['run'].rsplit('_', 1)[1]}")
        lines.append(f"| {name} | {row['windows']} | {row['seconds']} | {row['ratio_vs_monai']} | {row['gflops']} | "
                     f"{row['fraction_of_peak']:.2f} | {row['agreement_vs_monai']:.5f} | "
                     f"{row['max_abs_prob_diff_vs_monai']:.1e} |")
    if e2e:
        key = next(k for k in e2e[0] if k.startswith("agreement_vs_"))
        lines += ["", f"### End to end, {e2e_shape} femur-like scan (0.7×0.7×1.0 mm), `Predictor.predict` with "
                      "default settings (TTA `auto` → x, sparse windows, refinement), one process per run", "",
                  "| backend | runs | median s (predict) | set-up s (load, export cache, compile) | peak RSS GiB "
                  f"| label agreement with `{key.removeprefix('agreement_vs_')}` | periosteal cm³ |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['backend']} | {r['runs']} | {r['seconds']} | {r['setup_s']} | {r['peak_rss_gib']} | "
                  f"{r[key]:.5f} | {r['periosteal_cm3']} |" for r in e2e]
    if gpu_result:
        lines += ["", f"### GPU: {gpu_result['device']}", "", "| shape | precision | GFLOP/s |", "|---|---|---|"]
        lines += [f"| {r['shape']} | {r['precision']} | {r['gflops']} |" for r in gpu_result["conv_peak"]]
        lines += ["", "| sliding window | median s | agreement with fp32 |", "|---|---|---|"]
        lines += [f"| {r['run']} | {r['seconds']} | {r['agreement_vs_fp32']:.5f} |" for r in gpu_result["sliding"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--e2e-worker":
        _e2e_worker(*sys.argv[2:7])
        return
    from femurseg.inference.backends import available_backends

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs per measurement (medians)")
    parser.add_argument("--e2e-runs", type=int, default=None,
                        help="end-to-end runs per backend (default: 3, 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="3 conv shapes, sparse windows only (no exhaustive runs), 1 end-to-end run per backend")
    parser.add_argument("--backends", default=",".join(available_backends()), help="comma-separated backends")
    parser.add_argument("--e2e-size", default="300x512x512", help="z x y x x of the end-to-end scan ('' skips it)")
    parser.add_argument("--checkpoint", help="a 3-class checkpoint to time (default: the bundled default model)")
    parser.add_argument("--preset", default="full", help="synthetic preset of the sliding-window scan")
    parser.add_argument("--conv-shapes", default="", help="batch x C_in x C_out x edge, comma-separated")
    parser.add_argument("--note", default="", help="a line printed in bold under the machine (e.g. a loaded machine)")
    parser.add_argument("--append", type=Path, help="replace or add this section in a Markdown file")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    checkpoint = _checkpoint(args.checkpoint)
    shapes = ([tuple(int(v) for v in s.split("x")) for s in args.conv_shapes.split(",")] if args.conv_shapes
              else QUICK_CONV_SHAPES if args.quick else CONV_SHAPES)
    from femurseg.models.zoo import DEFAULT_MODEL

    machine = _machine()
    model = (f"checkpoint {args.checkpoint}" if args.checkpoint else
             f"bundled default `{DEFAULT_MODEL}` (3-class unet3d 16-32-64-128, instance norm, 48³ windows at 2 mm)")
    e2e_shape = "×".join(reversed(args.e2e_size.split("x"))) if args.e2e_size else ""

    def write(e2e: list[dict[str, Any]], gpu_result: dict[str, Any] | None) -> None:
        text = _markdown(machine, args.note, model, peak_rows, peak, result, e2e, e2e_shape, gpu_result)
        print(text, flush=True)
        if args.append:  # after each part, so a run cut short still leaves what it measured
            replace_section(args.append, SECTION, text)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        export_dir = folder / "onnx"
        peak_rows = conv_peak(backends, args.runs, shapes, folder)  # type: ignore[arg-type]
        peak = max(peak_rows, key=lambda r: r["gflops"])
        result = sliding(backends, args.runs, export_dir, peak["gflops"], checkpoint, args.preset, not args.quick)
        print(json.dumps(result, indent=1), flush=True)
        write([], None)
        e2e: list[dict[str, Any]] = []
        if args.e2e_size:
            shape = tuple(int(v) for v in args.e2e_size.split("x"))
            e2e = end_to_end(backends, args.e2e_runs or (1 if args.quick else 3), shape,  # type: ignore[arg-type]
                             folder, export_dir, checkpoint)
            print(json.dumps(e2e, indent=1), flush=True)
            write(e2e, None)
        gpu_result = gpu(backends, args.runs, export_dir, checkpoint)
        if gpu_result is not None:
            write(e2e, gpu_result)


if __name__ == "__main__":
    main()
