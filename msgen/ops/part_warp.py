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

Non-finite values (one rule for every implementation):
- A part whose mask is 0 at a pixel contributes exactly 0 there, whatever it would sample (NaN
  and inf included): the mask says the part is absent at that pixel, so nothing of it may reach
  the pixel. This is also what lets the compiled kernels skip the samples of absent parts, which
  are most of the work (a pixel is covered by about 1.4 of the 10 parts of a Market pose).
- A source point that is not finite lies outside feat and samples 0, as a huge finite one does: a
  NaN or infinite theta means "this part is nowhere", never NaN in the output.
- Everything else follows IEEE arithmetic: NaN or inf in feat reaches every output whose part
  has a nonzero mask and a tap on that element inside feat (a tap of weight 0 included, 0 * inf
  is NaN, as in grid_sample); a NaN mask value gives NaN at its pixel; the max over parts
  propagates NaN (as torch.max does).

Gradients: exact for feat, mask and theta (bilinear; nearest sampling is piecewise constant in
theta, so its theta gradient is zero, as in grid_sample). At integer source coordinates the
bilinear theta gradient is the one-sided derivative of the cell to the right/below. Double
backward through the compiled op raises an error.

The fast path is the compiled op ``torch.ops.msgen.part_warp`` (sources in csrc/): it allocates
no tensor but its output (the winning part is recomputed in the backward, not stored), and
its kernels skip the samples of parts whose mask is 0 at a pixel (the rule above).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from msgen.ops import _extension

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


def sample_parts(feat: Tensor, theta: Tensor, H: int, W: int, *, mode: str = "bilinear") -> Tensor:
    """Every part's warp of feat: one grid_sample over the P-times expanded batch.

    Shapes: feat (N, C, Hin, Win), theta (N, P, 2, 3) -> (N, P, C, H, W).
    """
    N, C, Hin, Win = feat.shape
    P = theta.shape[1]
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=theta.dtype, device=feat.device),
        torch.arange(W, dtype=theta.dtype, device=feat.device),
        indexing="ij",
    )
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # (H, W, 3) as (x, y, 1)
    source = torch.einsum("npij,hwj->nphwi", theta, points)  # (N, P, H, W, 2) as (x_in, y_in)
    # A non-finite point samples 0 (the module's rule): -2 is outside feat, with both taps outside.
    source = torch.where(torch.isfinite(source).all(-1, keepdim=True), source, -2.0)
    # Pixel centre i sits at normalised (2i + 1) / size - 1 when align_corners=False.
    # Python scalars, not a size tensor: torch.tensor([Win, Hin], device=...) is a host-to-device
    # copy on every call, which a GPU training step would wait on.
    grid = torch.stack([(2 * source[..., 0] + 1) / Win, (2 * source[..., 1] + 1) / Hin], dim=-1) - 1
    expanded = feat[:, None].expand(N, P, C, Hin, Win).reshape(N * P, C, Hin, Win)
    sampled = F.grid_sample(
        expanded,
        grid.reshape(N * P, H, W, 2).to(feat.dtype),
        mode=mode,
        padding_mode="zeros",
        align_corners=False,
    ).view(N, P, C, H, W)
    return sampled


def part_warp_reference(feat: Tensor, theta: Tensor, mask: Tensor, *, mode: str = "bilinear") -> Tensor:
    """Plain-PyTorch part warp: one grid_sample per part on a P-times expanded batch.

    Shapes: feat (N, C, Hin, Win), theta (N, P, 2, 3), mask (N, P, H, W) -> (N, C, H, W).
    """
    sampled = sample_parts(feat, theta, mask.shape[2], mask.shape[3], mode=mode)
    m = mask[:, :, None].to(feat.dtype)
    # An absent part (mask 0) gives 0 even where its sample is NaN or inf (the module's rule); the
    # product keeps d out / d mask = sample where the mask is 0, as the kernels compute it.
    weighted = m * torch.where((m != 0) | torch.isfinite(sampled), sampled, 0.0)
    # torch.max returns the first maximal index, and its backward routes the gradient there only.
    return weighted.max(dim=1).values


# The compiled op registers its kernels when msgen._C loads; these are the devices it serves.
# Computed once at import so that torch.compile sees a constant instead of a dispatcher query.
_OP = "msgen::part_warp"
_EXTENSION_LOADED = _extension.extension() is not None
_KERNEL_DEVICES = frozenset(
    device
    for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
    if _EXTENSION_LOADED and torch._C._dispatch_has_kernel_for_dispatch_key(_OP, key)
)
_warned_fallback: set[str] = set()


def extension_runs_on(device: torch.device) -> bool:
    """Whether the compiled op has kernels for tensors on ``device``."""
    return device.type in _KERNEL_DEVICES


