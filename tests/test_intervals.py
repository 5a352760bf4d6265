"""Intervals resample persons: a person's tuples are not independent draws."""

from __future__ import annotations

import numpy as np
import pytest

from msgen.evaluation import bootstrap_interval, count_persons, paired_difference


def _clustered(persons: int, per_person: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(per-person values (persons,), per-tuple values, per-tuple person names) where every
    tuple of a person has that person's value exactly."""
    person_values = np.random.default_rng(seed).normal(size=persons)
    names = np.array([f"{p:04d}" for p in range(persons)])  # sorted as numbered
    return person_values, np.repeat(person_values, per_person), np.repeat(names, per_person)


def test_identical_tuples_of_a_person_give_the_person_level_interval() -> None:
    person_values, values, persons = _clustered(persons=20, per_person=10, seed=4)
    by_person = bootstrap_interval(values, persons=persons, seed=7)
    # Equal cluster sizes: each resample's tuple mean is its persons' mean, drawn as the 20 values alone.
    assert by_person == pytest.approx(bootstrap_interval(person_values, seed=7), abs=1e-12)
    low, high = bootstrap_interval(values, seed=7)  # as if the 200 tuples were independent
    assert (high - low) < 0.5 * (by_person[1] - by_person[0])  # about 1 / sqrt(10) as wide


def test_unequal_persons_weigh_by_their_tuples() -> None:
    values = np.array([1.0, 1.0, 1.0, 0.0])  # person a: three tuples, person b: one
    persons = ["a", "a", "a", "b"]
    low, high = bootstrap_interval(values, persons=persons, resamples=400, seed=0)
    # Resamples are {a, a}: 1, {a, b}: 0.75, {b, b}: 0; each about a quarter, half or quarter.
    assert (low, high) == (0.0, 1.0)
    assert paired_difference(values, np.zeros(4), persons=persons)["persons"] == 2


def test_persons_must_match_the_values_and_be_two_or_more() -> None:
    with pytest.raises(ValueError, match="persons must name the person of each value"):
        bootstrap_interval(np.zeros(3), persons=["a", "b"])
    with pytest.raises(ValueError, match="needs >= 2 persons, got 1"):
        bootstrap_interval(np.arange(5.0), persons=["a"] * 5)
    assert count_persons(["a", "b", "a"]) == 2
