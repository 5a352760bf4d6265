"""The reference rows of the evaluation table: methods that learn nothing, scored beside the model.

- ``warp_baseline``: each source warped to the target pose with its own part affines and masks,
  the warped sources averaged by coverage (what the body-part warp alone gives);
- ``constant_method``: a constant image of the training mean colour (``mean_colour``);
- ``ground_truth_method``: the test images themselves (FID and IS only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from msgen.data import PoseImageFolder
from msgen.evaluation.evaluator import Method
from msgen.models.generator import warp_source_pixels

MEAN_COLOUR_IMAGES = 1000  # training images averaged for the constant row (evenly spaced)


@torch.no_grad()
def warp_baseline(batch: dict) -> Tensor:
    """The non-learned baseline: each source image warped to the target pose with its own part
    affines and masks (``part_warp``, the max over parts), the warped sources averaged weighted by
    how much of each pixel they actually cover; pixels no source covers take the mean of the
    unwarped sources (the background they share).

    Coverage is the warp of a channel of ones: the part masks (the torso's covers the whole
    image, being the background warp too) times the share of the bilinear taps that fall inside
    the source, so a part that maps outside its source adds no black. batch: "sources"
    (B, M, 3, H, W) in [-1, 1], "theta" (B, M, P, 2, 3), "part_masks" (B, M, P, H, W), "valid"
    None or (B, M). Returns (B, 3, H, W) in [-1, 1].
    """
    sources = batch["sources"].float()
    B, M, _, H, W = sources.shape
    theta, masks = batch["theta"].float(), batch["part_masks"].float()
    valid = batch.get("valid")
    weight = torch.ones(B, M, 1, 1, 1, device=sources.device) if valid is None else valid.float().view(B, M, 1, 1, 1)
    warped = warp_source_pixels(sources, theta, masks)  # in [0, 1], and the coverage
    unit = (sources + 1) / 2
    colour = (warped[:, :, :3] * weight).sum(1)
    covered = (warped[:, :, 3:] * weight).sum(1)
    background = (unit * weight).sum(1) / weight.sum(1).clamp_min(1)
    rest = (1 - covered).clamp_min(0)
    image = (colour + background * rest) / (covered + rest).clamp_min(1e-6)
    return image.clamp(0, 1) * 2 - 1


def mean_colour(folder: PoseImageFolder, names: Sequence[str], limit: int = MEAN_COLOUR_IMAGES) -> Tensor:
    """The mean RGB (3,) in [-1, 1] of up to ``limit`` of ``names`` (evenly spaced, all if fewer)."""
    if not names:
        raise ValueError("mean_colour needs at least one image")
    chosen = [names[i] for i in np.linspace(0, len(names) - 1, min(limit, len(names))).round().astype(int)]
    total = torch.zeros(3, dtype=torch.float64)
    for name in chosen:
        total += folder.load(name)[0].double().mean((1, 2))
    return (total / len(chosen)).float()


def constant_method(colour: Tensor) -> Method:
    """The row of a constant image of ``colour`` (3,) in [-1, 1] (the training mean colour)."""

    def make(batch: dict) -> Tensor:
        target = batch["target"]
        return colour.to(target.device, target.dtype).view(1, 3, 1, 1).expand_as(target).contiguous()

    return Method("constant image (training mean colour)", make, per_m=False)


def ground_truth_method() -> Method:
    return Method("ground truth (test images)", lambda batch: batch["target"], per_m=False, pairwise=False)
