"""``femurseg models``: list, show or package the bundled models (:mod:`femurseg.models.zoo`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str]) -> int:
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