def _fake_part_warp(feat: Tensor, theta: Tensor, mask: Tensor, mode: str) -> Tensor:
    return feat.new_empty((feat.shape[0], feat.shape[1], mask.shape[2], mask.shape[3]))


def _fake_backward_feat(grad_out: Tensor, feat: Tensor, theta: Tensor, mask: Tensor, mode: str) -> Tensor:
    return feat.new_empty(feat.shape)


def _fake_backward_params(
    grad_out: Tensor, feat: Tensor, theta: Tensor, mask: Tensor, mode: str
) -> tuple[Tensor, Tensor]:
    return theta.new_empty(theta.shape), mask.new_empty(mask.shape)


def _fake_backward(
    grad_out: Tensor, feat: Tensor, theta: Tensor, mask: Tensor, mode: str
) -> tuple[Tensor, Tensor, Tensor]:
    return feat.new_empty(feat.shape), theta.new_empty(theta.shape), mask.new_empty(mask.shape)


def _setup_context(ctx, inputs: tuple, output: Tensor) -> None:
    feat, theta, mask, mode = inputs
    ctx.save_for_backward(feat, theta, mask)
    ctx.mode = mode


def _backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
    feat, theta, mask = ctx.saved_tensors
    needs_feat, needs_theta, needs_mask = ctx.needs_input_grad[:3]
    grad_feat = grad_theta = grad_mask = None
    args = (grad_out, feat, theta, mask, ctx.mode)
    if needs_feat and (needs_theta or needs_mask):  # one pass on CUDA: the winners found once
        grad_feat, grad_theta, grad_mask = torch.ops.msgen.part_warp_backward(*args)
    elif needs_feat:
        grad_feat = torch.ops.msgen.part_warp_backward_feat(*args)
    elif needs_theta or needs_mask:
        grad_theta, grad_mask = torch.ops.msgen.part_warp_backward_params(*args)
    return (
        grad_feat,
        grad_theta if needs_theta else None,
        grad_mask if needs_mask else None,
        None,
    )


def _no_double_backward(ctx, *grads: Tensor) -> None:
    raise RuntimeError(
        "part_warp: double backward through the compiled op is not supported; "
        "use impl='reference' where second derivatives of the warp are needed"
    )


if _EXTENSION_LOADED:
    torch.library.register_fake(_OP, _fake_part_warp)
    torch.library.register_fake("msgen::part_warp_backward_feat", _fake_backward_feat)
    torch.library.register_fake("msgen::part_warp_backward_params", _fake_backward_params)
    torch.library.register_fake("msgen::part_warp_backward", _fake_backward)
    torch.library.register_autograd(_OP, _backward, setup_context=_setup_context)
    _BACKWARD_OPS = ("msgen::part_warp_backward_feat", "msgen::part_warp_backward_params", "msgen::part_warp_backward")
    for _backward_op in _BACKWARD_OPS:
        torch.library.register_autograd(_backward_op, _no_double_backward)


def _resolve_impl(impl: str, device: torch.device) -> str:
    """Turn impl into "reference" or "extension" for tensors on device; never fall back silently."""
    if impl == "extension":
        _extension.require_extension("part_warp")
        if not extension_runs_on(device):
            raise RuntimeError(
                f"part_warp with impl='extension': msgen._C has no {device.type} kernel "
                f"(kernels for: {sorted(_KERNEL_DEVICES)}; see msgen.ops.backend_report())"
            )
        return impl
    if impl == "auto":
        if extension_runs_on(device):
            return "extension"
        if device.type == "cuda" and "cuda" not in _warned_fallback:
            _warned_fallback.add("cuda")
            why = _extension.missing_reason() or "msgen._C was built without its CUDA kernels"
            warnings.warn(f"part_warp falls back to the slow reference on CUDA: {why}", stacklevel=3)
        return "reference"
    return impl


def part_warp(
    feat: Tensor, theta: Tensor, mask: Tensor, *, mode: str = "bilinear", impl: str = "auto"
) -> Tensor:
    """Warp feat by P part affines and keep the element-wise max of the masked results.

    Args:
        feat: (N, C, Hin, Win) features.
        theta: (N, P, 2, 3) backward affines in pixel units (see the module's Convention).
        mask: (N, P, H, W) part masks in [0, 1] at the output resolution.
        mode: "bilinear" or "nearest".
        impl: "reference", "extension" (the compiled op on feat's device; an error when it is
            not available) or "auto" (the extension where it has kernels, else the reference).

    Returns:
        (N, C, H, W). NaN and inf follow the module's rule for every impl: a part whose mask is 0
        at a pixel contributes exactly 0 there, a non-finite source point samples 0, and
        everything else is IEEE arithmetic.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    _check_inputs(feat, theta, mask, mode)
    if _resolve_impl(impl, feat.device) == "extension":
        return torch.ops.msgen.part_warp(feat, theta, mask.to(feat.dtype), mode)
    return part_warp_reference(feat, theta, mask, mode=mode)
