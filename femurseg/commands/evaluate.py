"""``femurseg evaluate``: compare predicted label maps with a reference manifest (:mod:`femurseg.metrics`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from femurseg.errors import FemursegError
from femurseg.metrics.evaluate import evaluate_cohort

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``femurseg evaluate --pred DIR --ref MANIFEST --out metrics.csv [--tolerance-mm T] [--workers N]``.

    Parameters
    ----------
    argv
        Arguments after ``evaluate`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 if every subject was evaluated, 1 if any subject failed, 2 if the run
        could not start (invalid manifest, missing prediction folder).

    Examples
    --------
    >>> main(["--pred", "out", "--ref", "cohort/manifest.csv", "--out", "metrics.csv"])  # doctest: +SKIP
    0
    """
    parser = argparse.ArgumentParser(
        prog="femurseg evaluate",
        description="Compare predicted 0/1/2 label maps with a reference manifest "
        "(Dice, IoU, sensitivity, precision, HD, HD95, ASSD, surface Dice, volumes).",
    )
    parser.add_argument("--pred", required=True, type=Path, help="folder of <subject_id>/segmentation.nii.gz")
    parser.add_argument("--ref", required=True, type=Path, help="reference manifest CSV")
    parser.add_argument("--out", required=True, type=Path, help="per-subject metrics CSV (summary JSON beside it)")
    parser.add_argument("--tolerance-mm", type=float, default=1.0, help="surface Dice tolerance in mm (default 1.0)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = evaluate_cohort(args.pred, args.ref, args.out, args.tolerance_mm, args.workers)
    except (FemursegError, ValueError) as error:
        print(f"femurseg evaluate: error: {error}", file=sys.stderr)
        return 2
    return 1 if result.summary["n_failed"] else 0
