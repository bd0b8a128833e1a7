"""Shared fixtures: tiny phantoms made by the library's own generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest of 8 tiny synthetic phantoms (session-wide, read-only for tests)."""
    from femurseg.data.synthetic import write_cohort

    return write_cohort(tmp_path_factory.mktemp("tiny_cohort"), n=8, seed=0, preset="tiny")


@pytest.fixture()
def tiny_records(tiny_cohort: Path):
    from femurseg.data.manifest import read_manifest

    return read_manifest(tiny_cohort)
