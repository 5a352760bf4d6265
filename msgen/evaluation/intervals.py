"""Uncertainty over test tuples: the percentile bootstrap interval of a mean, and the paired
interval of a difference of two methods' scores over the same tuples."""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
_BOOTSTRAP_CHUNK = 100


def bootstrap_interval(values: np.ndarray, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``values`` (N,): resample N tuples with
    replacement ``resamples`` times, take the (1 - confidence) / 2 and (1 + confidence) / 2
    quantiles of the resampled means. Pass differences a - b of paired scores for a paired
    interval (``paired_difference``)."""
    values = np.asarray(values, np.float64).ravel()
    if len(values) < 2:
        raise ValueError(f"a bootstrap interval needs >= 2 values, got {len(values)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, resamples, _BOOTSTRAP_CHUNK):  # chunks bound memory at 12,000 tuples
        count = min(_BOOTSTRAP_CHUNK, resamples - start)
        means.append(values[rng.integers(0, len(values), (count, len(values)))].mean(1))
    means = np.concatenate(means)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, float]:
    """Mean of a - b over the same tuples and its paired bootstrap interval:
    {"mean", "low", "high", "n"}. The tuples are resampled together, so what the two share
    (an easy tuple is easy for both) cancels."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired scores must be over the same tuples, got {a.shape} and {b.shape}")
    low, high = bootstrap_interval(a - b, confidence, resamples, seed)
    return {"mean": float((a - b).mean()), "low": low, "high": high, "n": int(len(a))}
