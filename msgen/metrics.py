"""The evaluation metrics of Ma et al.'s protocol (METHOD.md, "Evaluation").

- SSIM_256 (``ssim``): scikit-image's ``structural_similarity`` on uint8 RGB images (H, W, 3),
  Gaussian weights with sigma 1.5, population covariance, the mean over the three channels. The
  data range is 255 by default; ``data_range="minmax"`` is GFLA's ``ssim_256`` (max - min of the
  generated image). Every result says which one it used.
- SSIM in GFLA's form (``ssim_gfla``): both images as float32 in [0, 1], data range 1, a uniform
  51x51 window, sample covariance (GFLA's script/metrics.py ``compare_ssim(..., data_range=1,
  win_size=51, multichannel=True)``); it needs images of at least 51x51.
- FID (``frechet_distance``, ``FeatureStats``): the Frechet distance between Gaussians fitted to
  Inception-v3 pool features (2048-d, the input of the classifier) of the generated and the real
  images, accumulated as running sums so no image set is held in memory.
- LPIPS (``LPIPS``, ``load_lpips``): version 0.1 with AlexNet: the ``lpips`` package's linear
  heads (weights/v0.1/alex.pth, shipped in its wheel) on torchvision's AlexNet features.
- mask-SSIM: both images multiplied by the TARGET's person mask (``msgen.pose.person_mask``), then
  SSIM.
- Inception Score: exp(E_x KL(p(y|x) || p(y))) over 10 splits, mean and std, from an Inception-v3
  classifier; mask-IS is the same on masked images.

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
from skimage.metrics import structural_similarity
from torch import Tensor, nn

from msgen.pose.person_mask import person_mask

DATA_RANGES = ("255", "minmax")
INCEPTION_SIZE = 299
INCEPTION_ENV = "MSGEN_INCEPTION_WEIGHTS"
# The file torchvision's IMAGENET1K_V1 Inception-v3 weights are cached as (ported from TF's).
TORCHVISION_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"

GFLA_SSIM_WINDOW = 51
ProbabilityModel = Callable[[Tensor], Tensor]
# (N, 3, 299, 299) in [-1, 1] -> (pool features (N, D), class probabilities (N, K)).
InceptionModel = Callable[[Tensor], tuple[Tensor, Tensor]]


def to_uint8(images: Tensor) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 RGB: (..., 3, H, W) -> (..., H, W, 3), rounded, clipped."""
    if images.dim() < 3 or images.shape[-3] != 3:
        raise ValueError(f"images must be (..., 3, H, W), got {tuple(images.shape)}")
    pixels = ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.movedim(-3, -1).numpy()


def _check_rgb(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must be a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    return image


def _resolve_range(generated: np.ndarray, data_range: str) -> float:
    if data_range == "255":
        return 255.0
    if data_range == "minmax":
        # A constant image has range 0, which leaves SSIM undefined (0 / 0); 1 is the smallest
        # range a non-constant uint8 image can have.
        return float(max(int(generated.max()) - int(generated.min()), 1))
    raise ValueError(f"data_range must be one of {DATA_RANGES}, got {data_range!r}")


def ssim(generated: np.ndarray, target: np.ndarray, data_range: str = "255") -> float:
    """SSIM of two uint8 RGB images (H, W, 3), H and W >= 11 (the Gaussian window).

    data_range: "255" (correct for uint8) or "minmax" (max - min of ``generated``, as the published
    evaluation code did). Symmetric in the two images for "255".
    """
    generated = _check_rgb(generated, "generated")
    target = _check_rgb(target, "target")
    if generated.shape != target.shape:
        raise ValueError(f"generated {generated.shape} and target {target.shape} differ in size")
    if min(generated.shape[:2]) < 11:
        raise ValueError(f"SSIM's 11x11 Gaussian window needs images of at least 11x11, got {generated.shape[:2]}")
    return float(
        structural_similarity(
            target,
            generated,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=-1,
            data_range=_resolve_range(generated, data_range),
        )
    )


def ssim_gfla(generated: np.ndarray, target: np.ndarray) -> float:
    """SSIM as GFLA's script/metrics.py computes its "SSIM" column: uint8 RGB (H, W, 3) images as
    float32 / 255, data range 1, uniform 51x51 window, sample covariance, mean over channels.

    Raises ValueError for images smaller than 51x51 (the window does not fit).
    """
    generated = _check_rgb(generated, "generated")
    target = _check_rgb(target, "target")
    if generated.shape != target.shape:
        raise ValueError(f"generated {generated.shape} and target {target.shape} differ in size")
    if min(generated.shape[:2]) < GFLA_SSIM_WINDOW:
        raise ValueError(f"GFLA's SSIM uses a {GFLA_SSIM_WINDOW}x{GFLA_SSIM_WINDOW} window; the images are "
                         f"{generated.shape[0]}x{generated.shape[1]}")
    return float(structural_similarity(target.astype(np.float32) / 255.0, generated.astype(np.float32) / 255.0,
                                       win_size=GFLA_SSIM_WINDOW, data_range=1.0, channel_axis=-1))


def apply_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the pixels outside ``mask``: image (H, W, 3) uint8, mask (H, W) bool -> (H, W, 3) uint8."""
    image = _check_rgb(image, "image")
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    return image * mask.astype(bool)[..., None].astype(np.uint8)


def mask_ssim(
    generated: np.ndarray, target: np.ndarray, target_keypoints: np.ndarray, data_range: str = "255"
) -> float:
    """SSIM of both images multiplied by the person mask of ``target_keypoints`` (18, 2) (y, x).

    For "minmax" the range is taken from the masked generated image, as the published code did.
    """
    mask = person_mask(target_keypoints, _check_rgb(target, "target").shape[:2])
    return ssim(apply_mask(generated, mask), apply_mask(target, mask), data_range)


def inception_score_from_probabilities(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
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


class MetricUnavailable(RuntimeError):
    """A metric's network cannot be built here; the message says why (callers print it in the
    metric's column instead of a number)."""


InceptionUnavailable = MetricUnavailable  # the name callers and tests have used


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


# LPIPS v0.1 (Zhang et al. 2018), AlexNet variant, as the ``lpips`` package computes it.
LPIPS_HEADS_ENV = "MSGEN_LPIPS_HEADS"
ALEXNET_ENV = "MSGEN_ALEXNET_WEIGHTS"
TORCHVISION_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's IMAGENET1K_V1 AlexNet
LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # lpips' ScalingLayer: inputs in [-1, 1] to ImageNet's scale
LPIPS_SCALE = (0.458, 0.448, 0.450)
# The ReLU outputs LPIPS compares: after layers 1, 4, 7, 9 and 11 of AlexNet's ``features``.
ALEXNET_TAPS = (1, 4, 7, 9, 11)


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features``, layer for layer, so its state dict (keys
    ``features.N.*`` without the prefix) loads unchanged; msgen builds it itself so that LPIPS
    does not need torchvision importable."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
    )


