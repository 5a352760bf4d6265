"""The PatchGAN discriminator D shared over the sources (METHOD.md, Eq. 6-7).

D scores an image x (real target or generated) against one source i on
concat(x, H(p_target), x_i, H(P(x_i))) = 3 + 18 + 3 + 18 = 42 channels. The M pairs of a sample
are folded into the batch, so one set of weights scores every source. Layers: 4x4 stride-2 conv 64
(no norm), then LeakyReLU(0.2) -> 4x4 stride-2 conv -> instance norm with 128, 256, 512 filters,
then LeakyReLU(0.2) -> 3x3 conv to 1 channel (stride 1, padding 1, so the patch grid stays at
H/16 x W/16: 8x4 patches for 128x64 images).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from msgen.models.config import DiscriminatorConfig


class Discriminator(nn.Module):
    """D: forward(image (B, 3, H, W), target_heatmap (B, 18, H, W), sources (B, M, 3, H, W),
    source_heatmaps (B, M, 18, H, W)) -> logits (B, M, 1, H / 16, W / 16), one map per source.

    Logits of padded sources are computed but meaningless; the losses drop them through ``valid``.
    """

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else DiscriminatorConfig()
        filters = self.config.filters
        layers: list[nn.Module] = [
            nn.Conv2d(self.config.in_channels, filters[0], kernel_size=4, stride=2, padding=1)
        ]
        for in_channels, out_channels in zip(filters[:-1], filters[1:], strict=True):
            layers += [
                nn.LeakyReLU(0.2),
                # No bias: the instance norm after it would subtract it again.
                nn.Conv2d(
                    in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False
                ),
                nn.InstanceNorm2d(out_channels, affine=True),
            ]
        layers += [nn.LeakyReLU(0.2), nn.Conv2d(filters[-1], 1, kernel_size=3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(
        self, image: Tensor, target_heatmap: Tensor, sources: Tensor, source_heatmaps: Tensor
    ) -> Tensor:
        if sources.dim() != 5:
            raise ValueError(f"sources must be (B, M, C, H, W), got {tuple(sources.shape)}")
        B, M = sources.shape[:2]
        conditioned = torch.cat([image, target_heatmap], dim=1)  # (B, 21, H, W)
        pairs = torch.cat(
            [conditioned[:, None].expand(-1, M, -1, -1, -1), sources, source_heatmaps], dim=2
        )
        if pairs.shape[2] != self.config.in_channels:
            raise ValueError(
                f"D expects {self.config.in_channels} input channels in all, got {pairs.shape[2]} "
                f"(image {tuple(image.shape)}, target_heatmap {tuple(target_heatmap.shape)}, "
                f"sources {tuple(sources.shape)}, source_heatmaps {tuple(source_heatmaps.shape)})"
            )
        return self.net(pairs.flatten(0, 1)).unflatten(0, (B, M))
