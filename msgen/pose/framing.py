"""Cropping a photo around its person to the model's frame, in the datasets' framing.

The model has only seen people framed as the dataset frames them: standing upright, centred, the
shoulders a fifth of the way down and the ankles near the bottom. A photo is cropped and resized
so that its person lands there: the shoulders' midpoint at SHOULDER_Y, the torso's centre at
CENTRE_X, and the longest visible vertical span (shoulders to ankles, else to knees, else to hips)
as long as the dataset's median of that span. Parts of the frame beyond the photo are filled with
the photo's median border colour.

The positions are the medians of the 27,052 usable poses of the public Market-1501 annotations
(../shared/data/market-keypoints, both files, 128x64), as fractions of the frame so that they
apply at any model size (tests/test_pose_framing.py re-measures them):
shoulder midpoint y 25, hip midpoint y 63, knee midpoint y 89 (24,362 poses with both knees),
ankle midpoint y 113 (19,185 with both ankles), torso centre x 32 of 64.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from msgen.pose.keypoints import KEYPOINT_INDEX, MISSING, present

# Pixel rows (columns for CENTRE_X) in a 128x64 frame; used as (index + 0.5) / 128 fractions.
REFERENCE_SIZE = (128, 64)
SHOULDER_Y = 25.0
HIP_Y = 63.0
KNEE_Y = 89.0
ANKLE_Y = 113.0
CENTRE_X = 32.0

_PAIRS = {"shoulder": ("Rsho", "Lsho"), "hip": ("Rhip", "Lhip"), "knee": ("Rkne", "Lkne"), "ankle": ("Rank", "Lank")}
_REFERENCE_Y = {"hip": HIP_Y, "knee": KNEE_Y, "ankle": ANKLE_Y}


def _midpoint(kp: np.ndarray, joint: str) -> np.ndarray | None:
    index = [KEYPOINT_INDEX[n] for n in _PAIRS[joint]]
    return kp[index].mean(0) if present(kp)[index].all() else None


def framing_box(kp: np.ndarray, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The (left, top, right, bottom) box, in the photo's continuous pixel coordinates (pixel i
    spans [i, i + 1)), that becomes the (H, W) frame. kp (18, 2) (y, x) must hold the four torso points."""
    H, W = size
    shoulder, hip = _midpoint(kp, "shoulder"), _midpoint(kp, "hip")
    if shoulder is None or hip is None:
        raise ValueError("framing needs both shoulders and both hips")
    for joint in ("ankle", "knee", "hip"):
        end = _midpoint(kp, joint)
        if end is not None and end[0] - shoulder[0] > 1:
            break
    else:  # the hips are not below the shoulders (a person lying down): size by the torso's length
        joint, end = "hip", shoulder + np.array([max(1.0, float(np.linalg.norm(hip - shoulder))), 0.0])
    # Photo pixels per frame pixel: the span's length over the reference span's, at the frame's height.
    reference_span = (_REFERENCE_Y[joint] - SHOULDER_Y) / REFERENCE_SIZE[0] * H
    scale = (end[0] - shoulder[0]) / reference_span
    centre_x = (shoulder[1] + hip[1]) / 2 + 0.5
    top = shoulder[0] + 0.5 - (SHOULDER_Y + 0.5) / REFERENCE_SIZE[0] * H * scale
    left = centre_x - (CENTRE_X + 0.5) / REFERENCE_SIZE[1] * W * scale
    return float(left), float(top), float(left + W * scale), float(top + H * scale)


def frame_person(image: np.ndarray, kp: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop and resize a uint8 photo (h, w, 3) around its person to the frame (H, W).

    Returns the framed uint8 (H, W, 3) image and the keypoints (18, 2) in its pixels; a keypoint
    that falls outside the frame becomes missing (-1).
    """
    H, W = size
    left, top, right, bottom = framing_box(kp, size)
    h, w = image.shape[:2]
    # Pad the photo so that the box lies inside it, then resize the box (Lanczos: photos are
    # usually shrunk a lot, and a plain affine resampling would alias).
    pad = [max(0, int(np.ceil(-top))), max(0, int(np.ceil(bottom - h))), max(0, int(np.ceil(-left))), max(0, int(np.ceil(right - w)))]
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = np.median(border, axis=0).astype(np.uint8)
    canvas = np.empty((h + pad[0] + pad[1], w + pad[2] + pad[3], 3), np.uint8)
    canvas[:] = fill
    canvas[pad[0]: pad[0] + h, pad[2]: pad[2] + w] = image
    box = (left + pad[2], top + pad[0], right + pad[2], bottom + pad[0])
    framed = np.asarray(Image.fromarray(canvas).resize((W, H), Image.LANCZOS, box=box))
    scale = (right - left) / W
    mapped = (kp + 0.5 - np.array([top, left])) / scale - 0.5
    inside = present(kp) & (mapped[:, 0] > -0.5) & (mapped[:, 0] < H - 0.5) & (mapped[:, 1] > -0.5) & (mapped[:, 1] < W - 0.5)
    mapped = np.clip(mapped, 0, np.array([H - 1, W - 1]))
    return framed, np.where(inside[:, None], mapped, float(MISSING)).astype(np.float32)


def measure_framing(poses: np.ndarray) -> dict[str, float]:
    """The medians that the framing constants are, measured on poses (N, 18, 2) (y, x) of one
    image size: shoulder, hip, knee and ankle midpoint rows and the torso centre column, each over
    the usable poses that have that pair of points."""
    poses = np.asarray(poses, dtype=np.float64)
    ok = present(poses)
    torso = ok[:, [KEYPOINT_INDEX[n] for n in ("Rsho", "Lsho", "Rhip", "Lhip")]].all(1)
    result = {}
    for joint in _PAIRS:
        index = [KEYPOINT_INDEX[n] for n in _PAIRS[joint]]
        has = torso & ok[:, index].all(1)
        result[f"{joint}_y"] = float(np.median(poses[has][:, index, 0].mean(1)))
    sh = poses[torso][:, [KEYPOINT_INDEX["Rsho"], KEYPOINT_INDEX["Lsho"]], 1].mean(1)
    hp = poses[torso][:, [KEYPOINT_INDEX["Rhip"], KEYPOINT_INDEX["Lhip"]], 1].mean(1)
    result["centre_x"] = float(np.median((sh + hp) / 2))
    return result
