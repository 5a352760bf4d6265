"""The multi-source generator G = attention decoder A o two-stream encoder E (METHOD.md).

G takes any number M >= 1 of sources, and a ``valid`` mask (B, M) for batches whose samples have
different M (padded sources are ignored: their skips never enter a mean or an attention). Its
output does not depend on the order of the sources: E encodes each one independently, and both the
mean of Eq. 1 and the attention of Eq. 2-4 are symmetric in the sources.

With ``copy_pixels`` (not in the paper) the output also copies the sources' pixels: each source
image is warped to the target pose with its own part affines and masks (the warp of the level-0
skips, applied to the pixels and to a channel of ones that says where the warp lands), the warped
sources are weighted by the finest attention Att_0 (whose weights sum to 1 over the valid
sources), and a mask t = sigmoid(the decoder's fourth output channel) blends them in:

    image = t * sum_i Att_i * warp(x_i) + (1 - t * sum_i Att_i * coverage_i) * decoded

so where the warps cover the pixel, t mixes the attention's copy and the decoded image, and where
they do not, the decoded image stays. The decoder alone redraws fine detail from features that
every level has blurred; the copy carries it over, and its gradient reaches the attention directly
(docs/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import torch
from torch import Tensor, nn

from msgen.models.config import GeneratorConfig, OpsConfig, ops_config
from msgen.models.decoder import AttentionDecoder
from msgen.models.encoder import TwoStreamEncoder
from msgen.ops import AttentionFusion, part_warp
from msgen.ops.fused_attention import require_a_valid_source
from msgen.pose import POSE_KEYS, one_part_per_pixel, with_pose_inputs


class GeneratorOutput(NamedTuple):
    """image (B, 3, H, W) in [-1, 1]; saliency (B, M, H, W): the channel mean of the finest level's
    attention Att_0^i (1 / M_valid per valid source for the averaging variants, 0 when padded)."""

    image: Tensor
    saliency: Tensor


def _check_inputs(
    config: GeneratorConfig,
    sources: Tensor,
    source_heatmaps: Tensor,
    target_heatmap: Tensor,
    theta: Tensor,
    part_masks: Tensor,
    valid: Tensor | None,
) -> None:
    """Raise ValueError naming the argument whose shape does not fit the batch contract."""
    if sources.dim() != 5 or sources.shape[2] != config.image_channels:
        raise ValueError(
            f"sources must be (B, M, {config.image_channels}, H, W), got {tuple(sources.shape)}"
        )
    B, M, _, H, W = sources.shape
    if (H, W) != tuple(config.image_size):
        raise ValueError(f"sources are {H}x{W}, the generator was built for {config.image_size}")
    P, K = config.parts, config.pose_channels
    expected = {
        "source_heatmaps": (source_heatmaps, (B, M, K, H, W)),
        "target_heatmap": (target_heatmap, (B, K, H, W)),
        "theta": (theta, (B, M, P, 2, 3)),
        "part_masks": (part_masks, (B, M, P, H, W)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
    if valid is not None and (valid.dtype != torch.bool or tuple(valid.shape) != (B, M)):
        raise ValueError(
            f"valid must be a bool tensor of shape (B, M) = {(B, M)}, "
            f"got {valid.dtype} {tuple(valid.shape)}"
        )


class Generator(nn.Module):
    """G: sources and poses -> the person in the target pose, plus per-source saliency maps.

    forward(sources (B, M, 3, H, W) in [-1, 1], source_heatmaps (B, M, 18, H, W),
            target_heatmap (B, 18, H, W), theta (B, M, 10, 2, 3) backward affines in image pixels,
            part_masks (B, M, 10, H, W) in [0, 1], valid (B, M) bool or None = all valid)
        -> GeneratorOutput(image (B, 3, H, W), saliency (B, M, H, W)).
    ``forward_batch(batch)`` takes the dict that ``msgen.data``'s collate produces.
    """

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else GeneratorConfig()
        ops = ops_config(self.config.ops)
        self.encoder = TwoStreamEncoder(self.config, warp_impl=ops.part_warp)
        self.decoder = AttentionDecoder(self.config, fusion_impl=ops.fused_attention)

    def forward(
        self,
        sources: Tensor,
        source_heatmaps: Tensor,
        target_heatmap: Tensor,
        theta: Tensor,
        part_masks: Tensor,
        valid: Tensor | None = None,
    ) -> GeneratorOutput:
        _check_inputs(
            self.config, sources, source_heatmaps, target_heatmap, theta, part_masks, valid
        )
        if valid is not None:
            require_a_valid_source(valid, "Generator")
        skips = self.encoder(sources, source_heatmaps, target_heatmap, theta, part_masks)
        image, saliency = self.decoder(skips, valid)
        if self.config.copies_pixels:
            C = self.config.image_channels
            copied = self.copy_sources(sources, theta, part_masks, saliency, valid)
            image = blend_copy(image[:, :C], image[:, C:], copied)
        return GeneratorOutput(image, saliency)

    def copy_sources(self, sources: Tensor, theta: Tensor, part_masks: Tensor, saliency: Tensor,
                     valid: Tensor | None) -> Tensor:
        """sum_i Att_i * warp([x_i, 1]): (B, C + 1, H, W), the attention-weighted warped sources
        in [-1, 1] times their coverage and, last, the coverage (the same weights on the warp of a
        channel of ones, in [0, 1])."""
        C = sources.shape[2]
        warped = warp_source_pixels(sources, theta, part_masks, mode=self.encoder.warp_mode,
                                    impl=self.encoder.warp_impl)
        if valid is not None:  # a padded source may hold anything; its weight is 0, but 0 * nan is nan
            warped = torch.where(valid[:, :, None, None, None], warped, torch.zeros_like(warped))
        fused = (saliency[:, :, None] * warped).sum(dim=1)
        coverage = fused[:, C:]
        # Back to [-1, 1]: coverage * (2 u - 1) for each source's share.
        return torch.cat([2 * fused[:, :C] - coverage, coverage], dim=1)

    def forward_batch(self, batch: dict[str, Tensor]) -> GeneratorOutput:
        """Run on a collated batch: keys sources, source_kp, target_kp and valid (None or absent:
        all real), as ``msgen.data.collate_tuples`` gives. The pose tensors (source_heatmaps,
        target_heatmap, theta, part_masks) are built on the batch's device by
        ``msgen.pose.pose_inputs`` unless the batch already holds them."""
        if any(key not in batch for key in POSE_KEYS):
            batch = with_pose_inputs(batch, tuple(self.config.image_size))
        return self(
            batch["sources"],
            batch["source_heatmaps"],
            batch["target_heatmap"],
            batch["theta"],
            batch["part_masks"],
            batch.get("valid"),
        )


def warp_source_pixels(sources: Tensor, theta: Tensor, part_masks: Tensor, *, mode: str = "bilinear",
                       impl: str = "auto") -> Tensor:
    """Each source image warped to the target pose with its own part affines and masks
    (``part_warp``), in [0, 1], with one more channel: the warp of a channel of ones, how much of
    the pixel the warp covers. Each pixel comes whole from one part, the most specific that covers
    it (``msgen.pose.one_part_per_pixel``: a limb or the head before the torso, whose mask is the
    whole image), not from part_warp's channel-wise maximum over parts, which could take each
    colour channel from another part and let a brighter background beat a darker limb. In [0, 1]
    because part_warp still takes the maximum with the zeros of the parts not chosen, which in
    [-1, 1] would hide every colour below mid-grey.

    sources (B, M, C, H, W) in [-1, 1], theta (B, M, P, 2, 3), part_masks (B, M, P, H, W)
    -> (B, M, C + 1, H, W)."""
    B, M, C, H, W = sources.shape
    unit = (sources + 1) / 2
    with_ones = torch.cat([unit, torch.ones_like(unit[:, :, :1])], dim=2)
    masks = one_part_per_pixel(part_masks.flatten(0, 1))
    warped = part_warp(with_ones.flatten(0, 1), theta.flatten(0, 1), masks, mode=mode, impl=impl)
    return warped.view(B, M, C + 1, H, W)


def blend_copy(decoded: Tensor, logit: Tensor, copied: Tensor) -> Tensor:
    """t * colour + (1 - t * coverage) * decoded with t = sigmoid(logit): decoded (B, C, H, W) in
    [-1, 1], logit (B, 1, H, W), copied (B, C + 1, H, W) = (colour, coverage) as
    ``Generator.copy_sources`` gives -> (B, C, H, W), in [-1, 1] where coverage <= 1."""
    trust = torch.sigmoid(logit)
    colour, coverage = copied[:, :-1], copied[:, -1:]
    return trust * colour + (1 - trust * coverage) * decoded


def set_ops_impl(model: nn.Module, ops: str | OpsConfig) -> nn.Module:
    """Switch every op call inside model (a Generator, or any module holding one) to ``ops``:
    "reference", "fast" (impl "auto" for both ops) or an explicit OpsConfig. Returns model."""
    ops = ops_config(ops)
    for module in model.modules():
        if isinstance(module, TwoStreamEncoder):
            module.warp_impl = ops.part_warp
        elif isinstance(module, AttentionFusion):
            module.impl = ops.fused_attention
        elif isinstance(module, Generator):
            module.config = replace(module.config, ops=ops)
    return model
