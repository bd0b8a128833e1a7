"""Sanity check of trained models on real CT slices (not shipped: point ``--slices`` at them).

Usage::

    python benchmarks/realct.py [--model femur-ct-v5 | --checkpoints C.ckpt | --periosteal P.ckpt --endosteal E.ckpt] \\
        --slices ../shared/realct/slices [--per-patient N] [--figure docs/images/realct_predictions.png] \\
        [--append docs/benchmarks.md] [--csv out.csv]

Without checkpoints it scores the bundled default model. ``--per-patient N`` takes N
evenly spaced slices per patient (a quick development subset); the default is all.

The folder holds single axial slices (``*_ct.nii.gz``, pseudo-HU) with filled femur masks
(``*_femur.nii.gz``). A 3D network needs depth, so each slice is extruded along z into a
volume of ``--depth`` identical slices of ``--slice-mm`` (a straight cylinder through the
slice: faithful for the shaft and neck, a caricature of the head). The models segment that
volume with ``femurseg.segment`` (no TTA) and the middle slice's periosteal mask is compared
with the real femur mask: Dice, and the predicted area outside the mask (e.g. pelvis or
soft tissue called femur) as a fraction of the mask's area. Reported per slice and as
median / 10th percentile, with a figure of the best, median and worst slices, and by
level. The level of a real slice is not stored; it is estimated from the masks: per
patient, slices whose femur is a shaft-sized section (< 1100 mm² at 0.7 mm) are
``shaft``, larger sections above the highest shaft slice are ``hip`` (head, neck,
trochanters) and below the lowest are ``knee`` (condyles); a patient without a
shaft-sized slice gives ``unknown``.
"""

from __future__ import annotations

import argparse
import dataclasses
import csv
import json
import time
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from markdown_section import replace_section  # benchmarks/ is on sys.path when run as a script

SECTION = "## Real CT slices (benchmarks/realct.py)"


def extruded(slice_image: sitk.Image, depth: int, slice_mm: float) -> sitk.Image:
    """A 3D volume of ``depth`` copies of a 2D slice, ``slice_mm`` apart."""
    array = sitk.GetArrayFromImage(slice_image)
    volume = sitk.GetImageFromArray(np.repeat(array[None], depth, axis=0))
    volume.SetSpacing((*slice_image.GetSpacing()[:2], slice_mm))
    return volume


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


SHAFT_MM2 = 1100.0


def levels(paths: list[Path]) -> dict[str, str]:
    """Estimated level (``hip``, ``shaft``, ``knee``, ``unknown``) of each slice, from mask areas and slice order."""
    by_patient: dict[str, list[tuple[int, str, float]]] = {}
    for ct_path in paths:
        name = ct_path.name[: -len("_ct.nii.gz")]
        patient, index = name.split("_s")
        mask = sitk.ReadImage(str(ct_path.with_name(ct_path.name.replace("_ct.", "_femur."))))
        area = float((sitk.GetArrayViewFromImage(mask) > 0).sum()) * float(np.prod(mask.GetSpacing()[:2]))
        by_patient.setdefault(patient, []).append((int(index), name, area))
    out = {}
    for rows in by_patient.values():
        shaft = [i for i, _, a in rows if a < SHAFT_MM2]
        for i, name, area in rows:
            if area < SHAFT_MM2:
                out[name] = "shaft"
            elif not shaft:
                out[name] = "unknown"
            else:
                out[name] = "hip" if i > max(shaft) else "knee" if i < min(shaft) else "shaft"
    return out


def select(slices: Path, per_patient: int | None) -> list[Path]:
    """All slices, or ``per_patient`` evenly spaced ones of each patient."""
    paths = sorted(slices.glob("*_ct.nii.gz"))
    if not per_patient:
        return paths
    by_patient: dict[str, list[Path]] = {}
    for path in paths:
        by_patient.setdefault(path.name.split("_s")[0], []).append(path)
    chosen = []
    for group in by_patient.values():
        picks = np.unique(np.linspace(0, len(group) - 1, min(per_patient, len(group))).round().astype(int))
        chosen += [group[i] for i in picks]
    return chosen


