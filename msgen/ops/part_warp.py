"""Body-part affine warp with a max over parts (METHOD.md, "Body-part affine warping").

Convention (shared by the reference and the compiled kernels):
- Coordinates are pixels of feat's grid, pixel centres at integers: column x in [0, Win - 1],
  row y in [0, Hin - 1].
- theta[n, p] is a backward affine: the output pixel (x, y) samples feat at
  (x_in, y_in) = theta[n, p] @ (x, y, 1).
- Bilinear: the four neighbouring pixel centres, each tap outside feat counts as zero
  (grid_sample with align_corners=False and padding_mode="zeros"). Nearest: the pixel at
  (rint(x_in), rint(y_in)) with ties rounded to even, zero outside feat.
- out[n, c, y, x] = max over p of mask[n, p, y, x] * sample_p; masked-out parts contribute their
  zeros to the max. Ties go to the lowest part index p, which alone receives the gradient.
- The output has the mask's spatial size (H, W), which may differ from feat's.

The fast path is the compiled op ``torch.ops.msgen.part_warp`` (sources in csrc/).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IMPLS = ("auto", "reference", "extension")
MODES = ("bilinear", "nearest")


def _check_inputs(feat: Tensor, theta: Tensor, mask: Tensor, mode: str) -> None:
    """Raise ValueError naming the argument whose shape, dtype or device is wrong."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if feat.dim() != 4 or not feat.is_floating_point():
        raise ValueError(f"feat must be a floating (N, C, Hin, Win) tensor, got {feat.dtype} {tuple(feat.shape)}")
    N = feat.shape[0]
    if theta.dim() != 4 or theta.shape[0] != N or tuple(theta.shape[2:]) != (2, 3):
        raise ValueError(f"theta must be (N={N}, P, 2, 3), got {tuple(theta.shape)}")
    P = theta.shape[1]
    if mask.dim() != 4 or tuple(mask.shape[:2]) != (N, P):
        raise ValueError(f"mask must be (N={N}, P={P}, H, W), got {tuple(mask.shape)}")
    if P < 1:
        raise ValueError("theta and mask must hold at least one part (P >= 1)")
    for name, tensor in (("theta", theta), ("mask", mask)):
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {tensor.dtype}")
        if tensor.device != feat.device:
            raise ValueError(f"{name} is on {tensor.device}, feat on {feat.device}")


def part_warp_reference(feat: Tensor, theta: Tensor, mask: Tensor, *, mode: str = "bilinear") -> Tensor:
    """Plain-PyTorch part warp: one grid_sample per part on a P-times expanded batch.

    Shapes: feat (N, C, Hin, Win), theta (N, P, 2, 3), mask (N, P, H, W) -> (N, C, H, W).
    """
    N, C, Hin, Win = feat.shape
    P, H, W = mask.shape[1:]
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=theta.dtype, device=feat.device),
        torch.arange(W, dtype=theta.dtype, device=feat.device),
        indexing="ij",
    )
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # (H, W, 3) as (x, y, 1)
    source = torch.einsum("npij,hwj->nphwi", theta, points)  # (N, P, H, W, 2) as (x_in, y_in)
    # Pixel centre i sits at normalised (2i + 1) / size - 1 when align_corners=False.
    size = torch.tensor([Win, Hin], dtype=theta.dtype, device=feat.device)
    grid = (2 * source + 1) / size - 1
    expanded = feat[:, None].expand(N, P, C, Hin, Win).reshape(N * P, C, Hin, Win)
    sampled = F.grid_sample(
        expanded,
        grid.reshape(N * P, H, W, 2).to(feat.dtype),
        mode=mode,
        padding_mode="zeros",
        align_corners=False,
    ).view(N, P, C, H, W)
    weighted = mask[:, :, None].to(feat.dtype) * sampled
    # torch.max returns the first maximal index, and its backward routes the gradient there only.
    return weighted.max(dim=1).values


def part_warp(
    feat: Tensor, theta: Tensor, mask: Tensor, *, mode: str = "bilinear", impl: str = "auto"
) -> Tensor:
    """Warp feat by P part affines and keep the element-wise max of the masked results.

    Args:
        feat: (N, C, Hin, Win) features.
        theta: (N, P, 2, 3) backward affines in pixel units (see the module's Convention).
        mask: (N, P, H, W) part masks in [0, 1] at the output resolution.
        mode: "bilinear" or "nearest".
        impl: "reference", "extension" (the compiled op on feat's device) or "auto".

    Returns:
        (N, C, H, W).
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    _check_inputs(feat, theta, mask, mode)
    if impl == "auto":
        impl = "reference"  # the compiled path is selected here once it exists
    if impl == "extension":
        raise NotImplementedError("part_warp: the compiled kernels are not built yet")
    return part_warp_reference(feat, theta, mask, mode=mode)
