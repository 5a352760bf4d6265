"""K-fold cross-validation over persons (prepare --folds K --fold k) and --max-train-persons."""

from __future__ import annotations

import pytest

from msgen.data import prepare
from msgen.data.folder import market_identity
from msgen.data.split import SPLIT_FILE, fold_by_identity, read_split
from msgen.data.synthetic import generate_synthetic
from msgen.errors import UsageError


def _identities(counts: list[int]) -> dict[str, list[str]]:
    return {f"{p:04d}": [f"{p:04d}_c1s1_{i:06d}_00.jpg" for i in range(n)] for p, n in enumerate(counts)}


def test_every_person_is_tested_in_exactly_one_fold_stratified_by_image_count() -> None:
    counts = [2] * 23 + [3] * 9 + [4] * 5 + [6] * 2  # 39 persons, most with 2 images as in market-real
    identities = _identities(counts)
    for seed in (0, 7):
        tests = [fold_by_identity(identities, 5, k, seed)[1] for k in range(5)]
        tested = [p for t in tests for p in t]
        assert sorted(tested) == sorted(identities)  # each person exactly once
        for k, test in enumerate(tests):
            rest = fold_by_identity(identities, 5, k, seed)[0]
            assert not set(rest) & set(test) and set(rest) | set(test) == set(identities)
        sizes = [len(t) for t in tests]
        assert max(sizes) - min(sizes) <= 1
        # Stratified: the persons that can serve M = 2 (3+ images) spread over the folds.
        many = [sum(len(identities[p]) >= 3 for p in t) for t in tests]
        assert max(many) - min(many) <= 1
        assert len({tuple(sorted(t)) for t in tests}) == 5  # the folds differ
    assert fold_by_identity(identities, 5, 2, 0) == fold_by_identity(identities, 5, 2, 0)
    assert fold_by_identity(identities, 5, 2, 0)[1] != fold_by_identity(identities, 5, 2, 7)[1]


def test_bad_folds_are_usage_errors_naming_the_option() -> None:
    identities = _identities([2] * 4)
    with pytest.raises(UsageError, match="--fold must be in 0..2"):
        fold_by_identity(identities, 3, 3, 0)
    with pytest.raises(UsageError, match="--folds must be >= 2"):
        fold_by_identity(identities, 1, 0, 0)
    with pytest.raises(UsageError, match="fewer than the folds"):
        fold_by_identity(identities, 5, 0, 0)


def test_prepare_folds_hold_each_person_out_once_and_never_train_on_it(tmp_path) -> None:
    data = generate_synthetic(tmp_path / "data", identities=9, images_per_identity=3, size=(64, 32), seed=3)
    tested: list[str] = []
    for k in range(3):
        out = tmp_path / f"fold{k}"
        summary = prepare.main(["--dataset", "market", "--out", str(out), "--images", str(data / "images"),
                                "--annotations", str(data / "annotation.csv"), "--num-sources", "2",
                                "--folds", "3", "--fold", str(k), "--seed", "4"])
        assert summary == 0
        split = read_split(out / SPLIT_FILE)
        assert len(split.test_persons) == 3
        assert not set(split.test_persons) & (set(split.train_persons) | set(split.validation_persons))
        assert {market_identity(n) for s, t in split.test_tuples for n in (*s, t)} == set(split.test_persons)
        tested += split.test_persons
    assert sorted(tested) == sorted({market_identity(p.name) for p in (data / "images").iterdir()})
    assert prepare.main(["--dataset", "market", "--out", str(tmp_path / "bad"), "--images", str(data / "images"),
                         "--annotations", str(data / "annotation.csv"), "--folds", "3", "--fold", "3"]) == 2
    assert not (tmp_path / "bad").exists()


def test_max_train_persons_keeps_nested_subsets_and_the_test_persons(tmp_path) -> None:
    data = generate_synthetic(tmp_path / "data", identities=10, images_per_identity=3, size=(64, 32), seed=3)
    splits = {}
    for n in (2, 4, None):
        out = tmp_path / f"n{n}"
        prepare.prepare("market", out, images=data / "images", annotations=data / "annotation.csv", num_sources=2,
                        seed=1, folds=(5, 0), max_train_persons=n)
        splits[n] = read_split(out / SPLIT_FILE)
    assert len(splits[2].train_persons) == 2 and len(splits[4].train_persons) == 4
    assert set(splits[2].train_persons) < set(splits[4].train_persons) < set(splits[None].train_persons)
    assert splits[2].test_tuples == splits[None].test_tuples
    assert splits[2].validation_persons == splits[None].validation_persons
