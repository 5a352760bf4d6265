"""The evaluation metrics of Ma et al.'s protocol (METHOD.md, "Evaluation").

- SSIM: scikit-image's ``structural_similarity`` on uint8 RGB images (H, W, 3), Gaussian weights
  with sigma 1.5, population covariance, the mean over the three channels. The data range is 255
  by default; ``data_range="minmax"`` is the published code's variant (max - min of the generated
  image). Every result says which one it used.
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
from torch import Tensor

from msgen.pose.person_mask import person_mask

DATA_RANGES = ("255", "minmax")
INCEPTION_SIZE = 299
INCEPTION_ENV = "MSGEN_INCEPTION_WEIGHTS"
# The file torchvision's IMAGENET1K_V1 Inception-v3 weights are cached as (ported from TF's).
TORCHVISION_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"

ProbabilityModel = Callable[[Tensor], Tensor]


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


class InceptionUnavailable(RuntimeError):
    """Inception-v3 cannot be built here; the message says why (callers report IS as unavailable)."""


def _weights_path(weights: str | Path | None) -> Path:
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
    """torchvision's Inception-v3 with the given (or found) weights, as a probability model.

    Returns a callable (N, 3, 299, 299) in [-1, 1] -> softmax probabilities (N, 1000). The network
    is built with transform_input=False because the ported Google weights expect [-1, 1] input.
    Raises InceptionUnavailable when torchvision is missing or no weights file is found.
    """
    try:
        from torchvision.models import inception_v3
    except ImportError:
        raise InceptionUnavailable(
            "no Inception-v3 weights: torchvision is not installed (pip install torchvision), "
            "which msgen uses for the Inception-v3 network"
        ) from None
    path = _weights_path(weights)
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

    @torch.no_grad()
    def probabilities(x: Tensor) -> Tensor:
        return F.softmax(network(x.to(device)), dim=1)

    return probabilities


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
            batch = torch.from_numpy(images[start : start + self.batch_size]).permute(0, 3, 1, 2)
            batch = batch.float() / 127.5 - 1.0
            batch = F.interpolate(batch, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
            with torch.no_grad():
                outputs.append(self.probability_model(batch).detach().double().cpu().numpy())
        return np.concatenate(outputs)

    def score(self, images: np.ndarray, splits: int = 10) -> tuple[float, float]:
        """(mean, std) of the Inception Score of images (N, H, W, 3) uint8 over ``splits`` splits."""
        return inception_score_from_probabilities(self.probabilities(images), splits)
