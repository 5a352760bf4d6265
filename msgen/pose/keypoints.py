"""The 18-keypoint pose format and its annotation CSV (METHOD.md, "Data conventions").

A pose is a float array (..., 18, 2) of (y, x) = (row, column) pixel coordinates of the stored
image, in the OpenPose order of ``KEYPOINT_NAMES``. A missing point is (-1, -1); a point is present
iff both coordinates are >= 0. Functions here accept NumPy arrays and torch tensors alike.

The CSV is the one every public pose-transfer release uses: separator ``:``, header
``name:keypoints_y:keypoints_x``, one row per image ``<file name>: [y0, ..., y17]: [x0, ..., x17]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

NUM_KEYPOINTS = 18
KEYPOINT_NAMES = (
    "nose", "neck", "Rsho", "Relb", "Rwri", "Lsho", "Lelb", "Lwri", "Rhip",
    "Rkne", "Rank", "Lhip", "Lkne", "Lank", "Leye", "Reye", "Lear", "Rear",
)  # fmt: skip
MISSING = -1
KEYPOINT_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# Skeleton segments (index pairs) of Ma et al.'s person mask, also drawn by msgen.pose.draw: the
# 17 OpenPose limbs plus the torso diagonals and the ear-to-ear segment that fill the torso and head.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (1, 16), (1, 17), (8, 11), (11, 5),
    (8, 2), (16, 17),
)  # fmt: skip

# MIRRORED[i]: the point that point i becomes in the mirror image (right and left swap sides).
MIRRORED = tuple(
    KEYPOINT_INDEX[name[0].translate(str.maketrans("RL", "LR")) + name[1:]] if name[0] in "RL" else i
    for i, name in enumerate(KEYPOINT_NAMES)
)

# The four torso points; an image is usable only if all are present.
TORSO = ("Rhip", "Lhip", "Lsho", "Rsho")
CSV_HEADER = "name:keypoints_y:keypoints_x"

_ROW = re.compile(r"^(?P<name>[^:]+):\s*\[(?P<y>[^\]]*)\]\s*:\s*\[(?P<x>[^\]]*)\]\s*$")


def present(kp: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Which points are present: kp (..., 18, 2) -> bool (..., 18), same array type as kp."""
    return (kp >= 0).all(-1) if isinstance(kp, torch.Tensor) else np.all(np.asarray(kp) >= 0, axis=-1)


def check_keypoints(kp: np.ndarray | torch.Tensor, name: str = "keypoints") -> None:
    """Raise ValueError (naming ``name``) unless kp is a finite (..., 18, 2) pose array.

    Coordinates must be >= 0, or exactly (-1, -1) for a missing point.
    """
    if not isinstance(kp, torch.Tensor):
        kp = np.asarray(kp)
        if not (np.issubdtype(kp.dtype, np.floating) or np.issubdtype(kp.dtype, np.integer)):
            raise ValueError(f"{name} must hold numbers, got dtype {kp.dtype}")
    shape = tuple(kp.shape)
    if len(shape) < 2 or shape[-2:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"{name} must have shape (..., {NUM_KEYPOINTS}, 2) as (y, x), got {shape}")
    arr = kp.detach().cpu().double().numpy() if isinstance(kp, torch.Tensor) else kp.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    negative = arr < 0
    missing = (arr == MISSING).all(-1)
    bad = negative.any(-1) & ~missing
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}: point {KEYPOINT_NAMES[index[-1]]} at index {index} is {arr[index].tolist()}; "
            f"a coordinate must be >= 0, or both exactly {MISSING} for a missing point"
        )


def mirror_keypoints(kp: torch.Tensor, width: int) -> torch.Tensor:
    """The pose of the horizontally mirrored image (``image.flip(-1)`` of an image ``width`` wide):
    kp (..., 18, 2) (y, x) -> the same shape, x -> width - 1 - x for present points, and each point
    moved to its mirror's place (MIRRORED: Rsho <-> Lsho, ...), since the person's right side
    becomes the one drawn where their left was. Missing points stay (-1, -1); a present point past
    the last column (the datasets allow up to a pixel) lands on column 0, not off the image."""
    mirrored = kp.clone()
    mirrored[..., 1] = torch.where(present(kp), ((width - 1) - kp[..., 1]).clamp_min(0), kp[..., 1])
    # Stacking the 18 slices, not indexing with a list: a list becomes an index tensor copied to the
    # device on every call, a host synchronisation in the training step.
    return torch.stack([mirrored[..., j, :] for j in MIRRORED], dim=-2)


