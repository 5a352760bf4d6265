"""Poses for the benchmarks: the part warp's affines and masks shaped like real body parts.

The warp's cost depends on its masks (how much of each part's map is sampled) and its affines (how
far the taps land from the output pixel), so the benchmarks build both from poses with
``msgen.pose.body_part_affines``, as the model does: real Market-1501 poses from
``../shared/data/market-real/annotation.csv`` (MSGEN_SHARED_DATA overrides the folder) when it is
there, else synthetic standing poses (``random_poses``), never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from msgen.pose import body_part_affines, is_usable, read_annotations

MARKET_SIZE = (128, 64)  # (H, W) of the images the annotation's pixels refer to
REPO_ROOT = Path(__file__).resolve().parent.parent


def market_annotation() -> Path:
    data = Path(os.environ.get("MSGEN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    return data / "market-real" / "annotation.csv"


def random_poses(n: int, size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """(n, 18, 2) keypoints around a standing person, jittered, a tenth of the non-torso ones
    missing (real Market poses nearly always have the torso)."""
    H, W = size
    base = torch.tensor([[0.12, 0.5], [0.22, 0.5], [0.22, 0.35], [0.35, 0.3], [0.47, 0.27], [0.22, 0.65],
                         [0.35, 0.7], [0.47, 0.73], [0.5, 0.4], [0.69, 0.4], [0.88, 0.38], [0.5, 0.6],
                         [0.69, 0.6], [0.88, 0.62], [0.1, 0.55], [0.1, 0.45], [0.11, 0.6], [0.11, 0.4]])
    kp = (base * torch.tensor([H - 1.0, W - 1.0]) + torch.randn(n, 18, 2, generator=g) * 0.03 * H).clamp(min=0)
    missing = torch.rand(n, 18, generator=g) < 0.1
    missing[:, [2, 5, 8, 11]] = False  # Rsho, Lsho, Rhip, Lhip
    return torch.where(missing[..., None], torch.full_like(kp, -1.0), kp.round())


def pose_pairs(n: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, str]:
    """n (source, target) pose pairs at image size (H, W): (n, 18, 2) each and where they came from.

    Real poses: the usable ones of the annotation in name order, pair i = (pose i, pose i + 1),
    scaled from Market's 128x64 to size. Otherwise synthetic poses, seeded."""
    path = market_annotation()
    if path.is_file():
        poses = [kp for _, kp in sorted(read_annotations(path).items()) if is_usable(kp)]
        if len(poses) >= 2:
            kp = torch.from_numpy(np.stack(poses))
            scale = torch.tensor([size[0] / MARKET_SIZE[0], size[1] / MARKET_SIZE[1]])
            kp = torch.where(kp >= 0, (kp * scale).clamp(max=torch.tensor(size) - 1.0), kp)
            index = torch.arange(n) % len(poses)
            return kp[index], kp[(index + 1) % len(poses)], f"real Market poses ({path})"
    g = torch.Generator().manual_seed(0)
    kp = random_poses(n + 1, size, g)
    return kp[:n], kp[1:], "synthetic poses (no market-real annotation found)"


def warp_inputs(
    shape: tuple[int, int, int, int, int], dtype: torch.dtype, device: torch.device, grad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """part_warp's inputs for shape (N, C, H, W, P): feat (N, C, H, W) seeded random (the model's
    warp reads a map of its output's size), theta (N, P, 2, 3) and mask (N, P, H, W) of the first P
    body parts of N pose pairs, and the poses' origin."""
    N, C, H, W, P = shape
    source, target, origin = pose_pairs(N, (H, W))
    theta, mask = body_part_affines(source, target, (H, W), check=False)
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(N, C, H, W, generator=g).to(device, dtype).requires_grad_(grad)
    return feat, theta[:, :P].contiguous().to(device), mask[:, :P].contiguous().to(device, dtype), origin
