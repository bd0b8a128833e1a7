"""``femurseg segment``: the command line of cohort inference (DESIGN.md §6-7).

Examples
--------
.. code-block:: console

    femurseg segment scan.nii.gz --output out          # the bundled default model
    femurseg segment --periosteal runs/peri/fold_*/checkpoints/best.ckpt \\
                     --endosteal runs/endo/fold_*/checkpoints/best.ckpt \\
                     --input scans/ --output segmentations/ --tta auto
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from femurseg.commands.export import add_export_arguments, request_from_args
from femurseg.errors import FemursegError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``femurseg segment``."""
    parser = argparse.ArgumentParser(
        prog="femurseg segment",
        description="Segment CT scans with the bundled default model (no checkpoint arguments) or an ensemble of "
                    "checkpoints. Writes <output>/<subject>/"
                    "{segmentation.nii.gz, contours.json, report.json, qc.png} plus summary.csv and errors.csv. "
                    "Exit code 1 if any scan failed, 2 for invalid arguments or checkpoints.",
    )
    models = parser.add_argument_group("model: a bundled model (default), or checkpoints (any target, or one set "
                                       "per contour), which override it")
    models.add_argument("--model", default=None, metavar="NAME",
                        help="bundled model to use when no checkpoint is given (default: femur-ct-v5; "
                             "`femurseg models` lists them)")
    models.add_argument("--checkpoints", nargs="+", default=[], metavar="CKPT",
                        help="checkpoints; each is used for the target it was trained on")
    models.add_argument("--periosteal", nargs="+", default=[], metavar="CKPT", help="periosteal (binary) checkpoints")
    models.add_argument("--endosteal", nargs="+", default=[], metavar="CKPT", help="endosteal (binary) checkpoints")
    models.add_argument("--average-weights", action="store_true",
                        help="average each target's fold weights into one network (one pass instead of one per fold)")
    parser.add_argument("scan", nargs="?", type=Path, default=None, metavar="SCAN_OR_DIR",
                        help="a scan, a folder of scans, or a manifest CSV (or give it as --input)")
    parser.add_argument("--input", type=Path, default=None, help="same as SCAN_OR_DIR")
    parser.add_argument("--output", required=True, type=Path, help="output folder")
    window = parser.add_argument_group("ensemble and sliding window")
    window.add_argument("--tta", default="auto",
                        help="mirror axes for test-time augmentation: 'auto' (those the checkpoints were trained to "
                             "mirror; default), 'none', or axes ('x', 'xyz', ...)")
    window.add_argument("--overlap", type=float, default=0.5, help="window overlap fraction")
    window.add_argument("--blend", choices=["gaussian", "hann", "constant"], default="gaussian")
    window.add_argument("--batch-size", type=int, default=4, help="windows per network call")
    window.add_argument("--patch-size", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                        help="window size (default: the checkpoints' training patch size)")
    window.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="bf16 autocast; 'auto' uses it on GPUs and CPUs with AVX-512 BF16")
    window.add_argument("--backend", choices=["torch", "onnxruntime", "openvino", "auto"], default="torch",
                        help="what runs the networks: 'torch' (default), 'onnxruntime' or 'openvino' (exported once to "
                             "ONNX, cached in ~/.cache/femurseg/onnx; extras femurseg[onnx], femurseg[openvino]), or "
                             "'auto' (the fastest installed); see docs/inference.md")
    window.add_argument("--accumulator", choices=["float32", "float16"], default="float32",
                        help="sliding-window accumulator precision (float16 halves their memory)")
    window.add_argument("--windows", choices=["sparse", "all"], default="sparse",
                        help="'sparse' (default): a non-overlapping tiling first, then only the overlapping windows "
                             "whose core holds its femur; 'all': every window (MONAI's exhaustive sliding window)")
    window.add_argument("--sparse-threshold", type=float, default=0.05, metavar="P",
                        help="periosteal probability of the first pass that makes a window worth evaluating")
    window.add_argument("--sparse-core", type=float, default=0.5, metavar="F",
                        help="central fraction of a window (per axis) searched for that probability; 1 = all of it")
    window.add_argument("--skip-below-hu", type=_optional_float, default=None, metavar="HU",
                        help="opt-in speed-up: windows whose densest voxel is below HU (e.g. 300) count as "
                             "background without running the networks (default: evaluate every window)")
    post = parser.add_argument_group("postprocessing and outputs")
    post.add_argument("--bilateral", nargs="?", const="yes", default="auto", choices=("auto", "yes", "no"),
                      help="femora to keep: 'auto' (default) keeps a second femur when one is found on the other "
                           "side; 'yes' (or the bare flag) always keeps the two largest components; 'no' keeps one")
    post.add_argument("--min-cortex-mm", type=float, default=0.0, help="minimum cortical thickness (0: one voxel)")
    post.add_argument("--no-fill-holes", action="store_true")
    post.add_argument("--thresholds", nargs="+", metavar="FILE|P E",
                      help="decoding thresholds: a file from `femurseg thresholds` (fitted for these checkpoints) "
                           "or two probabilities for the periosteal and endosteal maps (default 0.5 0.5)")
    post.add_argument("--refine", choices=("half-maximum", "none"), default="half-maximum",
                      help="refine the contours with the scan's intensities: both surfaces at half maximum between "
                           "the cortical plateau and the neighbouring tissue (default), or keep the networks' "
                           "contours ('none'); see docs/inference.md")
    post.add_argument("--calibration", type=float, nargs=2, metavar=("SLOPE", "INTERCEPT"),
                      help="HU to K2HPO4 mg/cm³ line for vBMD and BMC")
    post.add_argument("--save-probabilities", action="store_true", help="write probabilities.nii.gz")
    post.add_argument("--uncertainty", action="store_true",
                      help="write uncertainty.nii.gz (ensemble standard deviation) and add the members' agreement "
                           "(pairwise Dice, volume spread, uncertainty in the cortex) to qc.json")
    post.add_argument("--uncertainty-threshold", type=float, default=0.15)
    post.add_argument("--no-qc", action="store_true", help="skip qc.png")
    post.add_argument("--analyze", action="store_true",
                      help="also run `femurseg analyze` on each segmentation (default calibration: the in-scan "
                           "phantom, else internal) into <output>/<subject>/analysis/; see docs/analysis.md")
    post.add_argument("--overwrite", action="store_true",
                      help="segment every scan again (default: keep subjects whose folder is complete and was made "
                           "from the same scan, checkpoints and settings)")
    add_export_arguments(parser)
    guard = parser.add_argument_group("input limits (a scan beyond them is refused, per subject)")
    guard.add_argument("--max-extent-mm", type=float, nargs=3, default=[600.0, 600.0, 2000.0], metavar=("X", "Y", "Z"),
                       help="largest physical extent per axis (default: 600 600 2000)")
    guard.add_argument("--max-grid-voxels", type=int, default=200_000_000,
                       help="most voxels on the network's resampled grid (default: 2e8)")
    run = parser.add_argument_group("devices (Trainer.predict)")
    run.add_argument("--devices", "--trainer.devices", dest="devices", default="1",
                     help="number of devices (or 'auto'); scans are split across them")
    run.add_argument("--accelerator", "--trainer.accelerator", dest="accelerator", default="auto")
    run.add_argument("--strategy", "--trainer.strategy", dest="strategy", default="auto")
    return parser


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def main(argv: list[str] | None = None) -> int:
    """Run ``femurseg segment``; returns 0 on success, 1 if a scan failed, 2 on invalid input."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if (args.scan is None) == (args.input is None):
        parser.error("give the scans once: as SCAN_OR_DIR or as --input")
    args.input = args.input or args.scan
    from femurseg.data.validate import ValidationSettings
    from femurseg.inference.cohort import discover_inputs, run_cohort
    from femurseg.models.checkpoints import load_checkpoints
    from femurseg.inference.postprocess import Postprocessing
    from femurseg.inference.predictor import InferenceSettings, Predictor
    from femurseg.inference.refine import Refinement
    from femurseg.inference.report import Calibration
    from femurseg.inference.thresholds import thresholds_option

    try:
        if args.checkpoints or args.periosteal or args.endosteal:
            if args.model:
                raise ValueError("--model picks a bundled model; it cannot be combined with checkpoints")
            checkpoints = load_checkpoints(args.checkpoints, args.periosteal, args.endosteal,
                                           average=args.average_weights)
        else:
            from femurseg.models.zoo import model_path

            checkpoints = load_checkpoints([model_path(args.model)])
        thresholds = thresholds_option(args.thresholds, checkpoints) if args.thresholds else (0.5, 0.5)
        settings = InferenceSettings(
            tta=args.tta, overlap=args.overlap, blend=args.blend, batch_size=args.batch_size,
            patch_size=tuple(args.patch_size) if args.patch_size else None, precision=args.precision,
            backend=args.backend, accumulator=args.accumulator, windows=args.windows,
            sparse_threshold=args.sparse_threshold, sparse_core=args.sparse_core, skip_below_hu=args.skip_below_hu,
            average_weights=args.average_weights,
            uncertainty=args.uncertainty, uncertainty_threshold=args.uncertainty_threshold,
            keep_probabilities=args.save_probabilities,
            postprocessing=Postprocessing(bilateral={"auto": "auto", "yes": True, "no": False}[args.bilateral], min_cortex_mm=args.min_cortex_mm,
                                          fill_holes=not args.no_fill_holes, thresholds=thresholds),
            refinement=Refinement() if args.refine == "half-maximum" else None,
            calibration=Calibration(*args.calibration) if args.calibration else None,
        )
        predictor = Predictor(checkpoints, settings)
        exports = request_from_args(args)
        inputs = discover_inputs(args.input)
    except (FemursegError, ValueError) as error:
        print(f"femurseg segment: error: {error}", file=sys.stderr)
        return 2
    devices: int | str = int(args.devices) if str(args.devices).isdigit() else args.devices
    checks = ValidationSettings(max_extent_mm=tuple(args.max_extent_mm), max_grid_voxels=args.max_grid_voxels)
    failed = run_cohort(inputs, args.output, predictor, qc=not args.no_qc, checks=checks, overwrite=args.overwrite,
                        exports=None if exports.empty else exports,
                        trainer_kwargs={"accelerator": args.accelerator, "devices": devices, "strategy": args.strategy})
    print(f"femurseg segment: {len(inputs) - failed} of {len(inputs)} scans segmented into {args.output}"
          + (f"; {failed} failed (see {args.output / 'errors.csv'})" if failed else ""))
    if args.analyze:
        failed += _analyze(inputs, args.output)
    return 1 if failed else 0


def _analyze(inputs: list, output: Path) -> int:
    """``femurseg analyze`` on every segmentation written; returns the number of scans it failed on."""
    from femurseg.analysis import analyze

    failed = 0
    for scan in inputs:
        segmentation = output / scan.subject_id / "segmentation.nii.gz"
        if not segmentation.exists():
            continue
        try:
            analyze(scan.path, segmentation, subject=scan.subject_id).write(output / scan.subject_id / "analysis")
        except FemursegError as error:
            failed += 1
            print(f"femurseg segment: {scan.subject_id}: analysis failed: {error}", file=sys.stderr)
    print(f"femurseg segment: analysis of {len(inputs) - failed} scans in {output}/<subject>/analysis")
    return failed