def fits(kp: np.ndarray, size: tuple[int, int], tolerance: float = 0.0) -> bool:
    """Whether every present point of one pose (18, 2) (y, x) lies inside an (H, W) image, allowing
    ``tolerance`` pixels past its last row and column."""
    kp = np.asarray(kp, dtype=np.float64)
    ok = present(kp)
    H, W = size
    return bool(((kp[ok, 0] <= H - 1 + tolerance) & (kp[ok, 1] <= W - 1 + tolerance)).all())


def order_hint(kp: np.ndarray, size: tuple[int, int], tolerance: float = 0.0) -> str:
    """For keypoints that do not fit their (H, W) image: a hint (a sentence starting with a space)
    when they would fit it as (x, y) pairs, the usual order elsewhere (OpenPose, MediaPipe, PIL);
    "" otherwise. msgen's poses are (y, x)."""
    kp = np.asarray(kp, dtype=np.float64)
    if fits(kp, size, tolerance) or not fits(kp[..., ::-1], size, tolerance):
        return ""
    return (" They fit the image as (x, y) pairs: msgen's keypoints are (y, x) = (row, column); "
            "swap the two columns (kp[:, ::-1]).")


def is_usable(kp: np.ndarray | torch.Tensor) -> bool | np.ndarray | torch.Tensor:
    """Whether the four torso points (Rsho, Lsho, Rhip, Lhip) are present: (..., 18, 2) -> (...)."""
    torso = [KEYPOINT_INDEX[n] for n in TORSO]
    usable = present(kp)[..., torso].all(-1)
    return bool(usable) if usable.ndim == 0 else usable


def _parse_list(text: str, path: Path, line: int, field: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")] if text.strip() else []
    except ValueError:
        raise ValueError(f"{path}:{line}: {field} holds a value that is not a number: [{text}]") from None
    if len(values) != NUM_KEYPOINTS:
        raise ValueError(f"{path}:{line}: {field} has {len(values)} values, expected {NUM_KEYPOINTS}")
    return values


def read_annotations(path: str | Path) -> dict[str, np.ndarray]:
    """Read an annotation CSV into {image file name: (18, 2) float32 (y, x) keypoints}.

    Raises FileNotFoundError for a missing file and ValueError naming the file and line of a bad
    header, malformed row, invalid keypoints or duplicate name. Blank lines are ignored.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    if not lines or lines[0].replace(" ", "") != CSV_HEADER:
        found = lines[0] if lines else "an empty file"
        raise ValueError(f"{path}:1: expected the header {CSV_HEADER!r}, found {found!r}")
    result: dict[str, np.ndarray] = {}
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        match = _ROW.match(line.strip())
        if match is None:
            raise ValueError(f"{path}:{line_no}: malformed row, expected 'name: [y0, ..., y17]: [x0, ..., x17]'")
        name = match["name"].strip()
        ys = _parse_list(match["y"], path, line_no, "keypoints_y")
        xs = _parse_list(match["x"], path, line_no, "keypoints_x")
        kp = np.stack([ys, xs], axis=-1).astype(np.float32)
        try:
            check_keypoints(kp, name=f"keypoints of {name}")
        except ValueError as error:
            raise ValueError(f"{path}:{line_no}: {error}") from None
        if name in result:
            raise ValueError(f"{path}:{line_no}: duplicate image name {name!r}")
        result[name] = kp
    return result


def _format_values(values: np.ndarray) -> str:
    # Integers are written without a decimal point, as in the public releases.
    return "[" + ", ".join(str(int(v)) if float(v).is_integer() else repr(float(v)) for v in values) + "]"


def annotation_row(name: str, kp: np.ndarray | torch.Tensor) -> str:
    """One CSV row (without its newline) for image ``name`` with (18, 2) (y, x) keypoints, checked."""
    if not name or ":" in name or name != name.strip() or "\n" in name:
        raise ValueError(f"image name {name!r} cannot be stored in the CSV (empty, ':' or surrounding spaces)")
    check_keypoints(kp, name=f"keypoints of {name}")
    kp = kp.detach().cpu().numpy() if isinstance(kp, torch.Tensor) else np.asarray(kp)
    if kp.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints of {name} must be ({NUM_KEYPOINTS}, 2), got {kp.shape}")
    return f"{name}: {_format_values(kp[:, 0])}: {_format_values(kp[:, 1])}"


def write_annotations(path: str | Path, mapping: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Write {image file name: (18, 2) (y, x) keypoints} as an annotation CSV (rows in mapping order)."""
    rows = [CSV_HEADER] + [annotation_row(name, kp) for name, kp in mapping.items()]
    Path(path).write_text("\n".join(rows) + "\n")