def interleaved(paths: list[Path]) -> list[Path]:
    """Patients taken in turn (first slice of each patient, then the second, ...), so that any prefix of
    the list, or any shard of it, samples every patient and level alike."""
    by_patient: dict[str, list[Path]] = {}
    for path in paths:
        by_patient.setdefault(path.name.split("_s")[0], []).append(path)
    groups = list(by_patient.values())
    return [g[i] for i in range(max(map(len, groups))) for g in groups if i < len(g)]


def evaluate(periosteal: list[str], endosteal: list[str], slices: Path, depth: int, slice_mm: float,
             refine: bool = True, checkpoints: list[str] | None = None, model: str | None = None,
             per_patient: int | None = None, shard: tuple[int, int] = (0, 1), stream: Any = None,
             names: set[str] | None = None, overlap: float | None = None) -> list[dict[str, object]]:
    """Score the slices (a shard of them); each row is also written to ``stream`` (CSV) as soon as it is known."""
    from femurseg.models.checkpoints import load_checkpoints
    from femurseg.inference.predictor import InferenceSettings, Predictor
    from femurseg.inference.refine import Refinement

    settings = InferenceSettings(tta="none", refinement=Refinement() if refine else None)
    if overlap is not None:
        settings = dataclasses.replace(settings, overlap=overlap)
    if checkpoints or periosteal or endosteal:
        loaded = load_checkpoints(checkpoints, periosteal, endosteal)
    else:
        from femurseg.models.zoo import model_path

        loaded = load_checkpoints([model_path(model)])
    predictor = Predictor(loaded, settings)
    paths = select(slices, per_patient)
    level = levels(paths)
    paths = interleaved(paths)[shard[0]::shard[1]]
    if names is not None:
        paths = [p for p in paths if p.name[: -len("_ct.nii.gz")] in names]
    rows: list[dict[str, object]] = []
    writer = None
    for ct_path in paths:
        mask_path = ct_path.with_name(ct_path.name.replace("_ct.", "_femur."))
        ct = sitk.ReadImage(str(ct_path))
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))) > 0
        result = predictor.predict(extruded(ct, depth, slice_mm), ct_path.name[: -len("_ct.nii.gz")])
        label = sitk.GetArrayFromImage(result.label)[depth // 2]
        predicted = label >= 1
        rows.append({"slice": result.subject_id, "level": level[result.subject_id],
                     "dice": round(dice(predicted, reference), 4),
                     "outside_fraction": round(float((predicted & ~reference).sum()) / max(int(reference.sum()), 1), 4),
                     "trabecular_fraction": round(float((label == 2).sum()) / max(int(predicted.sum()), 1), 3),
                     "_ct": sitk.GetArrayFromImage(ct), "_label": label, "_reference": reference})
        if stream is not None:
            plain = {k: v for k, v in rows[-1].items() if not k.startswith("_")}
            if writer is None:
                writer = csv.DictWriter(stream, fieldnames=list(plain))
                writer.writeheader()
            writer.writerow(plain)
            stream.flush()
    return rows


def figure(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = sorted(rows, key=lambda r: r["dice"])  # type: ignore[arg-type, return-value]
    picks = [ranked[-1], ranked[-len(ranked) // 4], ranked[len(ranked) // 2], ranked[len(ranked) // 4], ranked[1],
             ranked[0]]
    fig, axes = plt.subplots(1, len(picks), figsize=(3.2 * len(picks), 3.6))
    for ax, row in zip(axes, picks):
        ax.imshow(np.clip(row["_ct"], -200, 1300), cmap="gray")  # type: ignore[arg-type]
        ax.contour(row["_reference"], [0.5], colors="red", linewidths=1.2)  # type: ignore[arg-type]
        ax.contour(row["_label"] >= 1, [0.5], colors="orange", linewidths=0.9)  # type: ignore[operator]
        ax.contour(row["_label"] == 2, [0.5], colors="deepskyblue", linewidths=0.9)  # type: ignore[operator]
        ax.set_title(f"{row['slice']}  Dice {row['dice']:.3f}", fontsize=9)
        ax.axis("off")
    fig.suptitle("real CT: reference femur mask (red), predicted periosteal (orange) and endosteal (blue)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def markdown(rows: list[dict[str, object]], note: str, figure_path: Path | None, section: str = SECTION) -> str:
    lines = [section, "", note, "",
             "| slices | level | median Dice | 10th percentile | worst | Dice ≥ 0.9 | median area outside the mask | "
             "slices with ≤ 20 % outside |", "|---|---|---|---|---|---|---|---|"]
    groups = [("all", rows)] + [(name, [r for r in rows if r["level"] == name])
                                for name in ("hip", "shaft", "knee", "unknown")]
    for name, group in groups:
        if not group:
            continue
        scores = sorted(float(r["dice"]) for r in group)  # type: ignore[arg-type]
        outside = sorted(float(r["outside_fraction"]) for r in group)  # type: ignore[arg-type]
        within = sum(o <= 0.2 for o in outside)
        lines.append(f"| {len(group)} | {name} | {statistics.median(scores):.3f} | {scores[len(scores) // 10]:.3f} | "
                     f"{scores[0]:.3f} | {sum(s >= 0.9 for s in scores)} | {statistics.median(outside):.1%} | "
                     f"{within} ({within / len(group):.1%}) |")
    lines.append("")
    if figure_path is not None:
        lines += [f"![real CT predictions]({Path(figure_path).relative_to('docs') if str(figure_path).startswith('docs') else figure_path})", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="bundled model (default when no checkpoint is given)")
    parser.add_argument("--checkpoints", nargs="+", default=[], help="checkpoints of any target")
    parser.add_argument("--periosteal", nargs="+", default=[])
    parser.add_argument("--endosteal", nargs="+", default=[])
    parser.add_argument("--per-patient", type=int, default=None, help="evenly spaced slices per patient (default all)")
    parser.add_argument("--csv", type=Path, help="write the per-slice rows here")
    parser.add_argument("--section", default=SECTION, help="Markdown section title to write (with --append)")
    parser.add_argument("--shard", default="0/1", help="K/N: score every N-th slice from the K-th (run N in parallel)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 per shard process)")
    parser.add_argument("--summarize", type=Path, nargs="+",
                        help="CSVs of shard runs: print the table (and the figure, re-segmenting its six slices)")
    parser.add_argument("--slices", type=Path, default=Path("../shared/realct/slices"))
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--slice-mm", type=float, default=2.0)
    parser.add_argument("--refine", choices=("half-maximum", "none"), default="half-maximum",
                        help="contour refinement, as `femurseg segment --refine`")
    parser.add_argument("--overlap", type=float, default=None, help="sliding-window overlap (default: segment's)")
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--note", default="", help="what the models are, for the Markdown section")
    parser.add_argument("--append", type=Path, help="replace or add this section in a Markdown file")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    shard = tuple(int(v) for v in args.shard.split("/"))
    kwargs = dict(refine=args.refine == "half-maximum", checkpoints=args.checkpoints, model=args.model, overlap=args.overlap,
                  per_patient=args.per_patient)
    start = time.perf_counter()
    if args.summarize:
        rows = [dict(r, dice=float(r["dice"]), outside_fraction=float(r["outside_fraction"]))
                for path in args.summarize for r in csv.DictReader(path.open())]
        if args.figure:  # the six slices of the figure, segmented again with their pictures
            ranked = sorted(rows, key=lambda r: r["dice"])
            picks = {r["slice"] for r in (ranked[-1], ranked[-len(ranked) // 4], ranked[len(ranked) // 2],
                                          ranked[len(ranked) // 4], ranked[1], ranked[0])}
            pictured = {r["slice"]: r for r in evaluate(args.periosteal, args.endosteal, args.slices, args.depth,
                                                         args.slice_mm, names=picks, **kwargs)}
            rows = [pictured.get(r["slice"], r) for r in rows]
    else:
        stream = args.csv.open("w", newline="") if args.csv else None
        rows = evaluate(args.periosteal, args.endosteal, args.slices, args.depth, args.slice_mm, shard=shard,
                        stream=stream, **kwargs)
        if stream is not None:
            stream.close()
    plain = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    print(f"{len(rows)} slices in {time.perf_counter() - start:.0f} s")
    if args.figure:
        figure(rows, args.figure)
    text = markdown(rows, args.note, args.figure, args.section)
    print(text)
    if args.append:
        replace_section(args.append, args.section, text)


if __name__ == "__main__":
    main()
