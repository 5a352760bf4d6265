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
    # image = scale * feature + offset per coordinate (x, y). Python numbers, not a tensor made
    # from a list: on a GPU that would be a blocking host-to-device copy at every call.
    scale = (float(sx), float(sy))
    offset = ((sx - 1) / 2, (sy - 1) / 2)
    rows = []
    for i in range(2):  # output row i: x_in (0) or y_in (1)
        row = theta[..., i, :]
        shift = row[..., 0] * offset[0] + row[..., 1] * offset[1] + row[..., 2] - offset[i]
        rows.append(torch.stack([row[..., 0] * (scale[0] / scale[i]), row[..., 1] * (scale[1] / scale[i]),
                                 shift / scale[i]], dim=-1))
    return torch.stack(rows, dim=-2)
