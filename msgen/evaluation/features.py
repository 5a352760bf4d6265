"""The Inception-v3 metrics: FID and the Inception Score (METHOD.md, "Evaluation").

- FID (``frechet_distance``, ``FeatureStats``): the Frechet distance between Gaussians fitted to
  Inception-v3 pool features (2048-d, the input of the classifier) of the generated and the real
  images, accumulated as running sums so no image set is held in memory.
- Inception Score: exp(E_x KL(p(y|x) || p(y))) over 10 splits, mean and std, from an Inception-v3
  classifier (``inception_score_from_probabilities``, ``InceptionScorer``, and
  ``StreamingInceptionScore`` fed batch by batch); mask-IS is the same on masked images.

Inception-v3 comes from torchvision: IS *requires* torchvision (msgen does not re-implement the
architecture, so the weights load into exactly the network they were trained for) and a weights
file, found in this order: the ``weights`` argument, the ``MSGEN_INCEPTION_WEIGHTS`` variable, then
torchvision's file in torch's hub cache. Nothing is downloaded. Without torchvision or weights,
``load_inception`` raises ``InceptionUnavailable`` with the reason, and callers report IS as
unavailable: a score from random weights is never produced.

The scorer's classifier is a hook: ``InceptionScorer(probability_model)`` accepts any callable that
maps a float batch (N, 3, 299, 299) in [-1, 1] to class probabilities (N, K); tests use it to score
a classifier whose outputs they know.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

INCEPTION_SIZE = 299
INCEPTION_ENV = "MSGEN_INCEPTION_WEIGHTS"
# The file torchvision's IMAGENET1K_V1 Inception-v3 weights are cached as (ported from TF's).
TORCHVISION_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
IS_SPLITS = 10

ProbabilityModel = Callable[[Tensor], Tensor]
# (N, 3, 299, 299) in [-1, 1] -> (pool features (N, D), class probabilities (N, K)).
InceptionModel = Callable[[Tensor], tuple[Tensor, Tensor]]


class MetricUnavailable(RuntimeError):
    """A metric's network cannot be built here; the message says why (callers print it in the
    metric's column instead of a number)."""


InceptionUnavailable = MetricUnavailable  # the name callers and tests have used


