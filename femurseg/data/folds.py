"""Held-out test set and k-fold cross-validation splits (DESIGN.md §5).

``splits.json`` is made once per experiment from the manifest and a seed, and
reused by every later run: a run never re-splits. If the manifest's subjects no
longer match the stored split, that is an error, never a silent regeneration.

Examples
--------
>>> splits = make_splits([f"s{i}" for i in range(20)], num_folds=4, test_fraction=0.15, seed=0)
>>> len(splits["test"]), len(splits["folds"]), len(splits["folds"][0]["val"])
(3, 4, 5)
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from femurseg.atomic import atomic_write_text
from femurseg.errors import ManifestError

__all__ = ["make_splits", "load_or_create_splits", "select_fold", "Fold"]

Fold = int | str

log = logging.getLogger(__name__)


def _by_group(subjects: Sequence[str], groups: Sequence[str | None], rng: np.random.Generator) -> list[list[str]]:
    """Subjects grouped by stratum (groups in sorted order), each group shuffled."""
    by_group: dict[str, list[str]] = defaultdict(list)
    for subject, group in zip(subjects, groups):
        by_group[group or ""].append(subject)
    return [[members[i] for i in rng.permutation(len(members))] for _, members in sorted(by_group.items())]


def _proportional_counts(sizes: list[int], total: int) -> list[int]:
    """Split ``total`` over groups in proportion to ``sizes`` (largest remainder)."""
    n = sum(sizes)
    exact = [total * size / n for size in sizes] if n else [0.0] * len(sizes)
    counts = [int(np.floor(x)) for x in exact]
    for i in sorted(range(len(sizes)), key=lambda i: exact[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts


def make_splits(
    subjects: Sequence[str],
    groups: Sequence[str | None] | None = None,
    num_folds: int = 10,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, Any]:
    """Split subjects into a held-out test set and ``num_folds`` folds.

    Parameters
    ----------
    subjects
        Subject ids.
    groups
        Optional stratum per subject; each fold and the test set get a share of
        every group in proportion.
    num_folds
        Number of cross-validation folds over the non-test subjects.
    test_fraction
        Fraction held out for the final test (rounded to the nearest subject).
    seed
        Seed of the permutation; same inputs and seed give the same split.

    Returns
    -------
    dict
        ``{"seed", "test": [...], "folds": [{"train": [...], "val": [...]}, ...]}``.

    Raises
    ------
    ValueError
        If there are too few subjects for the folds.
    """
    subjects = list(subjects)
    if len(set(subjects)) != len(subjects):
        raise ValueError("subject ids must be unique")
    groups = list(groups) if groups is not None else [None] * len(subjects)
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    strata = _by_group(subjects, groups, rng)
    n_test = int(round(test_fraction * len(subjects)))
    test: list[str] = []
    rest_strata: list[list[str]] = []
    for members, count in zip(strata, _proportional_counts([len(m) for m in strata], n_test)):
        test += members[:count]
        rest_strata.append(members[count:])
    rest = [s for members in rest_strata for s in members]
    if num_folds < 1 or num_folds > len(rest) or (num_folds == 1 and len(rest) < 2):
        raise ValueError(f"cannot make {num_folds} folds from {len(rest)} non-test subjects")
    if num_folds == 1:  # a single train/val split: 20 % validation
        n_val = max(1, len(rest) // 5)
        val_sets = [rest[-n_val:]]
    else:
        # round robin that continues across groups: every fold gets floor/ceil of each group's share
        val_sets = [[] for _ in range(num_folds)]
        for position, subject in enumerate(rest):
            val_sets[position % num_folds].append(subject)
    folds = [{"train": sorted(s for s in rest if s not in set(val)), "val": sorted(val)} for val in val_sets]
    return {"seed": seed, "num_folds": num_folds, "test_fraction": test_fraction, "test": sorted(test), "folds": folds}


def load_or_create_splits(
    path: str | os.PathLike[str],
    subjects: Sequence[str],
    groups: Sequence[str | None] | None = None,
    num_folds: int = 10,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, Any]:
    """Read ``splits.json`` if it exists, else make it and write it atomically.

    Raises
    ------
    ManifestError
        If an existing split does not cover exactly the manifest's subjects.
    """
    path = Path(path)
    if path.exists():
        try:
            splits = json.loads(path.read_text())
            stored_sets = [splits["test"]] + [fold[part] for fold in splits["folds"] for part in ("train", "val")]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ManifestError(
                f"{path}: not a valid splits file ({error}); restore it, or delete it to re-split "
                "(which invalidates comparisons with earlier folds)"
            ) from error
        requested = {"num_folds": num_folds, "test_fraction": test_fraction, "seed": seed}
        differing = {k: (splits.get(k), v) for k, v in requested.items() if k in splits and splits[k] != v}
        if differing:
            log.warning(
                "%s was made with %s; it is reused as it is (a split is never regenerated silently)",
                path, ", ".join(f"{k}={old} (not {new})" for k, (old, new) in differing.items()),
            )
        stored = {s for subjects_ in stored_sets for s in subjects_}
        current = set(subjects)
        if stored != current:
            added, removed = sorted(current - stored), sorted(stored - current)
            raise ManifestError(
                f"{path}: the manifest's subjects differ from the stored split "
                f"(new: {added[:5]}{'...' if len(added) > 5 else ''}, "
                f"gone: {removed[:5]}{'...' if len(removed) > 5 else ''}). A split is never regenerated "
                "silently: use a new experiment folder, or delete splits.json to re-split "
                "(which invalidates comparisons with earlier folds)."
            )
        return splits
    splits = make_splits(subjects, groups, num_folds=num_folds, test_fraction=test_fraction, seed=seed)
    atomic_write_text(path, json.dumps(splits, indent=2) + "\n")
    return splits


def select_fold(splits: dict[str, Any], fold: Fold) -> tuple[list[str], list[str]]:
    """Return ``(train, val)`` subject ids of ``fold`` (an index, or ``"all"``).

    With ``"all"`` every non-test subject trains and the validation set is empty.
    """
    if fold == "all":
        everyone = sorted({s for f in splits["folds"] for s in f["train"] + f["val"]})
        return everyone, []
    index = int(fold)
    if not 0 <= index < len(splits["folds"]):
        raise ValueError(f"fold {fold} does not exist; the split has folds 0-{len(splits['folds']) - 1} and 'all'")
    chosen = splits["folds"][index]
    return list(chosen["train"]), list(chosen["val"])
