"""Accuracy of trained models on freshly generated phantoms (the held-out figures of the docs).

Usage::

    python benchmarks/heldout.py [--model femur-ct-v5 | --checkpoints C.ckpt | --periosteal P.ckpt --endosteal E.ckpt] \\
        --seed 5000 --n 20 [--preset full] \\
        [--refine half-maximum none] [--work DIR] [--append docs/benchmarks.md]

Generates ``--n`` phantoms of ``--preset`` (seeds ``seed .. seed+n-1``; pick seeds that no model
was trained or tuned on: the built-in quick-start cohort uses 0-19), segments them with
``femurseg.inference`` (default settings, once per ``--refine`` value), evaluates the label maps
against the phantoms' truth with ``femurseg.metrics`` and prints, per setting, the mean Dice of the
periosteal, endosteal and cortical masks and each compartment's volume error: mean, range,
standard deviation and how many scans are within 5 % of the truth.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from markdown_section import replace_section  # benchmarks/ is on sys.path when run as a script

SECTION = "## Held-out phantoms (benchmarks/heldout.py)"
TARGETS = {"periosteal": "periosteal", "endosteal": "trabecular", "cortical": "cortical"}


def load(args: argparse.Namespace) -> Any:
    """The checkpoint set to score: given checkpoints, else the bundled model ``--model`` (default model)."""
    from femurseg.models.checkpoints import load_checkpoints

    if args.checkpoints or args.periosteal or args.endosteal:
        return load_checkpoints(args.checkpoints, args.periosteal, args.endosteal)
    from femurseg.models.zoo import model_path

    return load_checkpoints([model_path(args.model)])


def segment_and_evaluate(checkpoints: Any, manifest: Path, out: Path, refine: str) -> list[dict[str, Any]]:
    """Segment the manifest's scans into ``out`` and return ``femurseg evaluate``'s per-subject rows."""
    from femurseg.inference.cohort import discover_inputs, run_cohort
    from femurseg.inference.predictor import InferenceSettings, Predictor
    from femurseg.inference.refine import Refinement
    from femurseg.metrics.evaluate import evaluate_cohort

    settings = InferenceSettings(refinement=Refinement() if refine == "half-maximum" else None)
    predictor = Predictor(checkpoints, settings)
    failures = run_cohort(discover_inputs(manifest), out, predictor, qc=False)
    if failures:
        raise RuntimeError(f"{failures} scan(s) failed; see {out / 'errors.csv'}")
    return evaluate_cohort(out, manifest, out / "evaluation.csv", show=False).rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean Dice per mask; mean, range, SD and count within 5 % of each compartment's volume error."""
    rows = [r for r in rows if r.get("status", "ok") == "ok"]
    result: dict[str, Any] = {"n": len(rows)}
    for key, name in TARGETS.items():
        dice = [float(r[f"{key}_dice"]) for r in rows]
        errors = [float(r[f"{key}_volume_error_pct"]) for r in rows]
        result[name] = {
            "dice": statistics.fmean(dice),
            "mean": statistics.fmean(errors), "low": min(errors), "high": max(errors),
            "sd": statistics.stdev(errors) if len(errors) > 1 else 0.0,
            "within_5": sum(abs(e) <= 5.0 for e in errors),
        }
    return result


def markdown(summaries: dict[str, dict[str, Any]], note: str) -> str:
    lines = [SECTION, "", note, "",
             "| `--refine` | scans | Dice periosteal / endosteal / cortical | periosteal volume error | "
             "trabecular | cortical |", "|---|---|---|---|---|---|"]
    for refine, s in summaries.items():
        cells = [f"{s[name]['mean']:+.1f} % ({s[name]['low']:+.1f} to {s[name]['high']:+.1f}), SD {s[name]['sd']:.1f}, "
                 f"{s[name]['within_5']} of {s['n']} within 5 %" for name in TARGETS.values()]
        dice = " / ".join(f"{s[name]['dice']:.4f}" for name in TARGETS.values())
        lines.append(f"| {refine} | {s['n']} | {dice} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="bundled model (the default when no checkpoint is given)")
    parser.add_argument("--checkpoints", nargs="+", default=[])
    parser.add_argument("--periosteal", nargs="+", default=[])
    parser.add_argument("--endosteal", nargs="+", default=[])
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--refine", nargs="+", choices=("half-maximum", "none"), default=["half-maximum", "none"])
    parser.add_argument("--work", type=Path, help="keep phantoms and segmentations here (default: a temporary folder)")
    parser.add_argument("--note", default="", help="what the models are, for the Markdown section")
    parser.add_argument("--append", type=Path, help="replace or add this section in a Markdown file")
    args = parser.parse_args()

    from femurseg.data.synthetic import write_cohort

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        manifest = write_cohort(work / "phantoms", args.n, seed=args.seed, preset=args.preset)
        checkpoints = load(args)
        summaries = {refine: summarize(segment_and_evaluate(checkpoints, manifest, work / f"segmentation_{refine}",
                                                            refine))
                     for refine in args.refine}
    models = ", ".join(m.path for m in checkpoints.members)
    note = (f"{time.strftime('%Y-%m-%d')}: {args.n} `{args.preset}` phantoms, seeds {args.seed}-{args.seed + args.n - 1}; models "
            f"{models}{' (' + args.note + ')' if args.note else ''}; default "
            f"`femurseg segment` settings; machine: {platform.machine()}, {os.cpu_count()} logical CPUs "
            f"(accuracy does not depend on it).")
    text = markdown(summaries, note)
    print(text)
    if args.append:
        replace_section(args.append, SECTION, text)


if __name__ == "__main__":
    main()
