"""``femurseg synth``: write a synthetic QCT phantom cohort (:mod:`femurseg.data.synthetic`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """``femurseg synth --out DIR --n N --seed S [--preset quick] [--workers W]``."""
    parser = argparse.ArgumentParser(prog="femurseg synth", description="Write a synthetic QCT phantom cohort.")
    parser.add_argument("--out", required=True, type=Path, help="output folder (gets manifest.csv)")
    parser.add_argument("--n", type=int, default=20, help="number of subjects")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first subject; subject i uses seed+i")
    parser.add_argument("--preset", default="quick", help="tiny, quick or full (see docs/synthetic.md)")
    parser.add_argument("--workers", type=int, default=1, help="processes")
    args = parser.parse_args(argv)
    from femurseg.data.synthetic import PRESETS, write_cohort

    if args.preset not in PRESETS:
        parser.error(f"unknown preset {args.preset!r}; valid: {', '.join(PRESETS)}")
    manifest = write_cohort(args.out, n=args.n, seed=args.seed, preset=args.preset, workers=args.workers)
    print(f"wrote {args.n} subjects; manifest: {manifest}")
    return 0
