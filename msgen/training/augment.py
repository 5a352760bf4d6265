"""Training-time augmentation of a collated batch: horizontal flips and colour jitter.

Each acts per sample and identically on all of its images (the M sources and the target), so a
sample still shows one person whose target its sources explain: a mirrored tuple is the same person
photographed in a mirror (keypoints mirrored, right and left swapped), a jittered one the same
person under another camera's colours. Mirroring or jittering the sources apart from the target
would ask the generator for something its sources do not show.

The random draws come from the default generator of the batch's device, which msgen.train seeds,
saves in every checkpoint and restores on --resume, so a resumed run draws what an uninterrupted one
would. They are made on that device: no copy from the host, no host synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from msgen.pose import mirror_keypoints

# ITU-R BT.601 luma, the grey that contrast and saturation move towards (torchvision's too).
_LUMA = (0.299, 0.587, 0.114)


def _luma(u: Tensor) -> Tensor:
    """(..., 3, H, W) -> (..., 1, H, W); scalar weights, so no constant tensor is made per call."""
    r, g, b = u.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b)[..., None, :, :]


def jitter_colours(images: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor) -> Tensor:
    """images (B, K, 3, H, W) in [-1, 1]; factors (B,) for the K images of each sample.

    In [0, 1]: u * brightness, then (u - mean grey) * contrast + mean grey (the image's mean luma),
    then (u - grey) * saturation + grey (each pixel's luma), clamped to [0, 1] after each step.
    A factor of 1 leaves an image as it is (up to rounding)."""
    shape = (-1, 1, 1, 1, 1)
    u = ((images + 1) / 2 * brightness.to(images).view(shape)).clamp(0, 1)
    grey = _luma(u).mean((3, 4), keepdim=True)
    u = ((u - grey) * contrast.to(images).view(shape) + grey).clamp(0, 1)
    grey = _luma(u)
    u = ((u - grey) * saturation.to(images).view(shape) + grey).clamp(0, 1)
    return u * 2 - 1


def augment_batch(
    batch: dict, flip: float = 0.0, color_jitter: float = 0.0, generator: torch.Generator | None = None
) -> dict:
    """A collated batch (``msgen.data.collate_tuples``) with each sample mirrored with probability
    ``flip`` and its colours jittered with strength ``color_jitter`` (brightness, contrast and
    saturation factors each drawn uniformly from [1 - s, 1 + s] per sample; ``jitter_colours``).

    Shapes: "sources" (B, M, 3, H, W), "source_kp" (B, M, 18, 2), "target" (B, 3, H, W),
    "target_kp" (B, 18, 2). Mirroring flips every image of the sample along W and its keypoints by
    ``msgen.pose.mirror_keypoints``. Padded sources (valid False) are returned unchanged. The batch is not modified; the other entries are shared. generator None: the default
    generator of the batch's device (else a generator on that device).
    """
    if not 0 <= flip <= 1:
        raise ValueError(f"flip must be a probability in [0, 1], got {flip}")
    if not 0 <= color_jitter < 1:
        raise ValueError(f"color_jitter must be in [0, 1), got {color_jitter}")
    if flip == 0 and color_jitter == 0:
        return batch
    sources, target = batch["sources"], batch["target"]
    B, M = sources.shape[:2]
    W = sources.shape[-1]
    # (B, M + 1, ...): the target as one more image of its sample.
    images = given_images = torch.cat([sources, target[:, None]], dim=1)
    kp = given_kp = torch.cat([batch["source_kp"], batch["target_kp"][:, None]], dim=1)
    if flip > 0:
        mirrored = torch.rand(B, generator=generator, device=images.device) < flip
        images = torch.where(mirrored.view(B, 1, 1, 1, 1), images.flip(-1), images)
        kp = torch.where(mirrored.view(B, 1, 1, 1), mirror_keypoints(kp, W), kp)
    if color_jitter > 0:
        factors = 1 + color_jitter * (2 * torch.rand(3, B, generator=generator, device=images.device) - 1)
        images = jitter_colours(images, *factors)
    valid = batch.get("valid")
    if valid is not None:  # padded sources stay the zeros (and -1 keypoints) the collate made
        keep = torch.cat([valid, valid.new_ones(B, 1)], dim=1)
        images = torch.where(keep.view(B, M + 1, 1, 1, 1), images, given_images)
        kp = torch.where(keep.view(B, M + 1, 1, 1), kp, given_kp)
    return {**batch, "sources": images[:, :M], "target": images[:, M], "source_kp": kp[:, :M],
            "target_kp": kp[:, M]}
