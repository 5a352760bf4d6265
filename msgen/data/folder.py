"""A folder of person images with their 18-keypoint annotation CSV (METHOD.md, "Data conventions").

Which images are kept, and why the others are not:
- a name starting with ``-1`` or ``0000`` (Market-1501's distractors and junk) is dropped when
  ``drop_junk`` is set;
- an image whose pose lacks any of the four torso points (Rsho, Lsho, Rhip, Lhip) is dropped;
- an image file without an annotation row is ignored;
- an annotated image that is not in the folder is an error (the annotation and the folder disagree).
Every drop is counted by reason in ``dropped`` and summarised once in the log and by ``report()``.

Image size policy: every image must have ``image_size`` (H, W), by default the size of the first
kept image. An image of another size raises ValueError naming it, unless ``resize=True``: then it is
resized (bilinear) and its keypoints are mapped with the pixel-centre convention
y' = (y + 0.5) * H' / H - 0.5 (the same for x), missing points staying missing.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from msgen.pose import is_usable, read_annotations
from msgen.pose.framing import image_sizes

logger = logging.getLogger(__name__)

JUNK_PREFIXES = ("-1", "0000")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DROP_REASONS = {
    "junk_name": "names starting with -1 or 0000 (Market junk and distractors)",
    "unusable_pose": "poses without all four torso points",
    "not_annotated": "image files without an annotation row",
}


# How far past an image's size (a fraction of it) a keypoint may lie before verify_images calls the
# annotation one for another image size (whose points can lie up to 100% past it, for twice the size).
OUTSIDE_SLACK = 0.1


def market_identity(name: str) -> str:
    """Market-1501 (and the synthetic set): the file name before the first ``_``."""
    return name.split("_", 1)[0]


def deepfashion_identity(name: str) -> str:
    """DeepFashion In-shop as flattened by the pose-transfer releases: id + item.

    Assumed naming: ``<gender><category>id<8-digit id><2-digit item>_<pose index><view>.<ext>``,
    e.g. ``fashionWOMENDressesid0000262902_3back.jpg``, whose identity is everything before the
    last ``_`` (``fashionWOMENDressesid0000262902``): the same person in the same clothes.
    """
    return Path(name).stem.rsplit("_", 1)[0]


class PoseImageFolder:
    """Images of ``root`` with the keypoints of ``annotation_csv``, filtered to usable poses.

    Args:
        root: folder holding the image files named in the CSV.
        annotation_csv: the standard ``name:keypoints_y:keypoints_x`` file.
        image_size: (H, W) every image must have; None takes the first kept image's size.
        identity_fn: file name -> person identity; default ``market_identity``.
        drop_junk: drop Market's junk/distractor names (``-1*``, ``0000*``).
        resize: resize images of another size (and rescale their keypoints) instead of raising.

    Attributes:
        names: the kept image names, sorted.
        identities: {identity: sorted names}.
        dropped: Counter of dropped images by reason (keys of DROP_REASONS).
        image_size: (H, W).
    """

    def __init__(
        self,
        root: str | Path,
        annotation_csv: str | Path,
        image_size: tuple[int, int] | None = None,
        identity_fn: Callable[[str], str] | None = None,
        drop_junk: bool = True,
        resize: bool = False,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self.resize = resize
        self.identity_fn = identity_fn or market_identity
        annotations = read_annotations(annotation_csv)
        on_disk = set(os.listdir(self.root))
        self.dropped: Counter[str] = Counter()
        kept: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for name, kp in annotations.items():
            if drop_junk and name.startswith(JUNK_PREFIXES):
                self.dropped["junk_name"] += 1
            elif not is_usable(kp):
                self.dropped["unusable_pose"] += 1
            elif name in on_disk or (self.root / name).is_file():
                kept[name] = kp
            else:
                missing.append(name)
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} images annotated in {annotation_csv} are not in {self.root}, "
                f"e.g. {', '.join(missing[:3])}"
            )
        self.dropped["not_annotated"] = sum(
            1 for name in on_disk - annotations.keys() if Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
        if not kept:
            raise ValueError(f"no usable image in {self.root} with {annotation_csv}: {self.report()}")
        self.names = sorted(kept)
        self._keypoints = kept
        self._sizes: list[tuple[int, int]] | None = None
        identities: dict[str, list[str]] = {}
        for name in self.names:
            identities.setdefault(self.identity_fn(name), []).append(name)
        self.identities = identities
        if image_size is None:
            image_size = self._size_of(self.names[0])
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (H, W) with positive ints, got {image_size}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        logger.info(self.report())

    def report(self) -> str:
        """One line: what was kept and how many images were dropped for each reason."""
        dropped = "; ".join(f"{n} {DROP_REASONS[reason]}" for reason, n in self.dropped.items() if n)
        kept = f"{len(getattr(self, 'names', []))} images of {len(getattr(self, 'identities', {}))} identities"
        return f"{self.root}: kept {kept}; dropped: {dropped or 'none'}"

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        """{"image": (3, H, W) float in [-1, 1], "keypoints": (18, 2) float32, "name": str}."""
        name = self.names[index]
        image, keypoints = self.load(name)
        return {"image": image, "keypoints": keypoints, "name": name}

    def keypoints(self, name: str) -> np.ndarray:
        """The annotated (18, 2) keypoints of ``name`` at the size the image is stored at."""
        return self._keypoints[name]

    def load(self, name: str) -> tuple[Tensor, Tensor]:
        """Image (3, H, W) float32 in [-1, 1] and keypoints (18, 2) float32 at ``image_size``."""
        if name not in self._keypoints:
            raise KeyError(f"{name!r} is not a kept image of {self.root}")
        path = self.root / name
        try:
            with Image.open(path) as file:
                image = file.convert("RGB")
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            raise OSError(f"cannot read image {path}: {error}") from error
        keypoints = self._keypoints[name]
        H, W = self.image_size
        if image.size != (W, H):
            if not self.resize:
                raise ValueError(
                    f"image {path} is {image.size[1]}x{image.size[0]} (HxW), expected {H}x{W}; "
                    f"pass resize=True to resize images and their keypoints"
                )
            keypoints = rescale_keypoints(keypoints, (image.size[1], image.size[0]), (H, W))
            image = image.resize((W, H), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
        return pixels.float().div_(127.5).sub_(1.0), torch.from_numpy(keypoints.copy())

    def verify_images(self) -> None:
        """Open every kept image's header: raise for an unreadable file, a wrong size (unless
        resize), or keypoints far outside the image they annotate: beyond its size by more than
        OUTSIDE_SLACK of it, which an annotation made for another image size is (a detector's
        point a little past the edge is accepted, as the pose code accepts it)."""
        H, W = self.image_size
        for name, size in zip(self.names, self.image_sizes()):
            if size != (H, W) and not self.resize:
                raise ValueError(f"image {self.root / name} is {size[0]}x{size[1]} (HxW), expected {H}x{W}")
            kp = self._keypoints[name]
            kept = kp[(kp >= 0).all(-1)]
            limit = np.array(size, dtype=np.float64) * (1 + OUTSIDE_SLACK)
            if len(kept) and (kept > limit).any():
                raise ValueError(
                    f"image {self.root / name} is {size[0]}x{size[1]} (HxW), but its keypoints reach "
                    f"(y, x) = ({kept[:, 0].max():g}, {kept[:, 1].max():g}): the annotation is for "
                    "another image size")

    def image_sizes(self) -> list[tuple[int, int]]:
        """(H, W) of every kept image (``names`` order), read from the headers once: the aspect
        check and ``verify_images`` share them, so a run opens each header once."""
        if self._sizes is None:
            self._sizes = image_sizes(self.root / name for name in self.names)
        return self._sizes

    def _size_of(self, name: str) -> tuple[int, int]:
        return image_sizes([self.root / name])[0]


def rescale_keypoints(keypoints: np.ndarray, old_size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    """Map (..., 18, 2) (y, x) keypoints from an image of old_size (H, W) to new_size; -1 stays -1."""
    scale = np.array(new_size, dtype=np.float32) / np.array(old_size, dtype=np.float32)
    mapped = (keypoints + 0.5) * scale - 0.5
    present = (keypoints >= 0).all(-1, keepdims=True)
    return np.where(present, np.maximum(mapped, 0), -1).astype(np.float32)
