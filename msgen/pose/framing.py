"""Cropping a photo around its person to the model's frame, in its training data's framing.

The model has only seen people framed as its dataset frames them. A photo is cropped and resized
(never squeezed: one scale for both axes) so that its person lands where the dataset puts people:
the shoulders' midpoint at ``shoulder_y``, the torso's centre at ``centre_x``, and the longest
visible vertical span (shoulders to ankles, else to knees, else to hips) as long as the dataset's
median of that span. So a close-up without legs keeps the scale its visible body has in the
dataset (sized by the torso), and the frame below the photo's edge is filled with the photo's
median border colour. Parts of the frame beyond the photo get that colour too.

Framings (``FRAMINGS``, the name a dataset folder and a model's configuration record):
- "market": the Market-1501 crops. Medians of the 27,052 usable poses of the public Market
  annotations (../shared/data/market-keypoints, both files, 128x64; tests/test_pose_framing.py
  re-measures them): shoulder midpoint row 25, hip 63, knee 89 (24,362 poses with both knees),
  ankle 113 (19,185 with both ankles), torso centre column 32 of 64.
- "full-body": full-body fashion photos (a person standing head to feet filling the frame's
  height, centred). Not measured here (no such annotations are at hand): the rows follow a
  standing adult's proportions with the head's top 4 % below the frame's top and the soles
  4 % above its bottom (docs/POSE.md).
Both are fractions of the frame, so they apply at any model size and aspect ratio.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from msgen.errors import UsageError
from msgen.pose.keypoints import KEYPOINT_INDEX, MISSING, present

# Market's medians in pixel rows (columns for CENTRE_X) of a 128x64 frame.
REFERENCE_SIZE = (128, 64)
SHOULDER_Y = 25.0
HIP_Y = 63.0
KNEE_Y = 89.0
ANKLE_Y = 113.0
CENTRE_X = 32.0

_PAIRS = {"shoulder": ("Rsho", "Lsho"), "hip": ("Rhip", "Lhip"), "knee": ("Rkne", "Lkne"), "ankle": ("Rank", "Lank")}
LEGS = ("Rkne", "Lkne", "Rank", "Lank")
# A change of aspect ratio by more than this share is worth a warning.
ASPECT_TOLERANCE = 0.05


@dataclass(frozen=True)
class Framing:
    """Where a dataset puts its people: rows as fractions of the frame's height, measured at pixel
    centres ((row + 0.5) / H), and the torso centre's column as a fraction of its width."""

    name: str
    shoulder_y: float
    hip_y: float
    knee_y: float
    ankle_y: float
    centre_x: float

    def row(self, joint: str, height: int) -> float:
        """The pixel row of ``joint`` ("shoulder", "hip", "knee", "ankle") in a frame ``height`` high."""
        return getattr(self, f"{joint}_y") * height - 0.5


def _fraction(pixel: float, length: int) -> float:
    return (pixel + 0.5) / length


MARKET = Framing(
    "market", _fraction(SHOULDER_Y, 128), _fraction(HIP_Y, 128), _fraction(KNEE_Y, 128), _fraction(ANKLE_Y, 128),
    _fraction(CENTRE_X, 64),
)  # fmt: skip
# A standing adult is about 7.5 heads tall: shoulders 1.5 heads below the top of the head, hip
# joints 3.9, knees 5.5, ankles 7.2 (soles 7.5). Scaled to span 4 % .. 96 % of the frame's height.
FULL_BODY = Framing("full-body", 0.04 + 0.92 * 1.5 / 7.5, 0.04 + 0.92 * 3.9 / 7.5, 0.04 + 0.92 * 5.5 / 7.5,
                    0.04 + 0.92 * 7.2 / 7.5, 0.5)  # fmt: skip
FRAMINGS = {framing.name: framing for framing in (MARKET, FULL_BODY)}
DEFAULT_FRAMING = "market"


def get_framing(framing: str | Framing | None) -> Framing:
    """A Framing by name (None: the default, "market", which checkpoints without one used)."""
    if isinstance(framing, Framing):
        return framing
    name = DEFAULT_FRAMING if framing is None else framing
    if name not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, got {name!r}")
    return FRAMINGS[name]


def model_framing(config: object | None) -> Framing:
    """The framing a model's training data used: ``config.data.framing`` of its training
    configuration, "market" where the configuration records none (models trained before framings
    were recorded; all used Market's)."""
    return get_framing(getattr(getattr(config, "data", None), "framing", None))


def _midpoint(kp: np.ndarray, joint: str) -> np.ndarray | None:
    index = [KEYPOINT_INDEX[n] for n in _PAIRS[joint]]
    return kp[index].mean(0) if present(kp)[index].all() else None


def has_legs(kp: np.ndarray) -> bool:
    """Whether a pose (18, 2) shows a knee or an ankle."""
    return bool(present(kp)[[KEYPOINT_INDEX[n] for n in LEGS]].any())


def framing_box(
    kp: np.ndarray, size: tuple[int, int], framing: str | Framing | None = None
) -> tuple[float, float, float, float]:
    """The (left, top, right, bottom) box, in the photo's continuous pixel coordinates (pixel i
    spans [i, i + 1)), that becomes the (H, W) frame. kp (18, 2) (y, x) must hold the four torso
    points. The box has the frame's aspect ratio: one scale for both axes."""
    framing = get_framing(framing)
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
    reference_span = (getattr(framing, f"{joint}_y") - framing.shoulder_y) * H
    scale = (end[0] - shoulder[0]) / reference_span
    centre_x = (shoulder[1] + hip[1]) / 2 + 0.5
    top = shoulder[0] + 0.5 - framing.shoulder_y * H * scale
    left = centre_x - framing.centre_x * W * scale
    return float(left), float(top), float(left + W * scale), float(top + H * scale)


