"""``femurseg nets``: list the registered networks and losses (:mod:`femurseg.models.describe`)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str]) -> int:
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
