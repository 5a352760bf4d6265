"""Multi-source attention fusion (Eq. 2-5 of the WACV 2020 paper msgen implements): reference, Triton op, dispatch and module.

For each source i of M, with z_i = concat(psi, xi_i) of Cd + Ce channels:
    g_i[h, w] = sigmoid(g_weight . z_i[:, h, w] + g_bias)                 spatial gate
    f_i[c]    = sigmoid(fc2(relu(fc1(mean_hw z_i))))[c]                    channel gate
    A_i       = max(g_i * f_i, eps)                                        (Ce, H, W)
    Att_i     = A_i / sum over valid j of A_j
    out       = concat(psi, sum_i Att_i * xi_i)                            (B, Cd + Ce, H, W)
The six parameters travel together as one ``FusionWeights``.

NaN and inf: the channel gate pools every pixel, so a NaN in one pixel of a valid source's xi (or
of psi) makes that source's pooled vector, its f and hence its A NaN at every pixel, and the
normalisation spreads it over all sources: the whole fused half out[b, Cd:] of that sample (and its
saliency) is NaN, while out[b, :Cd] stays a copy of psi and the other samples are untouched. Both
implementations follow this rule (the kernels' max and ReLU propagate NaN as torch's do). Invalid
sources are never read, so their padding may hold anything, NaN included.

The fast path is the Triton kernels in ``msgen.kernels.fused_attention`` (kernels/ in the checkout;
its docstring says how they divide the work, including the channel gate's MLP that runs inside
them). Registration: two ``torch.library.custom_op``s, ``msgen::fused_attention`` (returns out, the
saliency, and the gate g, pooled vectors and channel-gate MLP state that the backward reuses) and
``msgen::fused_attention_backward`` (all eight gradients), with fake implementations and the
autograd formula, so torch.compile(fullgraph=True) traces through them and opcheck passes. They are
opaque custom ops rather than ``torch.library.triton_op``: a triton_op is traced into by
torch.compile, which fails under TRITON_INTERPRET=1 (the interpreter's kernels are not recognised
by ``wrap_triton`` and would run on fake tensors), and CI checks the op on CPU with the interpreter.
The saliency is differentiable; double backward through the Triton op is not supported.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msgen.ops._backends import triton_importable, triton_usable_on

IMPLS = ("auto", "reference", "triton")


class FusionWeights(NamedTuple):
    """The six parameters of one fusion, Z = Cd + Ce and Hd hidden units of the channel gate."""

    g_weight: Tensor  # (Z,) the spatial gate's 1x1 conv
    g_bias: Tensor  # ()
    fc1_weight: Tensor  # (Hd, Z) the channel gate's MLP
    fc1_bias: Tensor  # (Hd,)
    fc2_weight: Tensor  # (Ce, Hd)
    fc2_bias: Tensor  # (Ce,)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels accumulate in (and keep g, f and the partial sums in)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_inputs(
    psi: Tensor, xi: Tensor, weights: FusionWeights, valid: Tensor | None, eps: float,
    *, check_valid_sources: bool = True,
) -> None:
    """Raise ValueError naming the argument whose shape, dtype or device is wrong.

    check_valid_sources also checks that every sample has a valid source; that reads valid on the
    host, so it is skipped while torch.compile traces (the Triton op checks it when it runs).
    """
    if psi.dim() != 4:
        raise ValueError(f"psi must be (B, Cd, H, W), got shape {tuple(psi.shape)}")
    if xi.dim() != 5:
        raise ValueError(f"xi must be (B, M, Ce, H, W), got shape {tuple(xi.shape)}")
    B, Cd, H, W = psi.shape
    Bx, M, Ce, Hx, Wx = xi.shape
    if (Bx, Hx, Wx) != (B, H, W):
        raise ValueError(
            f"xi {tuple(xi.shape)} must match psi {tuple(psi.shape)} in batch and spatial size"
        )
    if M < 1:
        raise ValueError("xi must hold at least one source (M >= 1)")
    if not psi.is_floating_point() or xi.dtype != psi.dtype:
        raise ValueError(f"psi and xi must share one floating dtype, got {psi.dtype} and {xi.dtype}")
    fc1_weight = weights.fc1_weight
    Hd = fc1_weight.shape[0] if fc1_weight.dim() == 2 else -1
    expected = FusionWeights((Cd + Ce,), (), (Hd, Cd + Ce), (Hd,), (Ce, Hd), (Ce,))
    for name, tensor, shape in zip(FusionWeights._fields, weights, expected):
        if tuple(tensor.shape) != shape or Hd < 1:
            raise ValueError(
                f"{name} must have shape {shape} for Cd={Cd}, Ce={Ce}, got {tuple(tensor.shape)}"
            )
        if tensor.device != psi.device:
            raise ValueError(f"{name} is on {tensor.device}, psi on {psi.device}")
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {tensor.dtype}")
    if xi.device != psi.device:
        raise ValueError(f"xi is on {xi.device}, psi on {psi.device}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if valid is not None:
        if valid.dtype != torch.bool or tuple(valid.shape) != (B, M):
            raise ValueError(
                f"valid must be a bool tensor of shape (B, M) = {(B, M)}, "
                f"got {valid.dtype} {tuple(valid.shape)}"
            )
        if valid.device != psi.device:
            raise ValueError(f"valid is on {valid.device}, psi on {psi.device}")
        if check_valid_sources and not torch.compiler.is_compiling():
            require_a_valid_source(valid, "fused_attention")


def require_a_valid_source(valid: Tensor, who: str) -> None:
    """Every sample of valid (B, M) needs a valid source. On CPU tensors, outside torch.compile: a
    ValueError naming the samples. On a GPU a host-side check would synchronise every call, so the
    check is an asynchronous device assertion (torch._assert_async, also the form torch.compile
    traces), which stops the program at its next synchronisation; who names the caller in it."""
    has_source = valid.any(dim=1).all()
    if valid.device.type == "cpu" and not torch.compiler.is_compiling():
        if not bool(has_source):
            empty = (~valid.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"valid marks no source for batch samples {empty}: each needs >= 1")
        return
    torch._assert_async(has_source, f"{who}: valid marks no source for some batch sample; each needs >= 1")


def _reference(
    psi: Tensor, xi: Tensor, weights: FusionWeights, valid: Tensor | None, eps: float, return_saliency: bool
) -> Tensor | tuple[Tensor, Tensor]:
    Cd = psi.shape[1]
    g_weight, g_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias = weights
    if valid is not None:
        keep = valid[:, :, None, None, None]
        # Padded sources may hold anything, NaN included: zero them before the pool, where a NaN
        # would reach the gradient of the channel gate's weights through 0 * NaN.
        xi = torch.where(keep, xi, torch.zeros_like(xi))
    gate_psi = torch.einsum("c,bchw->bhw", g_weight[:Cd], psi)
    gate_xi = torch.einsum("c,bmchw->bmhw", g_weight[Cd:], xi)
    g = torch.sigmoid(gate_psi[:, None] + gate_xi + g_bias)  # (B, M, H, W)

    pooled_psi = psi.mean(dim=(2, 3))[:, None].expand(-1, xi.shape[1], -1)  # (B, M, Cd)
    pooled = torch.cat([pooled_psi, xi.mean(dim=(3, 4))], dim=2)  # (B, M, Cd + Ce)
    hidden = F.relu(F.linear(pooled, fc1_weight, fc1_bias))
    f = torch.sigmoid(F.linear(hidden, fc2_weight, fc2_bias))  # (B, M, Ce)

    A = (g[:, :, None] * f[..., None, None]).clamp_min(eps)  # (B, M, Ce, H, W)
    if valid is not None:
        A = torch.where(keep, A, torch.zeros_like(A))
    att = A / A.sum(dim=1, keepdim=True)
    out = torch.cat([psi, (att * xi).sum(dim=1)], dim=1)
    if return_saliency:
        return out, att.mean(dim=2)
    return out


def fused_attention_reference(
    psi: Tensor,
    xi: Tensor,
    g_weight: Tensor,
    g_bias: Tensor,
    fc1_weight: Tensor,
    fc1_bias: Tensor,
    fc2_weight: Tensor,
    fc2_bias: Tensor,
    *,
    valid: Tensor | None = None,
    eps: float = 1e-7,
    return_saliency: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Plain-PyTorch attention fusion; any device and dtype, differentiable by autograd.

    Shapes: psi (B, Cd, H, W), xi (B, M, Ce, H, W), the weights as in ``FusionWeights``
    (``fused_attention_reference(psi, xi, *weights)``), valid (B, M) bool or None.
    Returns out (B, Cd + Ce, H, W) and, with return_saliency, the channel mean of Att (B, M, H, W).
    """
    weights = FusionWeights(g_weight, g_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
    return _reference(psi, xi, weights, valid, eps, return_saliency)


# ---------------------------------------------------------------------------------------------
# Triton path: the two custom ops, their fakes and autograd. Shapes as in the module docstring;
# "acc" is the kernels' accumulation dtype (float32, float64 for float64 inputs).
# ---------------------------------------------------------------------------------------------

TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_warned_fallback: set[str] = set()


def _kernels():
    """The kernel module; imported on first use because importing it needs triton."""
    from msgen.kernels import fused_attention as kernels

    return kernels


def triton_unavailable_reason(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why the Triton kernels cannot take (device, dtype) tensors here, or None when they can."""
    if dtype not in TRITON_DTYPES:
        return f"the kernels take {[str(d) for d in TRITON_DTYPES]}, got {dtype}"
    if not triton_importable():
        return "triton is not installed (pip install 'msgen[triton]')"
    if triton_usable_on(device):
        return None
    if device.type == "cpu":
        return "Triton needs a CUDA GPU; CPU tensors run only under TRITON_INTERPRET=1"
    if device.type == "cuda":
        return "TRITON_INTERPRET=1 is set, and the interpreter takes CPU tensors only"
    return f"Triton does not run on {device.type} tensors"


def _require_triton(device: torch.device, dtype: torch.dtype) -> None:
    reason = triton_unavailable_reason(device, dtype)
    if reason is not None:
        raise RuntimeError(f"fused_attention with impl='triton' cannot run on {device}: {reason}")


def _source_mask(valid: Tensor | None, B: int, M: int, device: torch.device, *, check: bool) -> Tensor:
    """(B, M) int8 mask the kernels read; check: every sample needs a valid source (no host sync;
    skipped while a CUDA graph is being captured)."""
    if valid is None:
        return torch.ones((B, M), dtype=torch.int8, device=device)
    if check and not (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        require_a_valid_source(valid, "fused_attention")
    return valid.contiguous().view(torch.int8)  # bool and int8 share a size: no copy


def _acc_weights(weights: list[Tensor], acc: torch.dtype) -> FusionWeights:
    """The weights as the kernels read them: contiguous, in the accumulation dtype (no copy for
    contiguous float32 parameters of a float32 op)."""
    return FusionWeights(*(w.to(acc).contiguous() for w in weights))


@torch.library.custom_op("msgen::fused_attention", mutates_args=())
def _fused_attention_op(
    psi: Tensor, xi: Tensor, weights: list[Tensor], valid: Tensor | None, eps: float, return_saliency: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Triton forward; weights are the six of ``FusionWeights`` in order. Returns out
    (B, Cd + Ce, H, W), the saliency (B, M, H, W) (shape (0,) unless return_saliency), and for the
    backward, all in acc: the gate g (B, M, H, W), pooled (B, M, Cd + Ce), the MLP's hidden units
    relu(pre) (B, M, Hd) and f (B, M, Ce) (saved, not recomputed)."""
    _require_triton(psi.device, psi.dtype)
    B, Cd, H, W = psi.shape
    M, Ce = xi.shape[1], xi.shape[2]
    mask = _source_mask(valid, B, M, psi.device, check=True)
    out = psi.new_empty((B, Cd + Ce, H, W))
    saliency = psi.new_empty((B, M, H, W) if return_saliency else (0,))
    gate, pooled, hidden, f = _kernels().forward(
        psi, xi, _acc_weights(weights, acc_dtype(psi.dtype)), mask, eps, out,
        saliency if return_saliency else None,
    )
    return out, saliency, gate, pooled, hidden, f


@_fused_attention_op.register_fake
def _fused_attention_fake(psi, xi, weights, valid, eps, return_saliency):
    B, Cd, H, W = psi.shape
    M, Ce = xi.shape[1], xi.shape[2]
    acc = acc_dtype(psi.dtype)
    return (
        psi.new_empty((B, Cd + Ce, H, W)),
        psi.new_empty((B, M, H, W) if return_saliency else (0,)),
        psi.new_empty((B, M, H, W), dtype=acc),
        psi.new_empty((B, M, Cd + Ce), dtype=acc),
        psi.new_empty((B, M, weights[2].shape[0]), dtype=acc),
        psi.new_empty((B, M, Ce), dtype=acc),
    )


@torch.library.custom_op("msgen::fused_attention_backward", mutates_args=())
def _fused_attention_backward_op(
    grad_out: Tensor,
    grad_saliency: Tensor | None,
    psi: Tensor,
    xi: Tensor,
    weights: list[Tensor],
    valid: Tensor | None,
    gate: Tensor,
    pooled: Tensor,
    hidden: Tensor,
    f: Tensor,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Triton backward: the gradients of psi and xi in their dtype; in acc, those of (g_weight,
    g_bias) as one (Cd + Ce + 1,) vector, of fc1_weight, of fc2_weight, and of (fc1_bias, fc2_bias)
    as one (Hd + Ce,) vector (outputs may not alias, so the caller splits the vectors).

    grad_out (B, Cd + Ce, H, W) and grad_saliency (B, M, H, W) or None may have any strides
    (an expanded gradient is read in place, never copied)."""
    _require_triton(psi.device, psi.dtype)
    B, M = xi.shape[:2]
    mask = _source_mask(valid, B, M, psi.device, check=False)
    Hd = hidden.shape[2]
    grad_psi, grad_xi, grad_gate, dz = _kernels().backward(
        psi, xi, _acc_weights(weights, gate.dtype), mask, eps, grad_out, grad_saliency, gate, hidden, f
    )
    d_pre, d_fz = dz[..., :Hd], dz[..., Hd:]
    return (
        grad_psi,
        grad_xi,
        grad_gate,
        torch.einsum("bmh,bmk->hk", d_pre, pooled),
        torch.einsum("bmc,bmh->ch", d_fz, hidden),
        dz.sum(dim=(0, 1)),
    )


@_fused_attention_backward_op.register_fake
def _fused_attention_backward_fake(grad_out, grad_saliency, psi, xi, weights, valid, gate, pooled, hidden, f, eps):
    g_weight, _, fc1_weight, _, fc2_weight, _ = weights
    return (
        psi.new_empty(psi.shape),
        xi.new_empty(xi.shape),
        gate.new_empty((g_weight.shape[0] + 1,)),
        gate.new_empty(fc1_weight.shape),
        gate.new_empty(fc2_weight.shape),
        gate.new_empty((fc1_weight.shape[0] + fc2_weight.shape[0],)),
    )


def _setup_context(ctx, inputs: tuple, output: tuple) -> None:
    psi, xi, weights, valid, eps, _ = inputs
    _, _, gate, pooled, hidden, f = output
    ctx.save_for_backward(psi, xi, *weights, valid, gate, pooled, hidden, f)
    ctx.eps = eps
    ctx.mark_non_differentiable(gate, pooled, hidden, f)
    ctx.set_materialize_grads(False)  # an unused saliency sends None, and its term is skipped


def _backward(ctx, grad_out: Tensor | None, grad_saliency: Tensor | None, *_: Tensor | None) -> tuple:
    psi, xi, *weights, valid, gate, pooled, hidden, f = ctx.saved_tensors
    if grad_saliency is not None and grad_saliency.dim() != 4:
        grad_saliency = None  # the (0,) placeholder of a saliency that was not asked for
    if grad_out is None:  # only the saliency reaches the loss
        B, Cd, H, W = psi.shape
        grad_out = psi.new_zeros(()).expand(B, Cd + xi.shape[2], H, W)
    grad_psi, grad_xi, grad_gate, grad_fc1, grad_fc2, grad_biases = torch.ops.msgen.fused_attention_backward(
        grad_out, grad_saliency, psi, xi, weights, valid, gate, pooled, hidden, f, ctx.eps
    )
    Hd = grad_fc1.shape[0]
    grads = (grad_gate[:-1], grad_gate[-1], grad_fc1, grad_biases[:Hd], grad_fc2, grad_biases[Hd:])
    return grad_psi, grad_xi, [g.to(w.dtype) for g, w in zip(grads, weights)], None, None, None


def _no_double_backward(ctx, *grads: Tensor) -> None:
    raise RuntimeError(
        "fused_attention: double backward through the Triton op is not supported; "
        "use impl='reference' where second derivatives are needed"
    )


_fused_attention_op.register_autograd(_backward, setup_context=_setup_context)
_fused_attention_backward_op.register_autograd(_no_double_backward)


@torch.compiler.assume_constant_result
def _resolve_impl(impl: str, device: torch.device, dtype: torch.dtype) -> str:
    """Turn impl into "reference" or "triton" for (device, dtype) tensors; never fall back silently
    on an explicit request. A pure function of its arguments (no warning here: torch.compile runs
    it once and keeps the result), see ``_warn_auto_fallback``."""
    if impl == "triton":
        _require_triton(device, dtype)
        return impl
    if impl == "auto":
        if device.type != "cuda":
            return "reference"  # the interpreter on CPU tensors is for tests, far slower than torch
        return "triton" if triton_unavailable_reason(device, dtype) is None else "reference"
    return impl


def _warn_auto_fallback(device: torch.device, dtype: torch.dtype) -> None:
    """Warn once per reason when impl="auto" runs the slow reference on a CUDA tensor."""
    reason = triton_unavailable_reason(device, dtype)
    if reason is not None and reason not in _warned_fallback:
        _warned_fallback.add(reason)
        warnings.warn(f"fused_attention falls back to the slow reference on CUDA: {reason}", stacklevel=4)


def _fused_attention(
    psi: Tensor, xi: Tensor, weights: FusionWeights, valid: Tensor | None, eps: float,
    return_saliency: bool, impl: str,
) -> Tensor | tuple[Tensor, Tensor]:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    resolved = _resolve_impl(impl, psi.device, psi.dtype)
    if impl == "auto" and psi.device.type == "cuda" and resolved == "reference":
        if not torch.compiler.is_compiling():
            _warn_auto_fallback(psi.device, psi.dtype)
    # The Triton op checks that each sample has a valid source itself, so it also runs compiled.
    _check_inputs(psi, xi, weights, valid, eps, check_valid_sources=resolved == "reference")
    if resolved == "reference":
        return _reference(psi, xi, weights, valid, eps, return_saliency)
    out, saliency, *_ = torch.ops.msgen.fused_attention(psi, xi, list(weights), valid, eps, return_saliency)
    return (out, saliency) if return_saliency else out


def fused_attention(
    psi: Tensor,
    xi: Tensor,
    g_weight: Tensor,
    g_bias: Tensor,
    fc1_weight: Tensor,
    fc1_bias: Tensor,
    fc2_weight: Tensor,
    fc2_bias: Tensor,
    *,
    valid: Tensor | None = None,
    eps: float = 1e-7,
    return_saliency: bool = False,
    impl: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention fusion of M aligned sources into a decoder state (see the module docstring).

    Args:
        psi: (B, Cd, H, W) decoder state.
        xi: (B, M, Ce, H, W) the M aligned source features.
        g_weight, g_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias: the six fields of
            ``FusionWeights`` (so ``fused_attention(psi, xi, *weights)`` takes one):
            (Cd + Ce,) and () the 1x1 conv of the spatial gate; (Hd, Cd + Ce), (Hd,), (Ce, Hd)
            and (Ce,) the two linear layers of the channel gate.
        valid: (B, M) bool; sources marked False take no part and their values (NaN included)
            are never used. Each sample needs one valid source (checked, except that the
            reference skips the check under torch.compile: such a sample then gives NaN).
        eps: lower clamp of A = g * f, keeps the normalisation away from 0 / 0.
        return_saliency: also return the channel mean of Att, (B, M, H, W) (differentiable).
        impl: "reference"; "triton" (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1, in
            float32, bfloat16, float16 or float64; an error elsewhere); or "auto" (triton on CUDA
            tensors where it can run, else the reference, with a warning on CUDA).

    Returns:
        (B, Cd + Ce, H, W), and the (B, M, H, W) saliency when asked for. A NaN in one pixel of a
        valid source (or of psi) makes the whole fused half out[b, Cd:] of that sample NaN (the
        channel gate pools every pixel; see the module docstring).
    """
    weights = FusionWeights(g_weight, g_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
    return _fused_attention(psi, xi, weights, valid, eps, return_saliency, impl)


class AttentionFusion(nn.Module):
    """The attention-fusion block of one decoder level, holding its parameters.

    forward(psi (B, Cd, H, W), xi (B, M, Ce, H, W), valid (B, M) or None) -> (B, Cd + Ce, H, W)
    (and the (B, M, H, W) saliency with return_saliency=True), with Cd = psi_channels and
    Ce = xi_channels. ``weights()`` gives the parameters as one ``FusionWeights``.

    fixed_channel_gate: the channel gate's MLP weights are zero buffers instead of parameters, so
    f = sigmoid(0) = 1/2 for every channel and source; a constant f cancels in the normalisation
    (Att_i = g_i / sum_j g_j, spatial attention only), and the hidden size is 1.
    """

    def __init__(
        self,
        psi_channels: int,
        xi_channels: int,
        hidden: int | None = None,
        *,
        impl: str = "auto",
        fixed_channel_gate: bool = False,
    ) -> None:
        super().__init__()
        if psi_channels < 1 or xi_channels < 1:
            raise ValueError(f"channel counts must be >= 1, got {psi_channels}, {xi_channels}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        z = psi_channels + xi_channels
        self.psi_channels, self.xi_channels, self.impl = psi_channels, xi_channels, impl
        self.fixed_channel_gate = fixed_channel_gate
        self.gate = nn.Conv2d(z, 1, kernel_size=1)  # g: one value per pixel
        if fixed_channel_gate:
            # Hidden size 1 is the smallest the op accepts; zeros make f = sigmoid(0) everywhere.
            self.register_buffer("fc1_weight", torch.zeros(1, z))
            self.register_buffer("fc1_bias", torch.zeros(1))
            self.register_buffer("fc2_weight", torch.zeros(xi_channels, 1))
            self.register_buffer("fc2_bias", torch.zeros(xi_channels))
        else:
            hidden = hidden if hidden is not None else max(z // 4, 1)
            self.fc1 = nn.Linear(z, hidden)  # f: one value per channel of xi
            self.fc2 = nn.Linear(hidden, xi_channels)

    def weights(self) -> FusionWeights:
        """The six parameters (views, so gradients reach the module's own)."""
        if self.fixed_channel_gate:
            fc = (self.fc1_weight, self.fc1_bias, self.fc2_weight, self.fc2_bias)
        else:
            fc = (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
        return FusionWeights(self.gate.weight.view(-1), self.gate.bias.view(()), *fc)

    def forward(
        self, psi: Tensor, xi: Tensor, valid: Tensor | None = None, return_saliency: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        cd = psi.shape[1] if psi.dim() == 4 else None
        ce = xi.shape[2] if xi.dim() == 5 else None
        if (cd, ce) != (self.psi_channels, self.xi_channels):
            raise ValueError(
                f"{type(self).__name__}(psi_channels={self.psi_channels}, xi_channels={self.xi_channels}) "
                f"got psi {tuple(psi.shape)} (channels at dim 1) and xi {tuple(xi.shape)} (channels at dim 2)"
            )
        return _fused_attention(psi, xi, self.weights(), valid, 1e-7, return_saliency, self.impl)

    def extra_repr(self) -> str:
        fixed = ", fixed_channel_gate=True" if self.fixed_channel_gate else ""
        return f"psi_channels={self.psi_channels}, xi_channels={self.xi_channels}, impl={self.impl!r}{fixed}"
