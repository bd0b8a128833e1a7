"""How well the QC flag of ``qc.json`` separates good from bad segmentations (issue 19).

Usage::

    python benchmarks/qc.py phantoms [--n 6] [--seed 7000] [--csv qc_phantoms.csv] [--append docs/benchmarks.md]
    python benchmarks/qc.py realct --slices ../shared/realct/slices --per-patient 1 [--csv qc_realct.csv] \\
        [--shard K/N] [--threads T] [--append docs/benchmarks.md]
    python benchmarks/qc.py summarize A.csv B.csv [--append docs/benchmarks.md]

Both segment with a bundled model (``--model``, default: the default model) and ``InferenceSettings(uncertainty=True)``
(test-time flips ``auto``: the two x flips are the ensemble's members), compare the
periosteal mask with the truth, and tabulate Dice against ``qc.json``'s ``pass``:
the fraction of bad segmentations (Dice < 0.8) that are flagged, and of good ones
(Dice ≥ 0.95) that are not.

- ``phantoms``: ``--n`` phantoms of the ``transfer`` preset (seeds ``--seed`` on; the model
  was trained on seeds ≥ 100000), each as generated (``clean``) and degraded so that the
  model fails in different ways: ``hu_scale`` (HU × 0.4: a miscalibrated scanner),
  ``noise`` (+ Gaussian noise σ 400 HU), ``dark_bone`` (HU above 200 compressed ten-fold:
  bone looks like soft tissue), ``lying`` (the array's x and z axes swapped: the femur
  lies across the slices), ``fov`` (the in-plane field of view ends through the femur:
  a good segmentation of an incomplete femur, which the flag should catch as such).
  Dice is over the whole volume.
- ``realct``: the real axial slices of ``../shared/realct`` extruded into prisms as in
  ``benchmarks/realct.py``; Dice of the middle slice against the real femur mask.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from markdown_section import replace_section  # benchmarks/ is on sys.path when run as a script

SECTION = "## QC flag: good against bad segmentations (benchmarks/qc.py)"
BAD, GOOD = 0.8, 0.95
DEGRADATIONS = ("clean", "hu_scale", "noise", "dark_bone", "lying", "fov")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


MODEL: str | None = None  # --model: a bundled model; None is the default model


def predictor() -> Any:
    from femurseg.inference.predictor import InferenceSettings, Predictor
    from femurseg.models.checkpoints import load_checkpoints
    from femurseg.models.zoo import DEFAULT_MODEL, model_path

    print(f"model: {MODEL or DEFAULT_MODEL}", file=sys.stderr, flush=True)
    return Predictor(load_checkpoints([model_path(MODEL)]), InferenceSettings(uncertainty=True))


def degrade(image: sitk.Image, label: sitk.Image, kind: str, seed: int) -> tuple[sitk.Image, sitk.Image]:
    """The scan (and its truth) degraded by ``kind`` (see the module docstring)."""
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    truth = sitk.GetArrayFromImage(label)
    if kind == "hu_scale":
        hu = hu * 0.4
    elif kind == "noise":
        hu = hu + np.random.default_rng(seed).normal(0.0, 400.0, hu.shape).astype(np.float32)
    elif kind == "lying":
        spacing = image.GetSpacing()
        out = sitk.GetImageFromArray(np.ascontiguousarray(hu.transpose(2, 1, 0)).astype(np.int16))
        out.SetSpacing(spacing[::-1])
        lying = sitk.GetImageFromArray(np.ascontiguousarray(truth.transpose(2, 1, 0)))
        lying.CopyInformation(out)
        return out, lying
    elif kind == "dark_bone":
        hu = np.where(hu > 200, 200 + (hu - 200) * 0.1, hu)
    elif kind == "fov":
        columns = np.nonzero((truth > 0).any(axis=(0, 1)))[0]
        keep = (int(columns.min()) + int(columns.max())) // 2
        out = sitk.GetImageFromArray(np.ascontiguousarray(hu[:, :, :keep]).astype(np.int16))
        out.SetSpacing(image.GetSpacing()), out.SetOrigin(image.GetOrigin()), out.SetDirection(image.GetDirection())
        cut = sitk.GetImageFromArray(np.ascontiguousarray(truth[:, :, :keep]))
        cut.CopyInformation(out)
        return out, cut
    out = sitk.GetImageFromArray(np.clip(np.rint(hu), -1024, 3071).astype(np.int16))
    out.CopyInformation(image)
    return out, label


def row_of(name: str, group: str, score: float, report: dict[str, Any]) -> dict[str, Any]:
    qc = report["qc"]
    ensemble = qc.get("ensemble") or {}
    return {"case": name, "group": group, "dice": round(score, 4), "qc_pass": qc["pass"], "flags": " ".join(qc["flags"]),
            "member_dice_min": ensemble.get("member_dice_min"), "volume_cv": ensemble.get("volume_cv"),
            "shell_uncertainty": ensemble.get("shell_uncertainty"),
            "extra_component_fraction": (qc.get("decoded") or {}).get("extra_component_fraction"),
            "cortical_thickness_mm": qc["label"]["cortical_thickness_mm"],
            "edge_area_mm2": qc["label"]["edge_area_mm2"]}


def run_phantoms(n: int, seed: int, stream: Any) -> list[dict[str, Any]]:
    from femurseg.data.synthetic import generate_subject
    from femurseg.labels import periosteal_mask

    model = predictor()
    rows, writer = [], None
    for s in range(seed, seed + n):
        case = generate_subject(s, "transfer")
        for kind in DEGRADATIONS:
            image, label = degrade(case.image, case.label, kind, s)
            result = model.predict(image, f"{case.subject_id}_{kind}")
            score = dice(periosteal_mask(sitk.GetArrayViewFromImage(result.label)),
                         periosteal_mask(sitk.GetArrayViewFromImage(label)))
            rows.append(row_of(result.subject_id, kind, score, result.report))
            writer = emit(rows[-1], stream, writer)
    return rows


def run_realct(slices: Path, per_patient: int | None, shard: tuple[int, int], stream: Any,
               done: set[str] = frozenset()) -> list[dict[str, Any]]:
    from realct import extruded, interleaved, levels, select

    model = predictor()
    paths = select(slices, per_patient)
    level = levels(paths)
    rows, writer = [], None
    for ct_path in interleaved(paths)[shard[0]::shard[1]]:
        name = ct_path.name[: -len("_ct.nii.gz")]
        if name in done:
            continue
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path.with_name(f"{name}_femur.nii.gz")))) > 0
        result = model.predict(extruded(sitk.ReadImage(str(ct_path)), 32, 2.0), name)
        predicted = sitk.GetArrayFromImage(result.label)[16] >= 1
        rows.append(row_of(name, level[name], dice(predicted, reference), result.report))
        writer = emit(rows[-1], stream, writer)
    return rows


def emit(row: dict[str, Any], stream: Any, writer: Any) -> Any:
    print(f"{row['case']}: Dice {row['dice']:.3f}, {'pass' if row['qc_pass'] else 'FLAGGED ' + row['flags']}",
          flush=True)
    if stream is not None:
        writer = writer or csv.DictWriter(stream, fieldnames=list(row))
        if stream.tell() == 0:
            writer.writeheader()
        writer.writerow(row)
        stream.flush()
    return writer


def _flagged(row: dict[str, Any]) -> bool:
    return str(row["qc_pass"]) not in ("True", "true", "1")


def markdown(rows: list[dict[str, Any]], title: str, note: str) -> str:
    def share(group: list[dict[str, Any]], flagged: bool) -> str:
        if not group:
            return "–"
        k = sum(_flagged(r) == flagged for r in group)
        return f"{k} / {len(group)} ({k / len(group):.0%})"

    lines = [f"### {title}", "", note, "",
             "| cases | group | median Dice | Dice < 0.8 | flagged among them | Dice ≥ 0.95 | not flagged among them |",
             "|---|---|---|---|---|---|---|"]
    groups = [("all", rows)] + [(g, [r for r in rows if r["group"] == g]) for g in dict.fromkeys(r["group"] for r in rows)]
    for name, group in groups:
        bad = [r for r in group if float(r["dice"]) < BAD]
        good = [r for r in group if float(r["dice"]) >= GOOD]
        lines.append(f"| {len(group)} | {name} | {statistics.median(float(r['dice']) for r in group):.3f} | "
                     f"{len(bad)} | {share(bad, True)} | {len(good)} | {share(good, False)} |")
    counts: dict[str, list[int]] = {}
    for r in rows:
        for flag in str(r["flags"]).split():
            counts.setdefault(flag, [0, 0, 0])
            counts[flag][0 if float(r["dice"]) < BAD else 2 if float(r["dice"]) >= GOOD else 1] += 1
    if counts:
        lines += ["", "| flag | raised on Dice < 0.8 | on 0.8-0.95 | on ≥ 0.95 |", "|---|---|---|---|"]
        lines += [f"| `{f}` | {a} | {b} | {c} |" for f, (a, b, c) in sorted(counts.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("phantoms", "realct", "summarize"))
    parser.add_argument("inputs", nargs="*", type=Path,
                        help="CSVs to summarize (summarize), or of slices already done, to skip (realct)")
    parser.add_argument("--model", default=None, help="bundled model (default: the default model)")
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument("--slices", type=Path, default=Path("../shared/realct/slices"))
    parser.add_argument("--per-patient", type=int, default=1)
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--note", default="")
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()
    global MODEL
    MODEL = args.model
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    stream = args.csv.open("a+", newline="") if args.csv else None
    if args.what == "phantoms":
        rows, title = run_phantoms(args.n, args.seed, stream), "Phantoms"
    elif args.what == "realct":
        shard = tuple(int(v) for v in args.shard.split("/"))
        done = {r["case"] for path in args.inputs for r in csv.DictReader(path.open())}  # CSVs of slices done
        rows, title = run_realct(args.slices, args.per_patient, shard, stream, done), "Real CT slices"
    else:
        rows = [r for path in args.inputs for r in csv.DictReader(path.open())]
        title = "Real CT slices" if rows and rows[0]["group"] in ("hip", "shaft", "knee", "unknown") else "Phantoms"
    print(f"{len(rows)} cases in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    text = markdown(rows, title, args.note)
    print(text)
    if args.append:
        path = args.append
        old = path.read_text() if path.is_file() else ""
        section = old[old.find(SECTION):] if SECTION in old else ""
        body = section.split("\n## ", 1)[0] if section else SECTION + "\n"
        marker = f"### {title}"
        if marker in body:
            head, _, rest = body.partition(marker)
            tail = rest.split("\n### ", 1)
            body = head + text + ("\n### " + tail[1] if len(tail) > 1 else "")
        else:
            body = body.rstrip("\n") + "\n\n" + text
        replace_section(path, SECTION, body)


if __name__ == "__main__":
    main()