def inception_score_from_probabilities(probabilities: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """IS of class probabilities (N, K): per split, exp(mean_x KL(p(y|x) || p(y))), p(y) the split's
    marginal; returns (mean, std) over the splits. Split k holds rows [k N // splits, (k+1) N // splits)
    (the published IS code's split). 0 log 0 is taken as 0."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (N, K), got shape {p.shape}")
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    if len(p) < splits:
        raise ValueError(f"the Inception Score over {splits} splits needs at least {splits} images, got {len(p)}")
    if (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-4):
        raise ValueError("probabilities must be non-negative rows that sum to 1")
    scores = []
    for k in range(splits):
        part = p[k * len(p) // splits : (k + 1) * len(p) // splits]
        marginal = part.mean(0, keepdims=True)
        safe = np.where(part > 0, part, 1.0)
        kl = (part * (np.log(safe) - np.log(np.where(part > 0, marginal, 1.0)))).sum(1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))



class StreamingInceptionScore:
    """The Inception Score of ``total`` images over ``splits`` splits, fed in order batch by batch.

    Split k holds rows [k N // splits, (k + 1) N // splits) as ``inception_score_from_probabilities``;
    per split it keeps sum_x p(y|x), sum_x sum_y p log p and the count, which give
    mean_x KL(p(y|x) || p(y)) = (sum p log p - sum_y (sum_x p) log p(y)) / n.
    """

    def __init__(self, total: int, splits: int = IS_SPLITS):
        self.total, self.splits, self.seen = total, splits, 0
        self.sums: list[np.ndarray | None] = [None] * splits
        self.plogp = np.zeros(splits)
        self.counts = np.zeros(splits, dtype=np.int64)

    def add(self, probabilities: np.ndarray) -> None:
        p = np.asarray(probabilities, np.float64)
        rows = np.arange(self.seen, self.seen + len(p))
        self.seen += len(p)
        # Row r is in split k iff k N // s <= r < (k + 1) N // s.
        bounds = [k * self.total // self.splits for k in range(self.splits + 1)]
        split_of = np.searchsorted(bounds, rows, side="right") - 1
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(1)
        for k in np.unique(split_of):
            chosen = split_of == k
            part = p[chosen].sum(0)
            self.sums[k] = part if self.sums[k] is None else self.sums[k] + part
            self.plogp[k] += plogp[chosen].sum()
            self.counts[k] += int(chosen.sum())

    def score(self) -> tuple[float, float]:
        if self.total < self.splits or self.seen != self.total:
            raise ValueError(f"the Inception Score over {self.splits} splits needs >= {self.splits} images "
                             f"and all {self.total} of them, got {self.seen}")
        scores = []
        for k in range(self.splits):
            marginal = self.sums[k] / self.counts[k]
            log_marginal = np.log(np.where(marginal > 0, marginal, 1.0))
            kl = (self.plogp[k] - self.sums[k] @ log_marginal) / self.counts[k]
            scores.append(np.exp(kl))
        return float(np.mean(scores)), float(np.std(scores))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) for means (D,) and covariances (D, D).

    Tr (S1 S2)^(1/2) = Tr (A S2 A)^(1/2) with A = S1^(1/2): A S2 A is symmetric positive
    semi-definite, so the trace is the sum of the square roots of its eigenvalues (symmetric
    eigensolvers only; negative round-off eigenvalues count as 0). The result is the same as
    the usual ``scipy.linalg.sqrtm`` form without its complex round-off.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"means {mu1.shape}/{mu2.shape} and covariances {sigma1.shape}/{sigma2.shape} disagree")
    values, vectors = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    product = root @ sigma2 @ root
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root)


class FeatureStats:
    """Running count, sum and sum of outer products of feature vectors (float64), for FID.

    ``add`` takes (N, D) batches; ``mean`` and ``covariance`` (sample covariance, N - 1, as
    ``np.cov``) need >= 2 vectors. Memory is O(D^2) whatever the number of images.
    """

    def __init__(self, dim: int | None = None):
        self.count = 0
        self.total: np.ndarray | None = None if dim is None else np.zeros(dim)
        self.outer: np.ndarray | None = None if dim is None else np.zeros((dim, dim))

    def add(self, features: np.ndarray | Tensor) -> None:
        x = features.detach().double().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features, np.float64)
        x = x.reshape(len(x), -1)
        if self.total is None:
            self.total, self.outer = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        self.count += len(x)
        self.total += x.sum(0)
        self.outer += x.T @ x

    def mean(self) -> np.ndarray:
        return self.total / self.count

    def covariance(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError(f"a covariance needs >= 2 feature vectors, got {self.count}")
        mu = self.mean()
        return (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)

    def save(self, path: str | Path) -> None:
        """Write the sums to ``path`` (.npz), through a temporary file renamed into place."""
        path = Path(path)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez(tmp, count=self.count, total=self.total, outer=self.outer)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        with np.load(path) as data:
            stats = cls()
            stats.count, stats.total, stats.outer = int(data["count"]), data["total"], data["outer"]
        return stats

    def frechet_distance(self, other: FeatureStats) -> float:
        return frechet_distance(self.mean(), self.covariance(), other.mean(), other.covariance())



def images_to_inception_input(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, 299, 299) in [-1, 1], resized bilinearly (no antialias)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return F.interpolate(batch, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)


def inception_weights_path(weights: str | Path | None) -> Path:
    """The Inception-v3 weights file: ``weights``, $MSGEN_INCEPTION_WEIGHTS, else torch's hub cache."""
    if weights is not None:
        path, origin = Path(weights), "the weights argument"
    elif os.environ.get(INCEPTION_ENV):
        path, origin = Path(os.environ[INCEPTION_ENV]), INCEPTION_ENV
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_INCEPTION_FILE
        if not path.is_file():
            raise InceptionUnavailable(
                f"no Inception-v3 weights: pass --inception-weights PATH or set {INCEPTION_ENV} "
                f"(torchvision's state dict {TORCHVISION_INCEPTION_FILE}); none in {path.parent}"
            )
        return path
    if not path.is_file():
        raise InceptionUnavailable(f"no Inception-v3 weights: {path} (from {origin}) does not exist")
    return path


def load_inception(weights: str | Path | None = None, device: str | torch.device = "cpu") -> ProbabilityModel:
    """torchvision's Inception-v3 as a probability model: (N, 3, 299, 299) in [-1, 1] -> (N, 1000).

    See ``load_inception_model``; raises InceptionUnavailable when it cannot be built.
    """
    model = load_inception_model(weights, device)
    return lambda x: model(x)[1]


def load_inception_model(weights: str | Path | None = None, device: str | torch.device = "cpu") -> InceptionModel:
    """torchvision's Inception-v3 with the given (or found) weights: one forward gives the pool
    features (N, 2048) for FID and the softmax probabilities (N, 1000) for IS.

    Input (N, 3, 299, 299) in [-1, 1]. The network is built with transform_input=False because the
    ported Google weights expect [-1, 1] input. Raises MetricUnavailable when torchvision cannot
    be imported or no weights file is found.
    """
    try:
        from torchvision.models import inception_v3
    except Exception as error:  # not installed, or a build that does not match torch
        raise InceptionUnavailable(
            f"no Inception-v3: torchvision cannot be imported ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); install the torchvision build of this torch"
        ) from None
    path = inception_weights_path(weights)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    network = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise InceptionUnavailable(f"no Inception-v3 weights: {path} is not torchvision's Inception-v3 state dict: {error}") from None
    network = network.eval().to(device)
    pooled: list[Tensor] = []
    # The pool features are the avgpool output (the classifier's input), taken by a hook so the
    # same forward pass also gives the class probabilities.
    network.avgpool.register_forward_hook(lambda module, inputs, output: pooled.append(output))

    @torch.no_grad()
    def features_and_probabilities(x: Tensor) -> tuple[Tensor, Tensor]:
        pooled.clear()
        logits = network(x.to(device))
        return pooled[-1].flatten(1), F.softmax(logits, dim=1)

    return features_and_probabilities


@dataclass
class InceptionScorer:
    """Inception Score of uint8 RGB images with a probability model (the documented hook).

    probability_model: (N, 3, 299, 299) float in [-1, 1] -> (N, K) probabilities; ``load_inception``
    gives the real one. Images are scaled to [-1, 1] and resized bilinearly to 299x299 (the
    published TF code's resize), ``batch_size`` at a time.
    """

    probability_model: ProbabilityModel
    batch_size: int = 50

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """images (N, H, W, 3) uint8 -> (N, K) float64 class probabilities."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        outputs = []
        for start in range(0, len(images), self.batch_size):
            batch = images_to_inception_input(images[start : start + self.batch_size])
            with torch.no_grad():
                outputs.append(self.probability_model(batch).detach().double().cpu().numpy())
        return np.concatenate(outputs)

    def score(self, images: np.ndarray, splits: int = 10) -> tuple[float, float]:
        """(mean, std) of the Inception Score of images (N, H, W, 3) uint8 over ``splits`` splits."""
        return inception_score_from_probabilities(self.probabilities(images), splits)

