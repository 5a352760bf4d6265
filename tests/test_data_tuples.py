"""Tuple sampling, identity splits and tuple CSVs."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from msgen.data.tuples import read_tuples_csv, sample_tuples, split_by_identity, write_tuples_csv


def _identities(counts: dict[str, int]) -> dict[str, list[str]]:
    return {identity: [f"{identity}_{i:02d}.png" for i in range(n)] for identity, n in counts.items()}


COUNTS = {"0007": 2, "0011": 3, "0013": 4, "0017": 6, "0019": 9, "0023": 1}


@pytest.mark.parametrize("num_sources", [1, 2, 3, 5])
def test_each_identity_gets_as_many_tuples_as_ordered_pairs(num_sources):
    tuples = sample_tuples(_identities(COUNTS), num_sources, seed=3)
    per_identity: dict[str, int] = {}
    for sources, target in tuples:
        identity = target.split("_")[0]
        per_identity[identity] = per_identity.get(identity, 0) + 1
    expected = {identity: n * (n - 1) for identity, n in COUNTS.items() if n >= num_sources + 1}
    assert per_identity == expected
    assert sorted(tuples.skipped_identities) == sorted(set(COUNTS) - set(expected))


@pytest.mark.parametrize("num_sources", [1, 2, 4])
def test_tuples_are_distinct_images_of_one_person_and_never_repeat(num_sources):
    tuples = sample_tuples(_identities(COUNTS), num_sources, seed=5)
    for sources, target in tuples:
        names = [*sources, target]
        assert len(sources) == num_sources
        assert len(set(names)) == len(names)
        assert len({name.split("_")[0] for name in names}) == 1
    keys = [(*sources, target) for sources, target in tuples]
    assert len(set(keys)) == len(keys)


def test_one_source_gives_every_ordered_pair_exactly_once():
    identities = _identities({"0001": 5, "0002": 3})
    tuples = sample_tuples(identities, 1, seed=0)
    pairs = sorted((sources[0], target) for sources, target in tuples)
    expected = sorted(pair for names in identities.values() for pair in permutations(names, 2))
    assert pairs == expected


def test_sampling_depends_only_on_the_seed():
    identities = _identities(COUNTS)
    shuffled = dict(reversed(list(identities.items())))  # insertion order must not matter
    a = sample_tuples(identities, 2, seed=11)
    assert a == sample_tuples(shuffled, 2, seed=11)
    assert a != sample_tuples(identities, 2, seed=12)


def test_max_tuples_keeps_a_prefix_of_the_same_shuffle():
    identities = _identities(COUNTS)
    full = sample_tuples(identities, 2, seed=4)
    assert sample_tuples(identities, 2, seed=4, max_tuples=17) == full[:17]
    assert sample_tuples(identities, 2, seed=4, max_tuples=10_000) == full


def test_large_identities_are_sampled_without_enumerating():
    rng = np.random.default_rng(0)
    n = int(rng.integers(60, 80))
    tuples = sample_tuples(_identities({"0001": n}), 9, seed=1)
    assert len(tuples) == n * (n - 1)
    assert len({(*s, t) for s, t in tuples}) == len(tuples)


@pytest.mark.parametrize("bad, message", [(dict(num_sources=0), "num_sources"), (dict(max_tuples=-1), "max_tuples")])
def test_bad_sampling_arguments_are_named(bad, message):
    arguments = dict(identities=_identities(COUNTS), num_sources=1, seed=0) | bad
    with pytest.raises(ValueError, match=message):
        sample_tuples(**arguments)


def test_an_identity_listing_an_image_twice_is_an_error():
    with pytest.raises(ValueError, match="0001"):
        sample_tuples({"0001": ["a.png", "b.png", "a.png"]}, 1, seed=0)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_split_is_disjoint_complete_and_deterministic(fraction):
    rng = np.random.default_rng(int(fraction * 100))
    identities = _identities({f"{i:04d}": int(rng.integers(1, 9)) for i in range(1, 97)})
    train, test = split_by_identity(identities, fraction, seed=2)
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(identities)
    assert abs(len(test) - fraction * len(identities)) <= 1
    assert all(train[k] == identities[k] for k in train) and all(test[k] == identities[k] for k in test)
    assert (train, test) == split_by_identity(identities, fraction, seed=2)
    assert test != split_by_identity(identities, fraction, seed=3)[1]


def test_split_puts_identities_with_many_images_on_both_sides():
    # 8 of 135 identities have 6 images (as in market-real): a random 20% split often leaves the
    # test side without any, the stratified one never does.
    counts = {f"{i:04d}": 6 if i < 8 else 2 for i in range(135)}
    for seed in range(20):
        train, test = split_by_identity(_identities(counts), 0.2, seed)
        assert any(len(v) == 6 for v in test.values()) and any(len(v) == 6 for v in train.values())


def test_split_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_identity(_identities(COUNTS), 1.0, seed=0)


def test_csv_round_trip_and_truncation(tmp_path):
    tuples = sample_tuples(_identities(COUNTS), 5, seed=8)
    path = tmp_path / "tuples.csv"
    write_tuples_csv(path, tuples)
    assert path.read_text().splitlines()[0] == "from_0,from_1,from_2,from_3,from_4,to"
    assert read_tuples_csv(path) == list(tuples)
    for m in (1, 2, 3):
        assert read_tuples_csv(path, num_sources=m) == [(sources[:m], target) for sources, target in tuples]


def test_writing_a_tuple_without_a_source_is_an_error(tmp_path):
    # Mixed source counts are written (persons with few images serve the small M only:
    # tests/test_data_every_person.py); a tuple without any source is not a tuple.
    with pytest.raises(ValueError, match="tuple 1 has no source"):
        write_tuples_csv(tmp_path / "t.csv", [(["a", "b"], "c"), ([], "e")])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"t\.csv:1: empty file"),
        ("from_0,from_2,to\na,b,c\n", r"t\.csv:1: expected the header"),
        ("from_0,from_1,to\na,b,c\nd,e\n", r"t\.csv:3: 2 fields, expected 3"),
        # (trailing empty sources are a tuple of fewer sources: tests/test_data_every_person.py)
        ("from_0,from_1,to\na,b,c\n,e,f\n", r"t\.csv:3: empty image name"),
        ("from_0,from_1,to\na,b,c\nd,e,\n", r"t\.csv:3: empty image name"),
        ("from_0,from_1,to\na,b,a\n", r"t\.csv:2: the images of a tuple must be distinct"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_tuples_csv(path)


@pytest.mark.parametrize("num_sources", [0, 3])
def test_reading_more_sources_than_stored_is_an_error(tmp_path, num_sources):
    path = tmp_path / "t.csv"
    path.write_text("from_0,from_1,to\na,b,c\n")
    with pytest.raises(ValueError, match=r"num_sources must be in \[1, 2\]"):
        read_tuples_csv(path, num_sources=num_sources)
