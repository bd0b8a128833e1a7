"""Held-out test set and k-fold cross-validation splits (DESIGN.md §5).

``splits.json`` is made once per experiment from the manifest and a seed, and
reused by every later run: a run never re-splits. If the manifest's subjects no
longer match the stored split, that is an error, never a silent regeneration.
:class:`Splits` owns the file: every reader (data module, ``cv``, ``thresholds``)
goes through :meth:`Splits.read`, every writer through :meth:`Splits.write`.

Examples
--------
>>> splits = make_splits([f"s{i}" for i in range(20)], num_folds=4, test_fraction=0.15, seed=0)
>>> len(splits.test), len(splits.folds), len(splits.folds[0].val)
(3, 4, 5)
>>> train, val = splits.select(0)
>>> len(train), len(val)
(12, 5)
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from femurseg.atomic import atomic_write_json
from femurseg.errors import ManifestError

__all__ = ["make_splits", "load_or_create_splits", "select_fold", "Fold", "FoldSplit", "Splits"]

Fold = int | str

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldSplit:
    """The training and validation subject ids of one cross-validation fold."""

    train: tuple[str, ...]
    val: tuple[str, ...]


@dataclass(frozen=True)
class Splits:
    """The contents of ``splits.json``: held-out test subjects and the folds over the rest.

    Attributes
    ----------
    test
        Held-out test subject ids (never trained or validated on).
    folds
        One :class:`FoldSplit` per fold.
    seed, num_folds, test_fraction
        How the split was made (``None`` when an older file does not say).
    """

    test: tuple[str, ...]
    folds: tuple[FoldSplit, ...]
    seed: int | None = None
    num_folds: int | None = None
    test_fraction: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Splits:
        """Build from the JSON layout ``{"seed", "test": [...], "folds": [{"train", "val"}, ...]}``.

        Raises
        ------
        KeyError, TypeError, ValueError
            If ``test`` or ``folds`` is missing or not lists of subject ids.
        """
        def ids(value: Any) -> tuple[str, ...]:
            if isinstance(value, (str, bytes)) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"expected a list of subject ids, got {value!r}")
            return tuple(value)

        folds = tuple(FoldSplit(ids(fold["train"]), ids(fold["val"])) for fold in data["folds"])
        return cls(test=ids(data["test"]), folds=folds, seed=data.get("seed"), num_folds=data.get("num_folds"),
                   test_fraction=data.get("test_fraction"))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Splits:
        """Read a ``splits.json``.

        Raises
        ------
        ManifestError
            If the file cannot be read or is not a valid splits file (the message says what to do).
        """
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise ManifestError(
                f"{path}: not a valid splits file ({error}); restore it, or delete it to re-split "
                "(which invalidates comparisons with earlier folds)"
            ) from error

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of ``splits.json`` (settings first, then ``test`` and ``folds``)."""
        settings = {"seed": self.seed, "num_folds": self.num_folds, "test_fraction": self.test_fraction}
        return {**{k: v for k, v in settings.items() if v is not None}, "test": list(self.test),
                "folds": [{"train": list(f.train), "val": list(f.val)} for f in self.folds]}

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write ``splits.json`` atomically (indented JSON)."""
        atomic_write_json(path, self.to_dict(), allow_nan=True)

    @property
    def subjects(self) -> set[str]:
        """Every subject id in the split: test, training and validation."""
        return set(self.test) | {s for fold in self.folds for s in fold.train + fold.val}

    def select(self, fold: Fold) -> tuple[list[str], list[str]]:
        """``(train, val)`` subject ids of ``fold`` (an index, or ``"all"``).

        With ``"all"`` every non-test subject trains and the validation set is empty.

        Raises
        ------
        ValueError
            If the fold does not exist.
        """
        if fold == "all":
            return sorted({s for f in self.folds for s in f.train + f.val}), []
        index = int(fold)
        if not 0 <= index < len(self.folds):
            raise ValueError(f"fold {fold} does not exist; the split has folds 0-{len(self.folds) - 1} and 'all'")
        return list(self.folds[index].train), list(self.folds[index].val)


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
) -> Splits:
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
    Splits
        ``test`` and ``folds`` (``{"seed", "test": [...], "folds": [{"train": [...], "val": [...]}, ...]}`` on disk).

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
    folds = tuple(FoldSplit(train=tuple(sorted(s for s in rest if s not in set(val))), val=tuple(sorted(val)))
                  for val in val_sets)
    return Splits(test=tuple(sorted(test)), folds=folds, seed=seed, num_folds=num_folds, test_fraction=test_fraction)


def load_or_create_splits(
    path: str | os.PathLike[str],
    subjects: Sequence[str],
    groups: Sequence[str | None] | None = None,
    num_folds: int = 10,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> Splits:
    """Read ``splits.json`` if it exists, else make it and write it atomically.

    Raises
    ------
    ManifestError
        If an existing split is not a valid splits file or does not cover exactly the
        manifest's subjects.
    """
    path = Path(path)
    if path.exists():
        splits = Splits.read(path)
        requested = {"num_folds": num_folds, "test_fraction": test_fraction, "seed": seed}
        stored_settings = {"num_folds": splits.num_folds, "test_fraction": splits.test_fraction, "seed": splits.seed}
        differing = {k: (stored_settings[k], v) for k, v in requested.items()
                     if stored_settings[k] is not None and stored_settings[k] != v}
        if differing:
            log.warning(
                "%s was made with %s; it is reused as it is (a split is never regenerated silently)",
                path, ", ".join(f"{k}={old} (not {new})" for k, (old, new) in differing.items()),
            )
        stored = splits.subjects
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
    splits.write(path)
    return splits


def select_fold(splits: Splits, fold: Fold) -> tuple[list[str], list[str]]:
    """Return ``(train, val)`` subject ids of ``fold`` (an index, or ``"all"``): :meth:`Splits.select`."""
    return splits.select(fold)
