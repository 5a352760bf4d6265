"""The attention decoder A (METHOD.md, "Generator G", Eq. 1-5) and the ablations' fusions.

Levels are numbered as in the encoder: 0 is the finest (stride 1), R = levels - 1 the deepest
(METHOD.md counts the same levels 1 .. R + 1; its "Att_1" is our level 0).
- phi_R = mean over the valid sources of xi_R^i                                   (Eq. 1)
- psi_r = IN(conv3x3(upsample2x(ReLU(phi_{r+1}))))   with Cd_r channels
- phi_r = fusion_r(psi_r, xi_r) = concat(psi_r, F_r)                              (Eq. 2-5)
- image = tanh(conv3x3(ReLU(phi_0)))
  (with ``copy_pixels`` the same conv also gives one more channel, the logit of the mask with
  which ``msgen.models.generator`` blends in the warped source pixels; it is returned untouched)
With ``coarse_attention`` (the published code's variant) every source's skip xi_r^i gains one
channel before the fusion: its share of the coarser level's attention, M_valid times the channel
mean of Att_{r+1}^i upsampled x2 (1 everywhere at the deepest fused level, whose coarser level is
the plain mean of Eq. 1). The gates g and f of level r then see which source the level below
preferred there: deep levels see the whole pose and can tell a matching view, the finest level's
3x3 receptive field cannot (docs/RESULTS.md).
Channels: Cd_r is the encoder's per-stream filter count of level r (the decoder mirrors the
encoder, as a U-Net does) and Ce_r = 2 c_r, so phi_r has c_r + 2 c_r channels.

Fusions per variant (all share forward(psi, xi, valid, return_saliency)):
- "full": ``msgen.ops.AttentionFusion`` (Eq. 3, spatial gate g times channel gate f).
- "att2d": ``SpatialAttentionFusion``: the same op with f fixed. Its FC weights and biases are
  zero buffers, so f = sigmoid(0) = 1/2 for every channel and source; a constant f cancels in the
  normalisation of Eq. 4, leaving Att_i = g_i / sum_j g_j (spatial attention only).
- "avg", "avg-nod": ``AverageFusion``: F_r = mean of xi_r over the valid sources, no parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from msgen.models.config import GeneratorConfig
from msgen.ops import AttentionFusion


def masked_source_mean(xi: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of xi (B, M, C, H, W) over the sources marked valid (B, M) -> (B, C, H, W)."""
    if valid is None:
        return xi.mean(dim=1)
    keep = valid[:, :, None, None, None]
    weights = keep.to(xi.dtype)
    # torch.where, not a product: a padded source may hold anything, even non-finite values.
    total = torch.where(keep, xi, torch.zeros_like(xi)).sum(dim=1)
    return total / weights.sum(dim=1)


def uniform_saliency(xi: Tensor, valid: Tensor | None) -> Tensor:
    """The saliency of an average, 1 / M_valid on each valid source: (B, M, H, W)."""
    B, M, _, H, W = xi.shape
    if valid is None:
        return xi.new_full((B, M, H, W), 1.0 / M)
    weights = valid.to(xi.dtype)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights[:, :, None, None].expand(B, M, H, W)


