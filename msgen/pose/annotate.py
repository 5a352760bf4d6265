"""Keypoints for your own photos: ``python -m msgen.pose.annotate IMAGES... --out annotation.csv``.

Runs MediaPipe Pose (the optional ``pose`` extra: ``pip install msgen[pose]``, mediapipe 0.10.14,
whose wheel ships the pose model, so it runs offline) on each image and writes the 18 OpenPose
keypoints in the standard annotation CSV at each image's stored size. MediaPipe's 33 landmarks map
onto the 18 points one to one except the neck, which is the mid-point of the shoulders (present
only when both are). A landmark whose visibility is below ``--min-visibility`` or that falls outside
the image is missing (-1); an image without a detected person gets a row of -1 and is counted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from msgen.pose.keypoints import KEYPOINT_NAMES, MISSING, NUM_KEYPOINTS, write_annotations

# MediaPipe Pose landmark index for each OpenPose point (None: the neck, from the two shoulders).
MEDIAPIPE_INDEX = {
    "nose": 0, "neck": None, "Rsho": 12, "Relb": 14, "Rwri": 16, "Lsho": 11, "Lelb": 13, "Lwri": 15,
    "Rhip": 24, "Rkne": 26, "Rank": 28, "Lhip": 23, "Lkne": 25, "Lank": 27, "Leye": 2, "Reye": 5,
    "Lear": 7, "Rear": 8,
}  # fmt: skip
MIN_VISIBILITY = 0.5
# MediaPipe's person detector misses most tight re-identification crops (a person filling a 128x64
# image): on 40 real Market crops it found 25 as they are and 33 once enlarged to >= 256 px on the
# shorter side and padded by PAD of each side's length on every side (median error 3 px against
# the OpenPose annotations).
MIN_SIDE = 256
PAD = 0.5


def landmarks_to_keypoints(
    landmarks: np.ndarray, size: tuple[int, int], min_visibility: float = MIN_VISIBILITY
) -> np.ndarray:
    """Map MediaPipe landmarks (33, 3) as normalised (x, y, visibility) to (18, 2) (y, x) pixels.

    Normalised coordinates span the image's edges, so pixel centre i sits at (i + 0.5) / size;
    keypoints are rounded to whole pixels as the annotation CSV stores them.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (33, 3):
        raise ValueError(f"landmarks must be (33, 3) as (x, y, visibility), got {landmarks.shape}")
    H, W = size
    kp = np.full((NUM_KEYPOINTS, 2), float(MISSING), dtype=np.float32)
    for i, name in enumerate(KEYPOINT_NAMES):
        index = MEDIAPIPE_INDEX[name]
        if index is None:
            continue
        x, y, visibility = landmarks[index]
        row, col = round(y * H - 0.5), round(x * W - 0.5)
        if visibility >= min_visibility and 0 <= row < H and 0 <= col < W:
            kp[i] = (row, col)
    neck, shoulders = KEYPOINT_NAMES.index("neck"), [KEYPOINT_NAMES.index("Rsho"), KEYPOINT_NAMES.index("Lsho")]
    if (kp[shoulders] >= 0).all():
        kp[neck] = np.rint(kp[shoulders].mean(0))
    return kp


def _prepare(image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Enlarge and pad an RGB image as MediaPipe wants it. Returns the (H', W', 3) uint8 canvas and
    (gain, offset), both (2,) as (x, y), with image-normalised = canvas-normalised * gain - offset."""
    W, H = image.size
    factor = max(1.0, MIN_SIDE / min(H, W))
    W, H = round(W * factor), round(H * factor)
    pad_x, pad_y = round(PAD * W), round(PAD * H)
    canvas = Image.new("RGB", (W + 2 * pad_x, H + 2 * pad_y), (127, 127, 127))
    canvas.paste(image.resize((W, H), Image.BICUBIC), (pad_x, pad_y))
    gain = np.array([canvas.width / W, canvas.height / H])
    return np.asarray(canvas), gain, np.array([pad_x / W, pad_y / H])


def _mediapipe_pose():
    try:
        import mediapipe  # noqa: F401  (optional dependency)
    except ImportError:
        raise SystemExit(
            "msgen.pose.annotate needs mediapipe, an optional dependency: pip install 'msgen[pose]'"
        ) from None
    from mediapipe.python.solutions import pose

    return pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False)


def annotate(paths: Iterable[Path], min_visibility: float = MIN_VISIBILITY) -> tuple[dict[str, np.ndarray], list[str]]:
    """Keypoints for each image: ({file name: (18, 2) (y, x)}, names where no person was found).

    Raises FileNotFoundError / ValueError for a missing or unreadable image or a repeated file name
    (the CSV keys rows by file name).
    """
    result: dict[str, np.ndarray] = {}
    undetected: list[str] = []
    with _mediapipe_pose() as model:
        for path in map(Path, paths):
            if path.name in result:
                raise ValueError(f"two images are named {path.name!r}; the annotation CSV keys rows by file name")
            if not path.is_file():
                raise FileNotFoundError(f"image not found: {path}")
            try:
                with Image.open(path) as image:
                    rgb = image.convert("RGB")
            except (OSError, ValueError) as error:
                raise ValueError(f"cannot read image {path}: {error}") from None
            W, H = rgb.size
            canvas, gain, offset = _prepare(rgb)
            found = model.process(canvas).pose_landmarks
            if found is None:
                undetected.append(path.name)
                result[path.name] = np.full((NUM_KEYPOINTS, 2), float(MISSING), dtype=np.float32)
                continue
            landmarks = np.array([(p.x, p.y, p.visibility) for p in found.landmark])
            landmarks[:, :2] = landmarks[:, :2] * gain - offset
            result[path.name] = landmarks_to_keypoints(landmarks, (H, W), min_visibility)
    return result, undetected


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m msgen.pose.annotate", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--out", type=Path, required=True, help="annotation CSV to write")
    parser.add_argument("--min-visibility", type=float, default=MIN_VISIBILITY,
                        help=f"landmarks less visible than this are missing (default {MIN_VISIBILITY})")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        keypoints, undetected = annotate(args.images, args.min_visibility)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    write_annotations(args.out, keypoints)
    print(f"wrote {len(keypoints)} rows to {args.out}", file=sys.stderr)
    if undetected:
        names = ", ".join(undetected)
        print(f"no person found in {len(undetected)} image(s), written as all -1: {names}", file=sys.stderr)


if __name__ == "__main__":
    main()
