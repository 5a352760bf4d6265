"""The generator's pose inputs, built from a batch of keypoints on the keypoints' device.

The loader ships images and keypoints only; the dense pose tensors (about 5.8 MB per sample at
M = 5 and 128x64) are made where the model runs, batched: one ``heatmaps`` call for all the
sources and targets, one ``body_part_affines`` call for the B * M source/target pairs. Training,
evaluation, sampling and generation all go through ``pose_inputs`` (or ``with_pose_inputs`` on a
collated batch), so every path sees the same tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from msgen.pose.heatmaps import HEATMAP_SIGMA, heatmaps
from msgen.pose.parts import body_part_affines

POSE_KEYS = ("source_heatmaps", "target_heatmap", "theta", "part_masks")


def pose_inputs(
    source_kp: Tensor,
    target_kp: Tensor,
    image_size: tuple[int, int],
    valid: Tensor | None = None,
    *,
    heatmap_sigma: float = HEATMAP_SIGMA,
    check: bool = True,
) -> dict[str, Tensor]:
    """Heatmaps, part affines and part masks of a batch of tuples.

    Args:
        source_kp: (B, M, 18, 2) (y, x) pixels at ``image_size``, -1 = missing (padded sources
            have all points missing).
        target_kp: (B, 18, 2).
        image_size: (H, W) of the images.
        valid: (B, M) bool or None (all sources real). A source marked False gets what padding
            gives: zero heatmaps, NULL_THETA and zero part masks, whatever its keypoints.
        check: validate the keypoints' values. That reads them on the host, a sync on a GPU; the
            training step passes False because its loader checked every item where it entered.

    Returns (on the keypoints' device, float32):
        "source_heatmaps" (B, M, 18, H, W), "target_heatmap" (B, 18, H, W),
        "theta" (B, M, 10, 2, 3), "part_masks" (B, M, 10, H, W).
    """
    if source_kp.dim() != 4 or target_kp.dim() != 3 or target_kp.shape[0] != source_kp.shape[0]:
        raise ValueError(
            f"source_kp must be (B, M, 18, 2) and target_kp (B, 18, 2), got {tuple(source_kp.shape)} "
            f"and {tuple(target_kp.shape)}"
        )
    B, M = source_kp.shape[:2]
    if valid is not None and (valid.dtype != torch.bool or tuple(valid.shape) != (B, M)):
        raise ValueError(f"valid must be a bool tensor of shape {(B, M)}, got {valid.dtype} {tuple(valid.shape)}")
    if valid is not None:
        source_kp = torch.where(valid[..., None, None], source_kp, torch.full_like(source_kp, -1.0))
    source_kp, target_kp = source_kp.float(), target_kp.float()
    size = (int(image_size[0]), int(image_size[1]))
    maps = heatmaps(torch.cat([source_kp.flatten(0, 1), target_kp]), size, heatmap_sigma, check=check)
    pairs_target = target_kp[:, None].expand(B, M, *target_kp.shape[1:]).flatten(0, 1)
    theta, masks = body_part_affines(source_kp.flatten(0, 1), pairs_target, size, check=check)
    return {
        "source_heatmaps": maps[: B * M].unflatten(0, (B, M)),
        "target_heatmap": maps[B * M :],
        "theta": theta.unflatten(0, (B, M)),
        "part_masks": masks.unflatten(0, (B, M)),
    }


def with_pose_inputs(batch: dict, image_size: tuple[int, int], **options: object) -> dict:
    """A collated batch (keys "source_kp", "target_kp", optional "valid") plus ``pose_inputs``'
    four tensors, computed on the keypoints' device. ``options`` go to ``pose_inputs``."""
    pose = pose_inputs(batch["source_kp"], batch["target_kp"], image_size, batch.get("valid"), **options)
    return {**batch, **pose}
