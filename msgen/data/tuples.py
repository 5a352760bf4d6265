"""Tuples of M sources + 1 target of one person: sampling, splitting by identity, CSV files.

METHOD.md, "Data conventions": all M + 1 images of a tuple are distinct images of one person;
tuples are sampled at random with a seed, as many per person as it has ordered pairs, n * (n - 1)
for n images (enumerating all M + 1 permutations is infeasible); test persons are disjoint from
training persons; evaluating at several M truncates the same tuples to their first M sources.

Every person serves every M it can: with ``min_sources`` below ``num_sources`` a person of n
images gets tuples of min(n - 1, num_sources) sources, so a person with 2 images still serves
M = 1 (real sets have many such persons: 85 of market-real's 135). Truncating a tuple to its first
m sources then serves any m up to its own count.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import permutations
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

Tuple = tuple[list[str], str]  # (M source names, target name)


class SampledTuples(list):
    """The sampled tuples (a list of ``(sources, target)``) and the identities that were skipped.

    ``skipped_identities`` lists the identities with too few images (fewer than min_sources + 1),
    which give no tuple.
    """

    def __init__(self, tuples: list[Tuple], skipped_identities: list[str]):
        super().__init__(tuples)
        self.skipped_identities = skipped_identities


def _distinct_orderings(n: int, k: int, count: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """``count`` distinct ordered k-subsets of range(n) (count <= n! / (n - k)!), in random order."""
    possible = math.perm(n, k)
    if possible <= 2 * count:  # few orderings exist: enumerate them and choose
        every = list(permutations(range(n), k))
        return [every[i] for i in rng.choice(possible, size=count, replace=False)]
    chosen: dict[tuple[int, ...], None] = {}  # insertion-ordered set
    while len(chosen) < count:  # at most half the draws repeat, so this ends quickly
        draws = rng.random((2 * (count - len(chosen)), n)).argsort(axis=1)[:, :k]
        for row in map(tuple, draws.tolist()):
            chosen.setdefault(row)
            if len(chosen) == count:
                break
    return list(chosen)


def sample_tuples(
    identities: Mapping[str, Sequence[str]], num_sources: int, seed: int, max_tuples: int | None = None,
    min_sources: int | None = None,
) -> SampledTuples:
    """Sample ``(sources, target)`` tuples of up to M = ``num_sources`` sources, n * (n - 1) per identity.

    identities: {identity: its image names}. Every tuple holds distinct images of one identity and
    no tuple repeats. An identity of n images gets tuples of min(n - 1, num_sources) sources when
    n - 1 >= ``min_sources`` (default ``num_sources``: every tuple has exactly M sources); the
    others are skipped and listed in the result's ``skipped_identities``. The tuples are shuffled;
    ``max_tuples`` keeps the first ones. The result depends only on the arguments (identities are
    visited in sorted order); with every identity holding num_sources + 1 images or more it does
    not depend on ``min_sources``.
    """
    if num_sources < 1:
        raise ValueError(f"num_sources must be >= 1, got {num_sources}")
    min_sources = num_sources if min_sources is None else min_sources
    if not 1 <= min_sources <= num_sources:
        raise ValueError(f"min_sources must be in [1, num_sources={num_sources}], got {min_sources}")
    if max_tuples is not None and max_tuples < 0:
        raise ValueError(f"max_tuples must be >= 0 or None, got {max_tuples}")
    rng = np.random.default_rng(seed)
    tuples: list[Tuple] = []
    skipped = []
    for identity in sorted(identities):
        names = sorted(identities[identity])
        if len(set(names)) != len(names):
            raise ValueError(f"identity {identity!r} lists an image twice")
        n = len(names)
        if n < min_sources + 1:
            skipped.append(identity)
            continue
        k = min(n - 1, num_sources)
        for order in _distinct_orderings(n, k + 1, n * (n - 1), rng):
            tuples.append(([names[i] for i in order[:-1]], names[order[-1]]))
    order = rng.permutation(len(tuples))
    if max_tuples is not None:
        order = order[:max_tuples]
    if skipped:
        logger.info(
            "sample_tuples: skipped %d of %d identities with fewer than %d images",
            len(skipped), len(identities), min_sources + 1,
        )
    return SampledTuples([tuples[i] for i in order], skipped)


def split_by_identity(
    identities: Mapping[str, Sequence[str]], test_fraction: float, seed: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Split identities into disjoint (train, test) dicts, test_fraction * count (rounded either way) for test.

    Stratified by image count: identities are ranked by their number of images (ties in random
    order) and every 1 / test_fraction-th goes to test, so both sides get identities with many
    images, the only ones that can form tuples with many sources.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    keys = sorted(identities)
    rng = np.random.default_rng(seed)
    tie_break = rng.permutation(len(keys))
    ranked = sorted(range(len(keys)), key=lambda i: (-len(identities[keys[i]]), tie_break[i]))
    offset = rng.uniform()  # where in each stride of 1 / test_fraction ranks the test pick falls
    train, test = {}, {}
    for rank, i in enumerate(ranked):
        to_test = math.floor((rank + 1) * test_fraction + offset) > math.floor(rank * test_fraction + offset)
        (test if to_test else train)[keys[i]] = list(identities[keys[i]])
    return train, test


def write_tuples_csv(path: str | Path, tuples: Sequence[Tuple]) -> None:
    """Write tuples as CSV with the header ``from_0,...,from_{M-1},to``, M the largest number of
    sources; a tuple of fewer sources leaves its last source fields empty (a person with few
    images serves the small M only)."""
    if not tuples:
        raise ValueError("tuples is empty: nothing to write")
    num_sources = max(len(sources) for sources, _ in tuples)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([f"from_{i}" for i in range(num_sources)] + ["to"])
        for index, (sources, target) in enumerate(tuples):
            if not sources:
                raise ValueError(f"tuple {index} has no source")
            writer.writerow([*sources, *[""] * (num_sources - len(sources)), target])


def read_tuples_csv(path: str | Path, num_sources: int | None = None) -> list[Tuple]:
    """Read a tuple CSV; ``num_sources`` keeps each tuple's first M sources (None: all of them; a
    tuple of fewer sources, its last source fields empty, keeps those it has).

    Raises ValueError naming the file and line of a bad header, a row with the wrong number of
    fields, an empty name (other than trailing sources) or a tuple whose images are not distinct.
    """
    path = Path(path)
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        raise ValueError(f"{path}:1: empty file, expected the header from_0,...,from_{{M-1}},to")
    header = [field.strip() for field in rows[0]]
    available = len(header) - 1
    if available < 1 or header != [f"from_{i}" for i in range(available)] + ["to"]:
        raise ValueError(f"{path}:1: expected the header from_0,...,from_{{M-1}},to, found {','.join(header)!r}")
    if num_sources is None:
        num_sources = available
    if not 1 <= num_sources <= available:
        raise ValueError(f"num_sources must be in [1, {available}] for {path} (it has {available} sources), "
                         f"got {num_sources}")
    tuples = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        names = [field.strip() for field in row]
        if len(names) != available + 1:
            raise ValueError(f"{path}:{line}: {len(names)} fields, expected {available + 1}")
        sources = names[:-1]
        while sources and not sources[-1]:
            sources.pop()
        names = [*sources, names[-1]]
        if not sources or not all(names):
            raise ValueError(f"{path}:{line}: empty image name")
        if len(set(names)) != len(names):
            raise ValueError(f"{path}:{line}: the images of a tuple must be distinct, got {names}")
        tuples.append((sources[:num_sources], names[-1]))
    return tuples


def persons_serving(identities: Mapping[str, Sequence[str]], num_sources: Iterable[int]) -> dict[int, tuple[int, int]]:
    """{M: (persons, images)}: the identities with M + 1 images or more, which can serve M, and
    their images, for each M of ``num_sources``."""
    counts = [len(names) for names in identities.values()]
    return {m: (sum(1 for n in counts if n >= m + 1), sum(n for n in counts if n >= m + 1))
            for m in sorted(set(num_sources))}


def tuple_persons(tuples: Sequence[Tuple], identity_fn: Callable[[str], str], num_sources: Iterable[int]) -> dict[int, int]:
    """{M: the number of persons among the tuples of M sources or more}: how many persons the
    scores at M rest on (a tuple's person is its target's)."""
    return {m: len({identity_fn(target) for sources, target in tuples if len(sources) >= m})
            for m in sorted(set(num_sources))}
