"""The ``femurseg`` command line: LightningCLI subcommands plus plain ones.

``fit / validate / test / predict`` go through :class:`FemursegCLI` (a
``LightningCLI``); commands that need neither model nor data module (``synth``,
``nets``, ``check``, ``segment``, ``evaluate``) are dispatched before Lightning is
imported, so they start fast. This module only wires; each command's work lives in
the module that owns it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "run_lightning_cli"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

#: plain commands: name -> (help, "module:function" taking argv and returning an exit code)
PLAIN_COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("write a synthetic QCT cohort with manifest.csv", "femurseg.cli:synth_main"),
    "nets": ("list registered networks and their parameters", "femurseg.cli:nets_main"),
    "models": ("list the bundled default models and their cards (or package one)", "femurseg.cli:models_main"),
    "segment": ("segment scans with the bundled default model or an ensemble of checkpoints", "femurseg.inference.command:main"),
    "thresholds": ("fit volume-calibrated decoding thresholds on labelled scans", "femurseg.inference.thresholds:main"),
    "evaluate": ("compare predictions with a reference manifest", "femurseg.metrics.evaluate:main"),
    "cv": ("train every fold, then evaluate out-of-fold predictions (cv_summary.csv)", "femurseg.cv:main"),
    "check": ("validate a manifest and print a table", "femurseg.data.validate:main"),
}


def _usage() -> str:
    lines = ["usage: femurseg <command> [options]", "", "commands:"]
    lines += [f"  {c:<10} LightningCLI {c} (--config X.yaml, --print_config)" for c in LIGHTNING_COMMANDS]
    lines += [f"  {name:<10} {help_}" for name, (help_, _) in PLAIN_COMMANDS.items()]
    lines += ["", "Run 'femurseg <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``femurseg`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in PLAIN_COMMANDS:
        module_name, _, function = PLAIN_COMMANDS[command][1].partition(":")
        handler: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), function)
        return int(handler(rest) or 0)
    if command in LIGHTNING_COMMANDS:
        run_lightning_cli(argv)
        return 0
    print(f"femurseg: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


def run_lightning_cli(args: Sequence[str] | None = None, run: bool = True) -> Any:
    """Build (and by default run) :class:`FemursegCLI` with ``args``.

    ``run=False`` parses and instantiates without running a subcommand, which is
    how sweep arguments are checked offline.
    """
    from femurseg.lightning_cli import FemursegCLI

    return FemursegCLI(args=list(args) if args is not None else None, run=run)


# plain commands ---------------------------------------------------------------
def synth_main(argv: list[str]) -> int:
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


def nets_main(argv: list[str]) -> int:
    """``femurseg nets [--describe NAME | --losses]``: list networks, print one's YAML block, or list losses."""
    parser = argparse.ArgumentParser(prog="femurseg nets", description="List the registered networks.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--describe", metavar="NAME", help="print the default model config block of NAME")
    group.add_argument("--losses", action="store_true", help="list the registered losses and their parameters")
    args = parser.parse_args(argv)
    from femurseg.models.describe import describe_net, list_losses, list_nets

    if args.describe:
        try:
            print(describe_net(args.describe))
        except KeyError as error:
            print(f"femurseg nets: {error.args[0]}", file=sys.stderr)
            return 2
    else:
        print(list_losses() if args.losses else list_nets())
    return 0


def models_main(argv: list[str]) -> int:
    """``femurseg models [--show NAME | --package CKPT --name NAME --recipe CMD]``."""
    parser = argparse.ArgumentParser(prog="femurseg models",
                                     description="List the bundled models (weights shipped with femurseg) and their "
                                                 "cards, show one card in full, or package a checkpoint as one.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--show", metavar="NAME", help="print the full card of NAME as JSON")
    group.add_argument("--package", metavar="CKPT", type=Path, help="package a training checkpoint as a bundled model")
    parser.add_argument("--name", help="with --package: versioned model name (e.g. femur-ct-v1)")
    parser.add_argument("--recipe", default="", help="with --package: the command that rebuilds the weights")
    parser.add_argument("--description", default="", help="with --package: one line for the listing")
    parser.add_argument("--commit", default=None, help="with --package: git commit the training ran at (default HEAD)")
    args = parser.parse_args(argv)
    import json

    from femurseg.errors import CheckpointError
    from femurseg.models.zoo import get_model, list_models, model_path, package_checkpoint

    try:
        if args.package is not None:
            if not args.name:
                parser.error("--package needs --name")
            model = package_checkpoint(args.package, args.name, args.recipe, args.description, args.commit)
            print(f"packaged {args.package} as {model.name}: {model.path} (sha256 {model.sha256})")
        elif args.show:
            model = get_model(args.show)
            model_path(model.name)  # the hash is checked before anything is shown as usable
            print(json.dumps({"name": model.name, "file": model.file, "sha256": model.sha256, "card": model.card},
                             indent=1))
        else:
            models = list_models()
            print("\n\n".join(m.summary() for m in models) if models else "no bundled models")
    except CheckpointError as error:
        print(f"femurseg models: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