class LPIPS(nn.Module):
    """LPIPS distance: sum over the five AlexNet ReLU taps of the spatial mean of
    w_l . (f0 / |f0| - f1 / |f1|)^2, features unit-normalised over channels (eps 1e-10).

    features: AlexNet's ``features`` (``alexnet_features()``); heads: the five (1, C_l, 1, 1)
    linear weights (lpips' ``lin{l}.model.1.weight``). forward(x0, x1): (N, 3, H, W) in [-1, 1]
    -> (N,) distances.
    """

    def __init__(self, features: nn.Sequential, heads: list[Tensor]):
        super().__init__()
        if len(heads) != len(ALEXNET_TAPS):
            raise ValueError(f"LPIPS needs {len(ALEXNET_TAPS)} heads, got {len(heads)}")
        self.features = features.eval()
        for i, weight in enumerate(heads):
            self.register_buffer(f"head{i}", weight.detach().float().reshape(1, -1, 1, 1))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))

    def _taps(self, x: Tensor) -> list[Tensor]:
        x = (x - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in ALEXNET_TAPS:
                taps.append(x)
            if index == ALEXNET_TAPS[-1]:
                break
        return taps

    @torch.no_grad()
    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        total = x0.new_zeros(x0.shape[0])
        for i, (f0, f1) in enumerate(zip(self._taps(x0), self._taps(x1))):
            f0 = f0 / (f0.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            f1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + ((f0 - f1).pow(2) * getattr(self, f"head{i}")).sum(1).mean((1, 2))
        return total


def lpips_heads_file(path: str | Path | None = None) -> Path:
    """The v0.1 AlexNet heads: ``path``, $MSGEN_LPIPS_HEADS, or the installed lpips package's file."""
    if path is not None or os.environ.get(LPIPS_HEADS_ENV):
        found = Path(path if path is not None else os.environ[LPIPS_HEADS_ENV])
        if not found.is_file():
            raise MetricUnavailable(f"no LPIPS heads: {found} does not exist")
        return found
    import importlib.util

    spec = importlib.util.find_spec("lpips")  # locates the package without importing it (it imports torchvision)
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailable(f"no LPIPS heads: the lpips package is not installed (pip install lpips) "
                                f"and {LPIPS_HEADS_ENV} is not set")
    found = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "alex.pth"
    if not found.is_file():
        raise MetricUnavailable(f"no LPIPS heads: {found} is missing from the lpips package")
    return found


def _alexnet_file(path: str | Path | None) -> Path:
    if path is not None or os.environ.get(ALEXNET_ENV):
        found = Path(path if path is not None else os.environ[ALEXNET_ENV])
        origin = "the weights argument" if path is not None else ALEXNET_ENV
        if not found.is_file():
            raise MetricUnavailable(f"no AlexNet weights: {found} (from {origin}) does not exist")
        return found
    found = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET_FILE
    if not found.is_file():
        raise MetricUnavailable(f"no AlexNet weights for LPIPS: pass --alexnet-weights PATH or set {ALEXNET_ENV} "
                                f"(torchvision's {TORCHVISION_ALEXNET_FILE}); none in {found.parent}")
    return found


def _load_state(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_lpips(alexnet_weights: str | Path | None = None, heads: str | Path | None = None,
               device: str | torch.device = "cpu") -> LPIPS:
    """LPIPS v0.1 AlexNet with torchvision's ImageNet AlexNet weights (``alexnet_weights``,
    $MSGEN_ALEXNET_WEIGHTS or torch's hub cache) and lpips' heads. Raises MetricUnavailable."""
    heads_path, weights_path = lpips_heads_file(heads), _alexnet_file(alexnet_weights)
    head_state = _load_state(heads_path)
    try:
        head_list = [head_state[f"lin{i}.model.1.weight"] for i in range(len(ALEXNET_TAPS))]
    except KeyError as error:
        raise MetricUnavailable(f"no LPIPS heads: {heads_path} lacks {error}") from None
    state = _load_state(weights_path)
    features = alexnet_features()
    try:
        features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    except RuntimeError as error:
        raise MetricUnavailable(f"no AlexNet weights: {weights_path} is not torchvision's AlexNet: {error}") from None
    return LPIPS(features, head_list).to(device)


# Uncertainty over test tuples: percentile bootstrap of the mean.
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
