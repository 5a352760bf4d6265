"""Uncertainty over test tuples: the percentile bootstrap interval of a mean, and the paired
interval of a difference of two methods' scores over the same tuples.

Test tuples that share a person are not independent draws (a person's photos, permuted into
several tuples, are alike in what makes them easy or hard), so both intervals resample PERSONS
when given each tuple's person: a cluster bootstrap that draws persons with replacement, keeps
all the drawn persons' tuples, and takes the mean over the drawn tuples. Resampling tuples as if
independent would give an interval too narrow by up to the square root of the tuples per person.
Without ``persons`` every value is its own cluster: the plain bootstrap, right for values that
share nothing (independent draws).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
_BOOTSTRAP_CHUNK = 100


def count_persons(persons: Sequence[str] | np.ndarray) -> int:
    """The number of distinct persons in a per-tuple list of persons."""
    return len(set(np.asarray(persons).ravel().tolist()))


def bootstrap_interval(values: np.ndarray, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0, *, persons: Sequence[str] | np.ndarray | None = None) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``values`` (N,): ``resamples`` times draw
    the persons with replacement (as many draws as there are persons), take the mean over all the
    drawn persons' values; return the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of
    those means.

    persons: (N,) the person of each value; None: each value its own person (independent values).
    Pass differences a - b of paired scores for a paired interval (``paired_difference``).
    """
    values = np.asarray(values, np.float64).ravel()
    if persons is None:
        codes = np.arange(len(values))
    else:
        persons = np.asarray(persons).ravel()
        if persons.shape != values.shape:
            raise ValueError(f"persons must name the person of each value: got {persons.shape[0]} persons "
                             f"for {values.shape[0]} values")
        codes = np.unique(persons, return_inverse=True)[1].ravel()
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    sums = np.bincount(codes, weights=values, minlength=int(codes.max(initial=-1)) + 1)
    sizes = np.bincount(codes, minlength=len(sums))
    if len(sums) < 2:
        what = "values" if persons is None else "persons"
        raise ValueError(f"a bootstrap interval needs >= 2 {what}, got {len(sums)}")
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, resamples, _BOOTSTRAP_CHUNK):  # chunks bound memory at 12,000 tuples
        count = min(_BOOTSTRAP_CHUNK, resamples - start)
        drawn = rng.integers(0, len(sums), (count, len(sums)))
        means.append(sums[drawn].sum(1) / sizes[drawn].sum(1))
    means = np.concatenate(means)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, *,
                      persons: Sequence[str] | np.ndarray | None = None) -> dict[str, float]:
    """Mean of a - b over the same tuples and its paired bootstrap interval:
    {"mean", "low", "high", "n"} (n: tuples), with "persons" (their count) when ``persons`` (N,)
    names each tuple's person. The tuples (by person, when given) are resampled together, so
    what the two share (an easy tuple is easy for both) cancels."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired scores must be over the same tuples, got {a.shape} and {b.shape}")
    low, high = bootstrap_interval(a - b, confidence, resamples, seed, persons=persons)
    result = {"mean": float((a - b).mean()), "low": low, "high": high, "n": int(len(a))}
    if persons is not None:
        result["persons"] = count_persons(persons)
    return result
