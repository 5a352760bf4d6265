"""Kernel Inception Distance (Binkowski, Sutherland, Arbel & Gretton, "Demystifying MMD GANs",
ICLR 2018): the unbiased estimate of the squared MMD between two feature sets under the cubic
polynomial kernel k(x, y) = (x . y / d + 1)^3, averaged over random subsets.

Unlike FID, its estimate is unbiased, so it can be compared across the few hundred images of a
small test set; the std over subsets says how much the subset draw moves it. Features are the
same 2048-d pool features as FID's (``msgen.evaluation.inception_tf``).
"""

from __future__ import annotations

import numpy as np

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x_i, y_j) = (x_i . y_j / d + 1)^3 for x (m, d), y (n, d) -> (m, n), in float64."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 of x (m, d) and y (n, d), m, n >= 2: the means of k over the pairs
    i != j within each set, minus twice the mean of k over all cross pairs."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def kernel_inception_distance(
    generated: np.ndarray, real: np.ndarray, subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE, seed: int = 0,
) -> tuple[float, float]:
    """KID of feature sets (N_g, d) and (N_r, d): (mean, std) of the unbiased MMD^2 over ``subsets``
    random subsets of min(subset_size, N_g, N_r) vectors drawn without replacement from each set
    (the reference implementation's subsets; seeded, so a result repeats)."""
    x, y = np.asarray(generated, np.float64), np.asarray(real, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be (N, d) with one d, got {x.shape} and {y.shape}")
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise ValueError(f"KID needs >= 2 feature vectors in each set, got {len(x)} and {len(y)}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))
