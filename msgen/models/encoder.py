"""The two-stream pose-based encoder E with deformable skips (METHOD.md, "Generator G").

Each source is encoded independently with the same weights: the M sources of a batch are folded
into the batch dimension, (B, M, ...) -> (B * M, ...). Two streams share the layer list:
- source stream on [x_i, H(P(x_i))] (3 + 18 channels),
- pose stream on [H(P(x_i)), H(p_target)] (18 + 18 channels).
Level 0 is a 3x3 convolution; level r >= 1 is LeakyReLU(0.2) -> 4x4 conv, stride 2 -> instance
norm (none on the last level), so level r has stride 2 ** r: a 4x4/stride-2/pad-1 convolution
centres its output pixel i on input coordinate 2i + 1/2, which is the feature-grid convention of
``msgen.pose.affine.affines_at_stride``.

Skip r of source i: xi_r^i = concat(warp(source stream r), pose stream r), where warp is
``msgen.ops.part_warp`` with the image-resolution affines re-expressed at stride 2 ** r and the
part masks average-pooled to the level's size (``msgen.pose.part_masks_at``). Only the first
``warp_levels`` source-stream levels are warped.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from msgen.models.config import GeneratorConfig
from msgen.ops import part_warp
from msgen.pose import affines_at_stride, part_masks_at


def _down_block(in_channels: int, out_channels: int, norm: bool) -> nn.Sequential:
    """LeakyReLU(0.2) -> 4x4 conv, stride 2 -> instance norm (optional): halves H and W.

    A convolution followed by instance norm has no bias: the norm subtracts it again."""
    layers: list[nn.Module] = [
        nn.LeakyReLU(0.2),
        nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=not norm),
    ]
    if norm:
        layers.append(nn.InstanceNorm2d(out_channels, affine=True))
    return nn.Sequential(*layers)


class EncoderStream(nn.Module):
    """One stream of E: (N, C_in, H, W) -> a feature map per level r, (N, c_r, H/2^r, W/2^r)."""

    def __init__(self, in_channels: int, filters: tuple[int, ...]) -> None:
        super().__init__()
        last = len(filters) - 1
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, filters[0], kernel_size=3, padding=1)]
        blocks += [
            _down_block(filters[r - 1], filters[r], norm=r < last) for r in range(1, last + 1)
        ]
        self.levels = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class TwoStreamEncoder(nn.Module):
    """E: encodes every source independently and returns the skips xi_r, one per level.

    forward(sources (B, M, 3, H, W), source_heatmaps (B, M, 18, H, W), target_heatmap (B, 18, H, W),
    theta (B, M, P, 2, 3), part_masks (B, M, P, H, W)) -> [xi_r (B, M, 2 c_r, H / 2^r, W / 2^r)].

    ``warp_impl`` is the ``impl=`` of every part_warp call (see ``msgen.models.set_ops_impl``).
    """

    def __init__(self, config: GeneratorConfig, warp_impl: str = "reference") -> None:
        super().__init__()
        filters = config.encoder_filters
        self.source_stream = EncoderStream(config.image_channels + config.pose_channels, filters)
        self.pose_stream = EncoderStream(2 * config.pose_channels, filters)
        # "avg-nod" is the ablation without deformations: nothing is warped.
        self.warp_levels = 0 if config.variant == "avg-nod" else config.warp_levels
        self.warp_mode = config.warp_mode
        self.warp_impl = warp_impl

    def forward(
        self,
        sources: Tensor,
        source_heatmaps: Tensor,
        target_heatmap: Tensor,
        theta: Tensor,
        part_masks: Tensor,
    ) -> list[Tensor]:
        B, M = sources.shape[:2]
        target_heatmaps = target_heatmap[:, None].expand(-1, M, -1, -1, -1)
        source_input = torch.cat([sources, source_heatmaps], dim=2).flatten(0, 1)
        pose_input = torch.cat([source_heatmaps, target_heatmaps], dim=2).flatten(0, 1)
        source_levels = self.source_stream(source_input)
        pose_levels = self.pose_stream(pose_input)

        theta, part_masks = theta.flatten(0, 1), part_masks.flatten(0, 1)
        skips = []
        for r, (source_features, pose_features) in enumerate(
            zip(source_levels, pose_levels, strict=True)
        ):
            if r < self.warp_levels:
                source_features = part_warp(
                    source_features,
                    affines_at_stride(theta, 2**r),
                    part_masks_at(part_masks, tuple(source_features.shape[-2:])),
                    mode=self.warp_mode,
                    impl=self.warp_impl,
                )
            skip = torch.cat([source_features, pose_features], dim=1)
            skips.append(skip.unflatten(0, (B, M)))
        return skips

    def extra_repr(self) -> str:
        return (
            f"warp_levels={self.warp_levels}, warp_mode={self.warp_mode!r}, "
            f"warp_impl={self.warp_impl!r}"
        )
