"""Periodic SSIM / mask-SSIM of the generator on held-out persons (``msgen.metrics``' protocol).

The same held-out tuples are scored at every M the run trains at, truncated to their first M
sources. mask-SSIM masks both images with the person mask of the TARGET keypoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from msgen.data import TupleDataset, collate_tuples
from msgen.metrics import mask_ssim, ssim, to_uint8
from msgen.training.data import to_device


@torch.no_grad()
def evaluate(
    generator: nn.Module,
    dataset: TupleDataset,
    count: int,
    num_sources: Iterable[int],
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], object],
) -> dict[str, float]:
    """SSIM and mask-SSIM over the first ``count`` tuples of ``dataset`` at each M.

    Returns {"ssim_m<M>", "mask_ssim_m<M>"} per M and their means over M as "ssim", "mask_ssim"
    (the run's "best" checkpoint maximises "mask_ssim").
    """
    count = min(count, len(dataset))
    metrics: dict[str, float] = {}
    for m in sorted(set(num_sources)):
        scores, masked = [], []
        for start in range(0, count, batch_size):
            items = [dataset[(i, m)] for i in range(start, min(start + batch_size, count))]
            batch = to_device(collate_tuples(items), device)
            with autocast():
                image = generator.forward_batch(batch).image
            fake, real = to_uint8(image.float()), to_uint8(batch["target"])
            kps = batch["target_kp"].cpu().numpy()
            for g, t, kp in zip(fake, real, kps):
                scores.append(ssim(g, t))
                masked.append(mask_ssim(g, t, kp))
        metrics[f"ssim_m{m}"] = float(np.mean(scores))
        metrics[f"mask_ssim_m{m}"] = float(np.mean(masked))
    ms = sorted(set(num_sources))
    metrics["ssim"] = float(np.mean([metrics[f"ssim_m{m}"] for m in ms]))
    metrics["mask_ssim"] = float(np.mean([metrics[f"mask_ssim_m{m}"] for m in ms]))
    return metrics