def _map_keypoints(kp: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """Keypoints (18, 2) of the photo in the pixels of the (H, W) frame that ``box`` becomes; a
    point outside the frame becomes missing."""
    H, W = size
    left, top, right, _ = box
    scale = (right - left) / W
    mapped = (kp + 0.5 - np.array([top, left])) / scale - 0.5
    inside = present(kp) & (mapped[:, 0] > -0.5) & (mapped[:, 0] < H - 0.5) & (mapped[:, 1] > -0.5) & (mapped[:, 1] < W - 0.5)
    mapped = np.clip(mapped, 0, np.array([H - 1, W - 1]))
    return np.where(inside[:, None], mapped, float(MISSING)).astype(np.float32)


def frame_keypoints(kp: np.ndarray, size: tuple[int, int], framing: str | Framing | None = None) -> np.ndarray:
    """A pose (18, 2) (y, x) of any image, placed in the (H, W) frame as ``frame_person`` places
    its photo's person (one scale for both axes; points leaving the frame become missing)."""
    kp = np.asarray(kp, dtype=np.float32)
    return _map_keypoints(kp, framing_box(kp, size, framing), size)


def frame_person(
    image: np.ndarray, kp: np.ndarray, size: tuple[int, int], framing: str | Framing | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Crop and resize a uint8 photo (h, w, 3) around its person to the frame (H, W).

    Returns the framed uint8 (H, W, 3) image and the keypoints (18, 2) in its pixels; a keypoint
    that falls outside the frame becomes missing (-1).
    """
    H, W = size
    box = framing_box(kp, size, framing)
    left, top, right, bottom = box
    h, w = image.shape[:2]
    # Pad the photo so that the box lies inside it, then resize the box (Lanczos: photos are
    # usually shrunk a lot, and a plain affine resampling would alias).
    pad = [max(0, int(np.ceil(-top))), max(0, int(np.ceil(bottom - h))), max(0, int(np.ceil(-left))), max(0, int(np.ceil(right - w)))]
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = np.median(border, axis=0).astype(np.uint8)
    canvas = np.empty((h + pad[0] + pad[1], w + pad[2] + pad[3], 3), np.uint8)
    canvas[:] = fill
    canvas[pad[0]: pad[0] + h, pad[2]: pad[2] + w] = image
    padded_box = (left + pad[2], top + pad[0], right + pad[2], bottom + pad[0])
    framed = np.asarray(Image.fromarray(canvas).resize((W, H), Image.LANCZOS, box=padded_box))
    return framed, _map_keypoints(np.asarray(kp, dtype=np.float32), box, size)


def aspect_change(from_size: tuple[int, int], to_size: tuple[int, int]) -> float:
    """How much resizing (h, w) to (H, W) stretches people vertically relative to horizontally:
    (H / h) / (W / w); 1 keeps their shape."""
    return (to_size[0] / from_size[0]) / (to_size[1] / from_size[1])


def warn_if_squeezed(sizes: Iterable[tuple[int, int]], size: tuple[int, int], what: str, remedy: str = "") -> str | None:
    """Warn once (one UserWarning for all ``sizes``) when resizing images of ``sizes`` (h, w) to
    ``size`` (H, W) changes their aspect ratio by more than ASPECT_TOLERANCE; returns the message
    (None: no change). ``what`` names the images; ``remedy`` is appended."""
    counts: dict[tuple[int, int], int] = {}
    for s in sizes:
        s = (int(s[0]), int(s[1]))
        if abs(aspect_change(s, size) - 1) > ASPECT_TOLERANCE:
            counts[s] = counts.get(s, 0) + 1
    if not counts:
        return None
    (h, w), n = max(counts.items(), key=lambda item: item[1])
    others = sum(counts.values()) - n
    H, W = size
    ratio = aspect_change((h, w), size)
    message = (
        f"{what}: {n} image(s) of {h}x{w} (HxW){f' and {others} of other sizes' if others else ''} are resized to "
        f"{H}x{W}, which changes their aspect ratio: people come out {ratio:.2f}x as tall relative to their width"
        f"{f'; {remedy}' if remedy else ''}"
    )
    warnings.warn(message, UserWarning, stacklevel=2)
    return message


def image_sizes(paths: Iterable[str | Path]) -> list[tuple[int, int]]:
    """(H, W) of each image file, from its header (no pixels are decoded); an unreadable file is
    an OSError "cannot read image PATH: why"."""
    sizes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.append((image.height, image.width))
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            raise OSError(f"cannot read image {path}: {error}") from error
    return sizes


def check_sizes(sizes: Sequence[tuple[int, int]], size: tuple[int, int], what: str, resize: bool, resize_option: str) -> None:
    """Images of ``sizes`` (h, w) about to feed a model of ``size`` (H, W): without ``resize``,
    another size is a UsageError that names ``resize_option``; with it, a change of aspect ratio
    warns once (``warn_if_squeezed``)."""
    H, W = size
    other = [s for s in sizes if tuple(s) != (H, W)]
    if other and not resize:
        h, w = other[0]
        raise UsageError(
            f"{what}: {len(other)} of {len(sizes)} images are not the model's {H}x{W} (HxW), e.g. {h}x{w}; "
            f"pass {resize_option} to resize them (and their keypoints) to {H}x{W}"
        )
    if resize:
        g = math.gcd(H, W)
        warn_if_squeezed(sizes, size, what, remedy=f"prepare the images at the model's aspect ratio {H // g}:{W // g} (HxW) "
                                                    f"to keep people's shape")


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
