"""Benchmark every registered net: parameters, forward+backward time per patch, peak memory.

Each (net, precision) runs in a fresh subprocess, so peak memory is that run's own
and a precision that is hopelessly slow on this machine can be cut off::

    python benchmarks/nets.py                       # all nets, 96³, fp32 and bf16, CPU
    python benchmarks/nets.py --nets unet3d,vnet3d --size 64 --repeats 5
    python benchmarks/nets.py --device cuda --precisions fp32,bf16,fp16
    python benchmarks/nets.py --append docs/benchmarks.md

Time: one training iteration (forward in train mode, mean of all deep-supervision
outputs as the loss, backward) on a ``(1, 1, S, S, S)`` patch with the net's
defaults and 2 classes; one warm-up, then up to ``--repeats`` timed iterations
within ``--budget`` seconds (at least one); the median is reported with the count.
bf16/fp16 use ``torch.autocast``. A bf16/fp16 run that exceeds ``--cap`` seconds
(fp32: ``--cap-fp32``) is killed and reported as ``> cap s``: on CPUs without
native bf16 (AVX2 only) bf16 convolutions are ~100× slower than fp32. Peak memory: on CPU the process's peak RSS growth
over its state before the first iteration; on CUDA ``max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


def worker(name: str, precision: str, size: int, repeats: int, budget: float, device: str, threads: int) -> dict:
    """One (net, precision) measurement in this process; returns a JSON-able dict."""
    import torch

    from femurseg.models import NETS
    from femurseg.models.describe import net_parameters

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    kwargs = {"patch_size": (size, size, size)} if "patch_size" in net_parameters(name) else {}
    net = NETS.create(name, in_channels=1, out_channels=2, **kwargs).to(device).train()
    params = sum(p.numel() for p in net.parameters())
    x = torch.randn(1, 1, size, size, size, device=device)
    dtype = getattr(torch, DTYPES[precision]) if DTYPES[precision] else None

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            out = net(x)
            outputs = out if isinstance(out, (list, tuple)) else [out]
            loss = sum(o.float().mean() for o in outputs)
        loss.backward()
        net.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warmup = step()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - started + times[-1] <= budget):
        times.append(step())
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 1024
    return {"net": name, "precision": precision, "params": params, "warmup_s": warmup,
            "median_s": statistics.median(times), "n": len(times), "peak_mb": peak_mb}


def run_one(args: argparse.Namespace, name: str, precision: str) -> dict:
    command = [sys.executable, __file__, "--worker", name, precision, "--size", str(args.size),
               "--repeats", str(args.repeats), "--budget", str(args.budget), "--device", args.device,
               "--threads", str(args.threads)]
    cap = args.cap_fp32 if precision == "fp32" else args.cap
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cap, check=True)
    except subprocess.TimeoutExpired:
        return {"net": name, "precision": precision, "skipped": f"> {cap:.0f} s (killed)"}
    except subprocess.CalledProcessError as error:
        return {"net": name, "precision": precision, "skipped": f"failed: {error.stderr.strip().splitlines()[-1]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine(device: str, threads: int) -> str:
    import torch

    cpu = torch.backends.cpu.get_cpu_capability()
    from femurseg.devices import cpu_has_fast_bf16

    text = (f"{platform.machine()}, {os.cpu_count()} logical CPUs (shared), CPU capability {cpu}, "
            f"native bf16: {'yes' if cpu_has_fast_bf16() else 'no'}, torch {torch.__version__}, "
            f"{threads} threads")
    if device == "cuda":
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


def table(results: list[dict], size: int) -> str:
    precisions = list(dict.fromkeys(r["precision"] for r in results))
    header = ["net", "parameters"] + [f"{p} s/iter (n)" for p in precisions] + [f"{p} peak MB" for p in precisions]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in dict.fromkeys(r["net"] for r in results):
        by = {r["precision"]: r for r in results if r["net"] == name}
        params = next((f"{r['params'] / 1e6:.2f} M" for r in by.values() if "params" in r), "?")
        times = [f"{by[p]['median_s']:.2f} ({by[p]['n']})" if "median_s" in by[p] else by[p]["skipped"]
                 for p in precisions]
        memory = [f"{by[p]['peak_mb']:.0f}" if "peak_mb" in by[p] else "–" for p in precisions]
        rows.append("| " + " | ".join([name, params, *times, *memory]) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=None, help="comma-separated names (default: all registered)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16")
    parser.add_argument("--size", type=int, default=96, help="cubic patch edge in voxels")
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations at most")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of timed iterations per run")
    parser.add_argument("--cap", type=float, default=120.0, help="kill a bf16/fp16 run after this many seconds")
    parser.add_argument("--cap-fp32", type=float, default=900.0, help="kill an fp32 run after this many seconds")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--append", type=Path, default=None, help="append the table to this Markdown file")
    parser.add_argument("--worker", nargs=2, metavar=("NET", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.size, args.repeats, args.budget, args.device, args.threads)))
        return 0
    from femurseg.models import NETS

    names = args.nets.split(",") if args.nets else NETS.names()
    results = []
    for name in names:
        for precision in args.precisions.split(","):
            result = run_one(args, name, precision)
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
    text = (f"Machine: {machine(args.device, args.threads)}. Patch 1×1×{args.size}³, one training iteration "
            f"(forward + backward), net defaults, 2 classes; median of n timed iterations after one warm-up; "
            f"bf16/fp16 runs killed after {args.cap:.0f} s, fp32 after {args.cap_fp32:.0f} s.\n\n{table(results, args.size)}\n")
    print(text)
    if args.append:
        with args.append.open("a") as handle:
            handle.write(f"\n## Networks: training iteration time and memory (benchmarks/nets.py, issue 5)\n\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
