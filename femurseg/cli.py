"""The ``femurseg`` command line: LightningCLI subcommands plus plain ones.

``fit / validate / test / predict`` go through :class:`FemursegCLI` (a
``LightningCLI``); commands that need neither model nor data module (``synth``,
``nets``, ``check``, ``segment``, ``export``, ``evaluate``) are dispatched before Lightning is
imported, so they start fast. This module only wires; each command's work lives in
the module that owns it.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main", "run_lightning_cli"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

#: plain commands: name -> (help, "module:function" taking argv and returning an exit code)
PLAIN_COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("write a synthetic QCT cohort with manifest.csv", "femurseg.commands.synth:main"),
    "nets": ("list registered networks and their parameters", "femurseg.commands.nets:main"),
    "models": ("list the bundled default models and their cards (or package one)", "femurseg.commands.models:main"),
    "analyze": ("calibrated bone density, hip geometry and cortical thickness of a label map", "femurseg.commands.analyze:main"),
    "segment": ("segment scans with the bundled default model or an ensemble of checkpoints", "femurseg.commands.segment:main"),
    "export": ("surface meshes, Slicer seg.nrrd, DICOM-SEG of any 0/1/2 label map (docs/export.md)", "femurseg.commands.export:main"),
    "thresholds": ("fit volume-calibrated decoding thresholds on labelled scans", "femurseg.commands.thresholds:main"),
    "evaluate": ("compare predictions with a reference manifest", "femurseg.commands.evaluate:main"),
    "cv": ("train every fold, then evaluate out-of-fold predictions (cv_summary.csv)", "femurseg.cv:main"),
    "check": ("validate a manifest and print a table", "femurseg.commands.check:main"),
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

    with warnings.catch_warnings():
        # ``femurseg fit ...`` hands its own argv over as ``args``: not the mistake Lightning warns of
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return FemursegCLI(args=list(args) if args is not None else None, run=run)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
