"""Gaussian keypoint heatmaps (METHOD.md, "Pose representation")."""

from __future__ import annotations

import torch
from torch import Tensor

from msgen.pose.keypoints import check_keypoints, present


HEATMAP_SIGMA = 6.0  # px, METHOD.md


def heatmaps(kp: Tensor, size: tuple[int, int], sigma: float = HEATMAP_SIGMA, *, check: bool = True) -> Tensor:
    """One Gaussian channel per keypoint: exp(-d^2 / (2 sigma^2)), d the distance to the point.

    kp (..., 18, 2) as (y, x) pixels, pixel centres at integer coordinates; size (H, W).
    Returns float32 (..., 18, H, W) on kp's device; a missing point gives an all-zero channel.
    The Gaussian is separable, so it is built as the outer product of a row and a column profile.
    check: validate kp's values, which reads them on the host (a GPU training step passes False
    for keypoints its loader checked); the shape is always checked.
    """
    if not isinstance(kp, Tensor):
        raise ValueError(f"kp must be a torch.Tensor, got {type(kp).__name__}")
    if check:
        check_keypoints(kp, name="kp")
    elif kp.dim() < 2 or tuple(kp.shape[-2:]) != (18, 2):
        raise ValueError(f"kp must have shape (..., 18, 2) as (y, x), got {tuple(kp.shape)}")
    H, W = size
    if H < 1 or W < 1:
        raise ValueError(f"size must be two positive ints (H, W), got {size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    kp = kp.to(torch.float32)
    rows = torch.arange(H, dtype=torch.float32, device=kp.device)
    cols = torch.arange(W, dtype=torch.float32, device=kp.device)
    scale = -1.0 / (2.0 * sigma * sigma)
    gy = torch.exp(scale * (rows - kp[..., 0:1]) ** 2)  # (..., 18, H)
    gx = torch.exp(scale * (cols - kp[..., 1:2]) ** 2)  # (..., 18, W)
    gy = gy * present(kp)[..., None].to(torch.float32)
    return gy[..., :, None] * gx[..., None, :]
