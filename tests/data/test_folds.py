import json

import pytest

from femurseg.data.folds import FoldSplit, Splits, load_or_create_splits, make_splits, select_fold
from femurseg.errors import ManifestError

SUBJECTS = [f"s{i:03d}" for i in range(100)]


def test_reference_study_proportions_disjoint_and_covering():
    splits = make_splits(SUBJECTS, num_folds=10, test_fraction=0.15, seed=0)
    test = set(splits.test)
    assert len(test) == 15
    vals = [set(f.val) for f in splits.folds]
    assert all(len(v) in (8, 9) for v in vals)
    assert set().union(*vals) == set(SUBJECTS) - test
    assert sum(len(v) for v in vals) == 85  # disjoint
    for fold in splits.folds:
        assert not set(fold.train) & set(fold.val)
        assert not set(fold.train) & test
        assert set(fold.train) | set(fold.val) == set(SUBJECTS) - test


def test_deterministic_and_seed_dependent():
    assert make_splits(SUBJECTS, seed=3) == make_splits(SUBJECTS, seed=3)
    assert make_splits(SUBJECTS, seed=3).test != make_splits(SUBJECTS, seed=4).test


def test_groups_are_stratified():
    groups = ["osteoporotic" if i < 30 else "normal" for i in range(100)]
    splits = make_splits(SUBJECTS, groups, num_folds=5, test_fraction=0.2, seed=1)
    group_of = dict(zip(SUBJECTS, groups))
    n_op_test = sum(group_of[s] == "osteoporotic" for s in splits.test)
    assert n_op_test == 6  # 30 % of 20
    for fold in splits.folds:
        n_op = sum(group_of[s] == "osteoporotic" for s in fold.val)
        assert n_op in (4, 5)  # 30 % of 16


def test_split_file_is_reused_never_regenerated(tmp_path):
    path = tmp_path / "splits.json"
    first = load_or_create_splits(path, SUBJECTS[:20], num_folds=4, seed=0)
    again = load_or_create_splits(path, SUBJECTS[:20], num_folds=3, seed=99)  # other settings: file wins
    assert again == first == Splits.read(path)
    assert json.loads(path.read_text()) == {  # the layout of DESIGN.md §5
        "seed": 0, "num_folds": 4, "test_fraction": 0.15, "test": list(first.test),
        "folds": [{"train": list(f.train), "val": list(f.val)} for f in first.folds]}
    assert path.read_text() == json.dumps(first.to_dict(), indent=2) + "\n"


def test_changed_manifest_under_existing_split_is_an_error(tmp_path):
    path = tmp_path / "splits.json"
    load_or_create_splits(path, SUBJECTS[:20], num_folds=4)
    with pytest.raises(ManifestError, match="never regenerated silently") as error:
        load_or_create_splits(path, SUBJECTS[:19] + ["new_one"], num_folds=4)
    assert "new_one" in str(error.value) and "s019" in str(error.value)


def test_select_fold_and_all():
    splits = make_splits(SUBJECTS[:20], num_folds=4, test_fraction=0.15, seed=0)
    train, val = select_fold(splits, 1)
    assert val == list(splits.folds[1].val) and train == list(splits.folds[1].train)
    everyone, none = select_fold(splits, "all")
    assert none == [] and len(everyone) == 17
    with pytest.raises(ValueError, match="folds 0-3"):
        select_fold(splits, 4)


def test_reuse_with_other_settings_warns(tmp_path, caplog):
    path = tmp_path / "splits.json"
    load_or_create_splits(path, SUBJECTS[:20], num_folds=4, seed=0)
    with caplog.at_level("WARNING", logger="femurseg.data.folds"):
        load_or_create_splits(path, SUBJECTS[:20], num_folds=5, seed=0)
    assert "num_folds=4 (not 5)" in caplog.text


def test_corrupt_split_file_is_an_error_that_says_what_to_do(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text('{"test": []')
    with pytest.raises(ManifestError, match="not a valid splits file.*delete it to re-split"):
        load_or_create_splits(path, SUBJECTS[:20], num_folds=4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_non_test_subject_validates_exactly_once_with_groups(seed):
    groups = [("a", "b", "c")[i % 3] if i < 60 else "d" for i in range(100)]
    splits = make_splits(SUBJECTS, groups, num_folds=7, test_fraction=0.1, seed=seed)
    vals = [s for fold in splits.folds for s in fold.val]
    assert sorted(vals) == sorted(set(SUBJECTS) - set(splits.test)) and len(vals) == len(set(vals))
    group_of = dict(zip(SUBJECTS, groups))
    assert sum(group_of[s] == "d" for s in splits.test) == 4  # 40 % of 10
    for fold in splits.folds:
        share = sum(group_of[s] == "d" for s in fold.val)
        assert share in (5, 6)  # 36 "d" over 7 folds


def test_splits_read_older_files_and_refuse_invalid_ones(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"seed": 0, "test": ["t"], "folds": [{"train": ["a"], "val": ["b"]}]}))
    splits = Splits.read(path)  # DESIGN.md's minimal layout, without num_folds/test_fraction
    assert splits == Splits(test=("t",), folds=(FoldSplit(train=("a",), val=("b",)),), seed=0)
    assert splits.subjects == {"t", "a", "b"} and splits.select("all") == (["a", "b"], [])
    path.write_text(json.dumps({"test": "t", "folds": []}))
    with pytest.raises(ManifestError, match="not a valid splits file"):
        Splits.read(path)
