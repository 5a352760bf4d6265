"""Moving backward affines between the image grid and a feature map's grid."""

from __future__ import annotations

import torch
from torch import Tensor


def affines_at_stride(theta: Tensor, stride: int | tuple[int, int]) -> Tensor:
    """Re-express image-pixel backward affines on a feature map downsampled by ``stride``.

    theta (..., 2, 3) maps an image pixel (x, y, 1) to a source image pixel, pixel centres at
    integers (the part_warp convention). A feature map at stride (sy, sx) has its pixel (i, j)
    centred on image pixel (sy * i + (sy - 1) / 2, sx * j + (sx - 1) / 2); the returned affines map
    feature pixels to feature pixels with that same convention. Returns (..., 2, 3).
    """
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    if sy < 1 or sx < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    scale = theta.new_tensor([sx, sy])  # image = scale * feature + offset, per (x, y)
    offset = (scale - 1) / 2
    linear = theta[..., :2] * scale[None, :] / scale[:, None]
    translation = (theta[..., :2] @ offset + theta[..., 2] - offset) / scale
    return torch.cat([linear, translation[..., None]], dim=-1)
