"""Multi-source attention fusion (METHOD.md Eq. 2-5): reference, dispatch and module.

For each source i of M, with z_i = concat(psi, xi_i) of Cd + Ce channels:
    g_i[h, w] = sigmoid(g_weight . z_i[:, h, w] + g_bias)                 spatial gate
    f_i[c]    = sigmoid(fc2(relu(fc1(mean_hw z_i))))[c]                    channel gate
    A_i       = max(g_i * f_i, eps)                                        (Ce, H, W)
    Att_i     = A_i / sum over valid j of A_j
    out       = concat(psi, sum_i Att_i * xi_i)                            (B, Cd + Ce, H, W)

The fast path is the Triton kernels in ``msgen.kernels.fused_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMPLS = ("auto", "reference", "triton")


def _check_inputs(
    psi: Tensor,
    xi: Tensor,
    g_weight: Tensor,
    g_bias: Tensor,
    fc1_weight: Tensor,
    fc1_bias: Tensor,
    fc2_weight: Tensor,
    fc2_bias: Tensor,
    valid: Tensor | None,
    eps: float,
) -> None:
    """Raise ValueError naming the argument whose shape, dtype or device is wrong."""
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
    Hd = fc1_weight.shape[0] if fc1_weight.dim() == 2 else -1
    expected = {
        "g_weight": (g_weight, (Cd + Ce,)),
        "g_bias": (g_bias, ()),
        "fc1_weight": (fc1_weight, (Hd, Cd + Ce)),
        "fc1_bias": (fc1_bias, (Hd,)),
        "fc2_weight": (fc2_weight, (Ce, Hd)),
        "fc2_bias": (fc2_bias, (Ce,)),
    }
    for name, (tensor, shape) in expected.items():
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
        if not bool(valid.any(dim=1).all()):
            empty = (~valid.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"valid marks no source for batch samples {empty}: each needs >= 1")


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

    Shapes: psi (B, Cd, H, W), xi (B, M, Ce, H, W), valid (B, M) bool or None.
    Returns out (B, Cd + Ce, H, W) and, with return_saliency, the channel mean of Att (B, M, H, W).
    """
    Cd = psi.shape[1]
    gate_psi = torch.einsum("c,bchw->bhw", g_weight[:Cd], psi)
    gate_xi = torch.einsum("c,bmchw->bmhw", g_weight[Cd:], xi)
    g = torch.sigmoid(gate_psi[:, None] + gate_xi + g_bias)  # (B, M, H, W)

    pooled_psi = psi.mean(dim=(2, 3))[:, None].expand(-1, xi.shape[1], -1)  # (B, M, Cd)
    pooled = torch.cat([pooled_psi, xi.mean(dim=(3, 4))], dim=2)  # (B, M, Cd + Ce)
    hidden = F.relu(F.linear(pooled, fc1_weight, fc1_bias))
    f = torch.sigmoid(F.linear(hidden, fc2_weight, fc2_bias))  # (B, M, Ce)

    A = (g[:, :, None] * f[..., None, None]).clamp_min(eps)  # (B, M, Ce, H, W)
    if valid is not None:
        keep = valid[:, :, None, None, None]
        A = torch.where(keep, A, torch.zeros_like(A))
        xi = torch.where(keep, xi, torch.zeros_like(xi))  # padded sources may hold anything
    att = A / A.sum(dim=1, keepdim=True)
    out = torch.cat([psi, (att * xi).sum(dim=1)], dim=1)
    if return_saliency:
        return out, att.mean(dim=2)
    return out


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
        g_weight, g_bias: (Cd + Ce,) and () the 1x1 conv of the spatial gate.
        fc1_weight, fc1_bias: (Hd, Cd + Ce) and (Hd,); fc2_weight, fc2_bias: (Ce, Hd) and (Ce,).
        valid: (B, M) bool; sources marked False take no part. Each sample needs one valid source.
        eps: lower clamp of A = g * f, keeps the normalisation away from 0 / 0.
        return_saliency: also return the channel mean of Att, (B, M, H, W).
        impl: "reference", "triton" or "auto" (triton where it can run, else the reference).

    Returns:
        (B, Cd + Ce, H, W), and the (B, M, H, W) saliency when asked for.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    args = (psi, xi, g_weight, g_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
    _check_inputs(*args, valid, eps)
    if impl == "auto":
        impl = "reference"  # the Triton path is selected here once it exists
    if impl == "triton":
        raise NotImplementedError("fused_attention: the Triton kernels are not built yet")
    return fused_attention_reference(
        *args, valid=valid, eps=eps, return_saliency=return_saliency
    )


class AttentionFusion(nn.Module):
    """The attention-fusion block of one decoder level, holding its parameters.

    forward(psi (B, Cd, H, W), xi (B, M, Ce, H, W), valid (B, M) or None) -> (B, Cd + Ce, H, W)
    (and the (B, M, H, W) saliency with return_saliency=True).
    """

    def __init__(
        self, psi_channels: int, xi_channels: int, hidden: int | None = None, *, impl: str = "auto"
    ) -> None:
        super().__init__()
        if psi_channels < 1 or xi_channels < 1:
            raise ValueError(f"channel counts must be >= 1, got {psi_channels}, {xi_channels}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        z = psi_channels + xi_channels
        hidden = hidden if hidden is not None else max(z // 4, 1)
        self.psi_channels, self.xi_channels, self.impl = psi_channels, xi_channels, impl
        self.gate = nn.Conv2d(z, 1, kernel_size=1)  # g: one value per pixel
        self.fc1 = nn.Linear(z, hidden)  # f: one value per channel of xi
        self.fc2 = nn.Linear(hidden, xi_channels)

    def forward(
        self, psi: Tensor, xi: Tensor, valid: Tensor | None = None, return_saliency: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        return fused_attention(
            psi,
            xi,
            self.gate.weight.view(-1),
            self.gate.bias.view(()),
            self.fc1.weight,
            self.fc1.bias,
            self.fc2.weight,
            self.fc2.bias,
            valid=valid,
            return_saliency=return_saliency,
            impl=self.impl,
        )

    def extra_repr(self) -> str:
        return f"psi_channels={self.psi_channels}, xi_channels={self.xi_channels}, impl={self.impl!r}"
