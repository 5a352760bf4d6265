"""SSIM in the forms the field reports, on uint8 RGB images (H, W, 3) (METHOD.md, "Evaluation").

- SSIM_256 (``ssim``): scikit-image's ``structural_similarity``, Gaussian weights with sigma 1.5,
  population covariance, the mean over the three channels. The data range is 255 by default;
  ``data_range="minmax"`` is GFLA's ``ssim_256`` (max - min of the generated image). Every result
  says which one it used.
- SSIM in GFLA's form (``ssim_gfla``): both images as float32 in [0, 1], data range 1, a uniform
  51x51 window, sample covariance (GFLA's script/metrics.py ``compare_ssim(..., data_range=1,
  win_size=51, multichannel=True)``); it needs images of at least 51x51.
- mask-SSIM (``mask_ssim``): both images multiplied by the TARGET's person mask
  (``msgen.pose.person_mask``), then SSIM.

``to_uint8`` is the one conversion of generator output to uint8 images, shared by evaluation,
training's sample grids and generation.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import Tensor

from msgen.pose.person_mask import person_mask

DATA_RANGES = ("255", "minmax")
GFLA_SSIM_WINDOW = 51


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

