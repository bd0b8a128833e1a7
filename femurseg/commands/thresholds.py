"""``femurseg thresholds``: fit volume-calibrated decoding thresholds (:mod:`femurseg.inference.thresholds`)."""

from __future__ import annotations

from pathlib import Path

from femurseg.data.folds import Splits
from femurseg.errors import FemursegError
from femurseg.inference.predictor import Predictor
from femurseg.inference.thresholds import ThresholdsError, fit_thresholds

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``femurseg thresholds``: fit volume-calibrated thresholds; 0 on success, 2 on invalid input."""
    import argparse
    import sys

    from femurseg.data.manifest import read_manifest
    from femurseg.inference.predictor import InferenceSettings
    from femurseg.models.checkpoints import load_checkpoints

    parser = argparse.ArgumentParser(
        prog="femurseg thresholds",
        description="Fit the periosteal and endosteal probability thresholds at which the mean volume error "
                    "over labelled scans is zero (use the split's training and validation subjects, never its "
                    "test subjects), for `femurseg segment --thresholds FILE`.")
    parser.add_argument("--periosteal", nargs="+", required=True, metavar="CKPT")
    parser.add_argument("--endosteal", nargs="+", required=True, metavar="CKPT")
    parser.add_argument("--input", required=True, type=Path, help="a manifest CSV with reference labels")
    parser.add_argument("--splits", type=Path, help="splits.json of the training run: its test subjects are left out")
    parser.add_argument("--subjects", nargs="+", metavar="ID", help="use only these subjects")
    parser.add_argument("--output", required=True, type=Path, help="thresholds JSON to write")
    parser.add_argument("--tta", default="auto", help="test-time mirror axes, as `segment` will use them (default auto)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument("--average-weights", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        records = read_manifest(args.input)
        excluded: set[str] = set()
        if args.splits:
            excluded = set(Splits.read(args.splits).test)  # ManifestError if it is not a splits file
        if args.subjects:
            unknown = sorted(set(args.subjects) - {r.subject_id for r in records})
            if unknown:
                raise ThresholdsError(f"{args.input}: no subject {', '.join(unknown)}")
            records = [r for r in records if r.subject_id in set(args.subjects)]
        records = [r for r in records if r.subject_id not in excluded]
        checkpoints = load_checkpoints([], args.periosteal, args.endosteal, average=args.average_weights)
        predictor = Predictor(checkpoints, InferenceSettings(tta=args.tta, precision=args.precision,
                                                             average_weights=args.average_weights))
        print(f"fitting thresholds on {len(records)} subjects ({len(excluded)} test subjects left out)", flush=True)
        fitted = fit_thresholds(predictor, records, progress=True)
    except (FemursegError, ValueError) as error:
        print(f"femurseg thresholds: error: {error}", file=sys.stderr)
        return 2
    fitted.write(args.output)
    print(f"thresholds: periosteal {fitted.periosteal:.4f}, endosteal {fitted.endosteal:.4f} -> {args.output}")
    for name in ("periosteal", "trabecular", "cortical"):
        before, after = fitted.error_at_default[name], fitted.error_fitted[name]
        print(f"  {name:<11} volume error mean {before['mean']:+.2f} % (worst {before['worst']:+.2f}) at 0.5 -> "
              f"{after['mean']:+.2f} % (worst {after['worst']:+.2f})")
    return 0
