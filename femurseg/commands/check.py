"""``femurseg check``: validate a cohort manifest and its files (:mod:`femurseg.data.validate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from femurseg.data.validate import DEFAULT_MAX_VOXELS, ValidationSettings, validate_manifest
from femurseg.errors import ManifestError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``femurseg check --manifest M [--max-voxels N] [--header-only]``: print a table, exit 1 on problems."""
    parser = argparse.ArgumentParser(prog="femurseg check", description="Validate a cohort manifest and its files.")
    parser.add_argument("--manifest", required=True, type=Path, help="the cohort CSV")
    parser.add_argument("--max-voxels", type=int, default=DEFAULT_MAX_VOXELS, help="refuse larger images")
    parser.add_argument("--header-only", action="store_true", help="skip the content pass (voxels are not read)")
    parser.add_argument("--no-reference", action="store_true", help="allow rows without a reference")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    try:
        report = validate_manifest(
            args.manifest, ValidationSettings(max_voxels=args.max_voxels),
            require_reference=not args.no_reference, content=not args.header_only,
        )
    except ManifestError as error:
        console.print(f"[red]{error}[/red]", markup=True, highlight=False)
        return 1
    for line in report.manifest_problems:
        console.print(f"[red]problem[/red] {line}", highlight=False)
    table = Table(title=f"{args.manifest}: {len(report.subjects)} subjects")
    table.add_column("subject")
    table.add_column("status")
    table.add_column("problems")
    for subject in report.subjects:
        status = "[green]ok[/green]" if subject.ok else f"[red]{len(subject.problems)} problem(s)[/red]"
        details = "\n".join(f"{p.column} {Path(p.file).name}: {p.message}" for p in subject.problems)
        table.add_row(subject.subject_id, status, details)
    console.print(table)
    n = len(report.problems)
    console.print("[green]all checks passed[/green]" if n == 0 else f"[red]{n} problem(s)[/red]")
    return 0 if n == 0 else 1
