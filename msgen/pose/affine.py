"""Moving backward affines between the image grid and a feature map's grid, and the part warp's
inputs for a feature map (``part_warp_inputs``, the drop-in for another generator)."""

from __future__ import annotations

import torch
from torch import Tensor

from msgen.pose.parts import body_part_affines, part_masks_at


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


def part_warp_inputs(
    source_kp: Tensor,
    target_kp: Tensor,
    image_size: tuple[int, int],
    feature_size: tuple[int, int] | None = None,
    *,
    stride: int | tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """theta and masks for ``msgen.ops.part_warp`` on feature maps of images, from keypoints.

    The whole geometry of docs/METHOD.md, "Body-part affine warping", in one call: the 10 parts'
    backward affines and target-side masks at the image's size (``body_part_affines``), the affines
    re-expressed on the feature map's grid (``affines_at_stride``) and the masks resized to it
    (``part_masks_at``), exactly as msgen's own encoder warps its skips.

    Args:
        source_kp, target_kp: (N, 18, 2) (y, x) pixel keypoints of the images, -1 = missing (one
            pair per warp: for M sources of one target, repeat the target M times).
        image_size: (H, W) of the images the keypoints belong to.
        feature_size: (h, w) of the feature map to warp; H and W must be multiples of h and w.
        stride: instead of feature_size, the feature map's stride s (an int or (sy, sx)):
            (h, w) = (H / sy, W / sx).

    Returns:
        theta (N, 10, 2, 3) in the feature map's pixels and masks (N, 10, h, w) in [0, 1], on the
        keypoints' device: ``part_warp(features (N, C, h, w), theta, masks)`` is each source's
        features moved into the target pose.
    """
    if (feature_size is None) == (stride is None):
        raise ValueError("give exactly one of feature_size (h, w) and stride")
    H, W = (int(v) for v in image_size)
    if stride is not None:
        sy, sx = (stride, stride) if isinstance(stride, int) else (int(stride[0]), int(stride[1]))
        if sy < 1 or sx < 1 or H % sy or W % sx:
            raise ValueError(f"stride {stride} must be >= 1 and divide the image size {H}x{W}")
    else:
        h, w = (int(v) for v in feature_size)
        if h < 1 or w < 1 or H % h or W % w:
            raise ValueError(f"feature_size {h}x{w} must divide the image size {H}x{W} "
                             f"(a feature map at an integer stride)")
        sy, sx = H // h, W // w
    theta, masks = body_part_affines(source_kp, target_kp, (H, W))
    return affines_at_stride(theta, (sy, sx)), part_masks_at(masks, (H // sy, W // sx))