class AverageFusion(nn.Module):
    """phi = concat(psi, mean of the valid xi_i): the "avg" and "avg-nod" ablations."""

    def forward(
        self, psi: Tensor, xi: Tensor, valid: Tensor | None = None, return_saliency: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        out = torch.cat([psi, masked_source_mean(xi, valid)], dim=1)
        if return_saliency:
            return out, uniform_saliency(xi, valid)
        return out


class SpatialAttentionFusion(AttentionFusion):
    """The "att2d" ablation: ``AttentionFusion`` with the channel gate f held constant
    (``fixed_channel_gate``: only the spatial gate g, a 1x1 conv, is learned; see the module
    docstring for why a constant f = 1/2 is the same as removing f)."""

    def __init__(self, psi_channels: int, xi_channels: int, *, impl: str = "reference") -> None:
        super().__init__(psi_channels, xi_channels, impl=impl, fixed_channel_gate=True)


def _fusion(config: GeneratorConfig, psi_channels: int, xi_channels: int, impl: str) -> nn.Module:
    if config.variant == "full":
        # "paper": (Cd + Ce) / 4 hidden units; "code": Ce / 4, as the published implementation.
        z = psi_channels + xi_channels if config.fc_hidden == "paper" else xi_channels
        return AttentionFusion(psi_channels, xi_channels, hidden=max(z // 4, 1), impl=impl)
    if config.variant == "att2d":
        return SpatialAttentionFusion(psi_channels, xi_channels, impl=impl)
    return AverageFusion()


def _up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """ReLU -> nearest upsample x2 -> 3x3 conv (no bias: the norm removes it) -> instance norm:
    phi_{r+1} -> psi_r."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.InstanceNorm2d(out_channels, affine=True),
    )


class AttentionDecoder(nn.Module):
    """A: skips [xi_r (B, M, Ce_r, H / 2^r, W / 2^r)] and valid (B, M) -> image (B, 3, H, W) and the
    finest level's saliency (B, M, H, W).

    ``fusion_impl`` is the ``impl=`` of every fused_attention call (see ``set_ops_impl``).
    """

    def __init__(self, config: GeneratorConfig, fusion_impl: str = "reference") -> None:
        super().__init__()
        Cd, Ce = config.decoder_filters, config.skip_channels
        R = config.levels - 1
        # The averaging variants have no attention to pass down.
        self.coarse_attention = config.coarse_attention and config.variant in ("full", "att2d")
        extra = 1 if self.coarse_attention else 0
        fused = [Ce[r] + extra for r in range(R)]
        phi_channels = [Cd[r] + fused[r] for r in range(R)] + [Ce[R]]
        self.up = nn.ModuleList([_up_block(phi_channels[r + 1], Cd[r]) for r in range(R)])
        self.fusion = nn.ModuleList([_fusion(config, Cd[r], fused[r], fusion_impl) for r in range(R)])
        self.image_channels = config.image_channels
        out_channels = config.image_channels + (1 if config.copies_pixels else 0)
        # The tanh is applied in forward, to the image channels only (indices kept: 0 ReLU, 1 conv).
        self.to_image = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(phi_channels[0], out_channels, kernel_size=3, padding=1),
        )

    def forward(self, skips: list[Tensor], valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """-> (image (B, 3, H, W) in [-1, 1], or (B, 4, H, W) with copy_pixels: the image and the
        copy mask's logit; saliency (B, M, H, W))."""
        phi = masked_source_mean(skips[-1], valid)
        saliency = None
        for r in reversed(range(len(self.up))):
            psi = self.up[r](phi)
            xi = skips[r]
            if self.coarse_attention:
                xi = torch.cat([xi, _coarse_share(saliency, xi, valid)], dim=2)
            if r == 0 or self.coarse_attention:
                phi, saliency = self.fusion[r](psi, xi, valid, return_saliency=True)
            else:
                phi = self.fusion[r](psi, xi, valid)
        out = self.to_image(phi)
        C = self.image_channels
        return torch.cat([torch.tanh(out[:, :C]), out[:, C:]], dim=1), saliency


def _coarse_share(saliency: Tensor | None, xi: Tensor, valid: Tensor | None) -> Tensor:
    """Each source's share of the coarser level's attention at xi's resolution: (B, M, 1, H, W).

    saliency (B, M, H / 2, W / 2) times M_valid, nearest-upsampled x2 (the decoder's own upsampling);
    None (the deepest fused level, below which Eq. 1 averages) gives 1 for every valid source.
    Padded sources get 0, which the fusion ignores anyway."""
    B, M, _, H, W = xi.shape
    if saliency is None:
        share = uniform_saliency(xi, valid)
    else:
        share = nn.functional.interpolate(saliency, size=(H, W), mode="nearest")
    count = M if valid is None else valid.sum(dim=1).to(xi.dtype)[:, None, None, None]
    return (share * count)[:, :, None]
