"""Sample grids: what the generator makes of a fixed set of held-out tuples, as one image.

One column per tuple; rows, top to bottom: the M sources, the target pose (its heatmaps with the
skeleton drawn over them), the generated image, the ground truth, then one saliency map per source
(the channel mean of the finest attention, white = this source supplies the pixel).
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from msgen.evaluation import to_uint8  # the one conversion, shared with evaluation and generation
from msgen.pose.keypoints import LIMBS, present

GAP = 2  # pixels of white between cells
# One hue per limb, so left and right are told apart as in OpenPose renderings.
_LIMB_COLOURS = [
    tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / len(LIMBS), 0.9, 1.0)) for i in range(len(LIMBS))
]


def pose_image(heatmap: Tensor, keypoints: Tensor) -> np.ndarray:
    """The target pose as a picture: heatmap (18, H, W) max in grey, skeleton (18, 2) (y, x) over it."""
    grey = (heatmap.detach().float().cpu().amax(0).clamp(0, 1) * 160).to(torch.uint8).numpy()
    canvas = Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))
    draw = ImageDraw.Draw(canvas)
    kp = keypoints.detach().cpu().float()
    ok = present(kp)
    for (a, b), colour in zip(LIMBS, _LIMB_COLOURS):
        if ok[a] and ok[b]:
            draw.line([(float(kp[a, 1]), float(kp[a, 0])), (float(kp[b, 1]), float(kp[b, 0]))], fill=colour, width=1)
    return np.asarray(canvas)


def saliency_image(saliency: Tensor) -> np.ndarray:
    """A saliency map (H, W) in [0, 1] -> grey uint8 (H, W, 3)."""
    grey = (saliency.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return np.repeat(grey[..., None], 3, axis=-1)


def sample_grid(batch: dict[str, Tensor], generated: Tensor, saliency: Tensor) -> np.ndarray:
    """The grid of one batch: uint8 (rows * (H + GAP) - GAP, B * (W + GAP) - GAP, 3).

    batch holds "sources" (B, M, 3, H, W), "target" (B, 3, H, W), "target_heatmap" (B, 18, H, W),
    "target_kp" (B, 18, 2); generated (B, 3, H, W); saliency (B, M, H, W).
    """
    sources = to_uint8(batch["sources"])  # (B, M, H, W, 3)
    B, M, H, W, _ = sources.shape
    target = to_uint8(batch["target"])
    fake = to_uint8(generated)
    columns = []
    for b in range(B):
        cells = [sources[b, i] for i in range(M)]
        cells.append(pose_image(batch["target_heatmap"][b], batch["target_kp"][b]))
        cells += [fake[b], target[b]]
        cells += [saliency_image(saliency[b, i]) for i in range(M)]
        columns.append(cells)
    rows = len(columns[0])
    grid = np.full((rows * (H + GAP) - GAP, B * (W + GAP) - GAP, 3), 255, dtype=np.uint8)
    for b, cells in enumerate(columns):
        for r, cell in enumerate(cells):
            grid[r * (H + GAP) : r * (H + GAP) + H, b * (W + GAP) : b * (W + GAP) + W] = cell
    return grid
