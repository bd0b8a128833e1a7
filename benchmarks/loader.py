"""Training patches per second from the TorchIO queue: preprocessing cache vs TorchIO every time.

A cohort of full-preset synthetic scans is placed on a 512×512×250 grid (0.7 mm
in-plane, a 358 mm field of view padded with air; slices at the phantom's extent /
250) and written as ``.nii.gz``, like a QCT study's exports. Then training
patches are drawn from a ``tio.Queue`` (``LabelSampler``, the data module's
default probabilities) in two ways:

- **cache**: subjects preprocessed once by :class:`SubjectCache` (fill time
  reported apart) and loaded lazily from memory-mapped ``.npy``;
- **torchio**: ``tio.ScalarImage(path)`` subjects with ``ToCanonical``,
  ``Resample`` to the target spacing, ``Clamp`` and ``RescaleIntensity`` applied
  each time the queue loads a subject (what a pipeline without a cache does).

Each run builds a fresh queue over ``--subjects-per-run`` subjects (rotating through
the cohort) and times every patch out of the loader; the table gives medians over
``--runs`` runs. The temporary cohort and cache are deleted at the end.

Usage::

    python benchmarks/loader.py --n 20 --runs 5 [--append docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torchio as tio

from femurseg.data.cache import SubjectCache
from femurseg.data.manifest import ManifestRecord, read_manifest
from femurseg.data.preprocess import Preprocessing
from femurseg.data.sampling import ClassBalancedSampler

from markdown_section import replace_section  # benchmarks/ is on sys.path when run as a script

GRID = (512, 512, 250)
IN_PLANE_MM = 0.7


def to_scanner_grid(image: sitk.Image, label: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """Resample a phantom onto a 512×512×250 grid centred on it (air outside)."""
    size = np.array(image.GetSize())
    extent = size * np.array(image.GetSpacing())
    spacing = np.array([IN_PLANE_MM, IN_PLANE_MM, extent[2] / GRID[2]])
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
    grid = sitk.Image(list(GRID), sitk.sitkInt16)
    grid.SetSpacing(spacing.tolist())
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin((centre - np.array(GRID) / 2 * spacing).tolist())
    big = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkInt16)
    big_label = sitk.Resample(label, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return big, big_label


def make_cohort(root: Path, n: int, workers: int) -> list[ManifestRecord]:
    from femurseg.data.synthetic import write_cohort

    manifest = write_cohort(root / "src", n=n, seed=0, preset="full", workers=workers)
    out = root / "cohort"
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    lines = ["subject_id,image,label"]
    for record in read_manifest(manifest):
        image, label = to_scanner_grid(sitk.ReadImage(str(record.image)), sitk.ReadImage(str(record.label)))
        sitk.WriteImage(image, str(out / "images" / f"{record.subject_id}.nii.gz"), useCompression=True)
        sitk.WriteImage(label, str(out / "labels" / f"{record.subject_id}.nii.gz"), useCompression=True)
        lines.append(f"{record.subject_id},images/{record.subject_id}.nii.gz,labels/{record.subject_id}.nii.gz")
    shutil.rmtree(root / "src")
    (out / "manifest.csv").write_text("\n".join(lines) + "\n")
    return read_manifest(out / "manifest.csv")


def torchio_subjects(records: list[ManifestRecord], settings: Preprocessing) -> tio.SubjectsDataset:
    low, high = settings.hu_window
    transform = tio.Compose([
        tio.ToCanonical(), tio.Resample(settings.spacing), tio.Clamp(low, high),
        tio.RescaleIntensity((-1, 1), in_min_max=(low, high)),
    ])
    subjects = [tio.Subject(image=tio.ScalarImage(r.image), label=tio.LabelMap(r.label), subject_id=r.subject_id)
                for r in records]
    return tio.SubjectsDataset(subjects, transform=transform)


PROBABILITIES = {0: 0.2, 1: 0.4, 2: 0.4}


def patches_per_second(
    dataset: tio.SubjectsDataset, patch: int, per_volume: int, torchio_sampler: bool = False
) -> tuple[float, int]:
    if torchio_sampler:
        sampler = tio.LabelSampler(patch, label_name="label", label_probabilities=PROBABILITIES)
    else:
        sampler = ClassBalancedSampler(patch, "label", PROBABILITIES)
    queue = tio.Queue(dataset, max_length=4 * per_volume, samples_per_volume=per_volume, sampler=sampler,
                      num_workers=0, shuffle_subjects=False, shuffle_patches=True)
    loader = tio.SubjectsLoader(queue, batch_size=2, num_workers=0)
    start, count = time.perf_counter(), 0
    for batch in loader:
        count += batch["image"][tio.DATA].shape[0]
    return count / (time.perf_counter() - start), count


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs (shared with other jobs), Python {platform.python_version()}, "
            f"torch {torch.__version__}, TorchIO {tio.__version__}, SimpleITK {sitk.Version.VersionString()}; "
            f"torch threads {torch.get_num_threads()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="cohort size")
    parser.add_argument("--runs", type=int, default=5, help="runs per method (median reported)")
    parser.add_argument("--subjects-per-run", type=int, default=4)
    parser.add_argument("--samples-per-volume", type=int, default=8)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--spacing", type=float, default=1.0, help="target spacing in mm (isotropic)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    parser.add_argument("--workers", type=int, default=2, help="processes generating the phantoms")
    parser.add_argument("--workdir", type=Path, default=None, help="temporary folder (default: system temp)")
    parser.add_argument("--append", type=Path, default=None, help="append the table to this markdown file")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="femurseg_loader_", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        records = make_cohort(root, args.n, args.workers)
        source_mb = sum(f.stat().st_size for f in (root / "cohort").rglob("*.nii.gz")) / 2**20
        print(f"cohort: {len(records)} subjects {GRID}, {source_mb:.0f} MB, {time.perf_counter() - t0:.0f} s", flush=True)
        settings = Preprocessing(spacing=(args.spacing,) * 3)
        cache = SubjectCache(root / "cache", settings, args.dtype)
        t0 = time.perf_counter()
        entries = [cache.get(r) for r in records]
        fill_s = time.perf_counter() - t0
        cache_mb = sum(f.stat().st_size for f in (root / "cache").rglob("*.npy")) / 2**20
        shape = entries[0].meta["shape"]
        print(f"cache fill: {fill_s:.0f} s ({fill_s / len(records):.1f} s/subject), {cache_mb:.0f} MB, "
              f"shape {shape}", flush=True)

        methods = ("cache", "torchio", "cache_labelsampler", "cache_fractions")
        results: dict[str, list[float]] = {m: [] for m in methods}
        k = args.subjects_per_run
        for run in range(args.runs):
            chosen = [(run * k + i) % len(records) for i in range(k)]
            for method in methods:
                if method.startswith("cache"):
                    fractions = method == "cache_fractions"   # what training subjects load by default
                    dataset = tio.SubjectsDataset([entries[i].subject(fractions=fractions) for i in chosen])
                else:
                    dataset = torchio_subjects([records[i] for i in chosen], settings)
                rate, count = patches_per_second(
                    dataset, args.patch, args.samples_per_volume, torchio_sampler=method == "cache_labelsampler"
                )
                results[method].append(rate)
                print(f"run {run} {method}: {count} patches, {rate:.2f} patches/s", flush=True)

        cache_rate, tio_rate, label_rate, fractions_rate = (statistics.median(results[m]) for m in methods)
        table = "\n".join([
            "## Data loader: preprocessing cache vs TorchIO loading every time (benchmarks/loader.py, issue 4)",
            "",
            f"Machine: {machine()}.",
            f"Cohort: {len(records)} full-preset phantoms on a {GRID[0]}×{GRID[1]}×{GRID[2]} grid "
            f"({IN_PLANE_MM} mm in-plane), int16 `.nii.gz`, {source_mb:.0f} MB in all. Target spacing "
            f"{args.spacing} mm → {shape[0]}×{shape[1]}×{shape[2]} voxels per subject. Queue: "
            f"`ClassBalancedSampler` {{0: 0.2, 1: 0.4, 2: 0.4}} (the data module's), patch {args.patch}³, {args.samples_per_volume} patches per volume, "
            f"batch 2, `num_workers=0`; each run a fresh queue over {k} subjects; medians of {args.runs} runs "
            "(files in the page cache after the first run, for both methods).",
            "",
            "| method | patches/s (median) | runs (patches/s) |",
            "|---|---|---|",
            f"| cache ({args.dtype} `.npy`, memory-mapped) | {cache_rate:.2f} | "
            + ", ".join(f"{r:.2f}" for r in results["cache"]) + " |",
            "| TorchIO: read `.nii.gz`, ToCanonical, Resample, Clamp, Rescale per load | "
            f"{tio_rate:.2f} | " + ", ".join(f"{r:.2f}" for r in results["torchio"]) + " |",
            f"| cache, but TorchIO's `LabelSampler` (dense probability map) | {label_rate:.2f} | "
            + ", ".join(f"{r:.2f}" for r in results["cache_labelsampler"]) + " |",
            f"| cache with the partial-volume `fractions` (training default, `--data.partial_volume`) | "
            f"{fractions_rate:.2f} | " + ", ".join(f"{r:.2f}" for r in results["cache_fractions"]) + " |",
            "",
            f"Speed-up with the cache: **{cache_rate / tio_rate:.1f}×**. One-off cache fill: {fill_s:.0f} s "
            f"({fill_s / len(records):.1f} s per subject), {cache_mb:.0f} MB on disk.",
            "",
        ])
        print(table)
        if args.append is not None:  # replace this section, or add it
            replace_section(args.append, table.splitlines()[0], table)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
