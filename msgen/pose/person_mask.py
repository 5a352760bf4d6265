"""Ma et al.'s person mask, the region that mask-SSIM and mask-IS score (METHOD.md, "Evaluation")."""

from __future__ import annotations

import numpy as np
import torch
from skimage.draw import disk, polygon
from skimage.morphology import closing

from msgen.pose.keypoints import LIMBS, check_keypoints, present

# Half-width of the limb segments and radius of the joint disks, in pixels (the published code's
# point_radius: a segment is the 8-px-wide band whose ends are the 4-px disks at its joints).
RADIUS = 4
CLOSING_SIZE = 5


def person_mask(kp: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The union of bands along the skeleton's LIMBS and disks at the joints, closed with a 5x5 square.

    kp (18, 2) as (y, x) pixels: pass the TARGET's keypoints (the published evaluation code used a
    source's by mistake). size (H, W). Returns bool (H, W); all False for a pose with no points.
    """
    check_keypoints(kp, name="kp")
    kp = kp.detach().cpu().numpy() if isinstance(kp, torch.Tensor) else np.asarray(kp)
    if kp.shape != (18, 2):
        raise ValueError(f"kp must be one pose (18, 2), got {kp.shape}")
    H, W = size
    if H < 1 or W < 1:
        raise ValueError(f"size must be two positive ints (H, W), got {size}")
    kp = kp.astype(np.float64)
    ok = present(kp)
    mask = np.zeros((H, W), dtype=bool)
    for a, b in LIMBS:
        if not (ok[a] and ok[b]):
            continue
        along = kp[b] - kp[a]
        length = np.hypot(*along)
        if length == 0:  # the joint disk already covers a zero-length segment
            continue
        normal = RADIUS * np.array([-along[1], along[0]]) / length
        corners = np.stack([kp[a] + normal, kp[a] - normal, kp[b] - normal, kp[b] + normal])
        rr, cc = polygon(corners[:, 0], corners[:, 1], shape=(H, W))
        mask[rr, cc] = True
    for y, x in kp[ok]:
        rr, cc = disk((y, x), RADIUS, shape=(H, W))
        mask[rr, cc] = True
    return closing(mask, np.ones((CLOSING_SIZE, CLOSING_SIZE), dtype=bool))
