"""Pictures of poses and body parts, to see that keypoints, limbs and part masks sit right.

``python -m msgen.pose.draw ANNOTATION_CSV SOURCE_IMAGE [TARGET_IMAGE] --out figure.png`` draws the
source's pose and, given a target, the target's pose, its part masks and the source warped into the
target pose by the part affines (msgen.ops.part_warp_reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.draw import disk, line_aa
from skimage.morphology import erosion

from msgen.errors import CommandLineParser
from msgen.pose.keypoints import KEYPOINT_NAMES, LIMBS, NUM_KEYPOINTS, check_keypoints, present, read_annotations
from msgen.pose.parts import body_part_affines

# One colour per part, in PART_NAMES order (torso grey: its mask is the whole image).
PART_COLOURS = np.array(
    [(160, 160, 160), (255, 220, 0), (230, 25, 75), (60, 180, 75), (245, 130, 48), (0, 130, 200),
     (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60)], dtype=np.float64,
)  # fmt: skip
# Right side red-ish, left side blue-ish, centre line green, as pose tools usually draw them.
_SIDE = {"R": (255, 60, 60), "L": (60, 120, 255)}
KEYPOINT_COLOURS = np.array(
    [(60, 220, 60) if name in ("nose", "neck") else _SIDE[name[0]] for name in KEYPOINT_NAMES], dtype=np.float64
)


def _as_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def draw_pose(
    image: np.ndarray,
    kp: np.ndarray | torch.Tensor,
    parts_masks: np.ndarray | torch.Tensor | None = None,
    *,
    scale: int = 1,
    tint: float = 0.35,
) -> np.ndarray:
    """Draw part masks (tint and outline), limbs and keypoints on a copy of an image.

    image (H, W, 3) uint8; kp (18, 2) (y, x) pixels; parts_masks (P, H, W) in [0, 1], drawn where
    > 0.5 (the torso's whole-image mask is outlined only). scale enlarges the image (nearest) first
    so that lines stay thin on 128x64 crops. Returns (scale*H, scale*W, 3) uint8.
    """
    image = _as_numpy(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.dtype} {image.shape}")
    check_keypoints(kp, name="kp")
    kp = _as_numpy(kp).astype(np.float64)
    if kp.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"kp must be one pose ({NUM_KEYPOINTS}, 2), got {kp.shape}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    H, W = image.shape[:2]
    out = image.repeat(scale, 0).repeat(scale, 1).astype(np.float64)
    if parts_masks is not None:
        masks = _as_numpy(parts_masks)
        if masks.ndim != 3 or masks.shape[1:] != (H, W):
            raise ValueError(f"parts_masks must be (P, {H}, {W}), got {masks.shape}")
        footprint = np.ones((3, 3), dtype=bool)
        for k, mask in enumerate(masks > 0.5):
            colour = PART_COLOURS[k % len(PART_COLOURS)]
            mask = mask.repeat(scale, 0).repeat(scale, 1)
            if not mask.all():
                out[mask] = (1 - tint) * out[mask] + tint * colour
            edge = mask & ~erosion(mask, footprint)
            out[edge] = colour
    # Pixel centre i of the image is at scale * i + (scale - 1) / 2 on the enlarged one.
    points = kp * scale + (scale - 1) / 2
    ok = present(kp)
    shape = out.shape[:2]
    for a, b in LIMBS:
        if ok[a] and ok[b]:
            rr, cc, val = line_aa(*np.rint(points[a]).astype(int), *np.rint(points[b]).astype(int))
            inside = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
            rr, cc, val = rr[inside], cc[inside], val[inside, None]
            colour = (KEYPOINT_COLOURS[a] + KEYPOINT_COLOURS[b]) / 2
            out[rr, cc] = (1 - val) * out[rr, cc] + val * colour
    for i in np.flatnonzero(ok):
        rr, cc = disk(tuple(points[i]), max(1.0, 0.75 * scale), shape=shape)
        out[rr, cc] = KEYPOINT_COLOURS[i]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def save_pose_figure(path: str | Path, panels: Sequence[np.ndarray], *, gap: int = 4) -> Path:
    """Save uint8 (h, w, 3) panels (e.g. draw_pose results) side by side as a PNG; returns path."""
    if not panels:
        raise ValueError("panels must hold at least one image")
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for panel in panels:
        canvas[: panel.shape[0], x : x + panel.shape[1]] = panel
        x += panel.shape[1] + gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path


def pair_panels(
    source: np.ndarray, source_kp: np.ndarray, target: np.ndarray, target_kp: np.ndarray, *, scale: int = 4
) -> list[np.ndarray]:
    """Panels for a source/target pair: source + pose, target + pose, target + part masks, and the
    source warped into the target pose (bilinear part warp with max over parts), target pose on top."""
    from msgen.ops import part_warp_reference  # msgen.ops is heavier; only this figure needs it

    H, W = target.shape[:2]
    batch = [torch.as_tensor(kp, dtype=torch.float64)[None] for kp in (source_kp, target_kp)]
    theta, masks = body_part_affines(*batch, (H, W))
    feat = torch.tensor(source, dtype=torch.float64).permute(2, 0, 1)[None]
    warped = part_warp_reference(feat, theta, masks)[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    return [
        draw_pose(source, source_kp, scale=scale),
        draw_pose(target, target_kp, scale=scale),
        draw_pose(target, target_kp, masks[0].numpy(), scale=scale),
        draw_pose(warped, target_kp, scale=scale),
    ]


def _load(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot read image {path}: {error}") from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = CommandLineParser(prog="python -m msgen.pose.draw", description=__doc__.split("\n\n")[0])
    parser.add_argument("annotations", type=Path, help="annotation CSV (name:keypoints_y:keypoints_x)")
    parser.add_argument("source", type=Path, help="image whose pose to draw")
    parser.add_argument("target", type=Path, nargs="?", help="optional target image: adds parts and the warp")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--scale", type=int, default=4, help="enlargement factor (default 4)")
    args = parser.parse_args(argv)
    annotations = read_annotations(args.annotations)
    images, poses = [], []
    for path in filter(None, (args.source, args.target)):
        if path.name not in annotations:
            raise SystemExit(f"{path.name} has no row in {args.annotations}")
        images.append(_load(path))
        poses.append(annotations[path.name])
    if args.target is None:
        panels = [draw_pose(images[0], poses[0], scale=args.scale)]
    else:
        panels = pair_panels(images[0], poses[0], images[1], poses[1], scale=args.scale)
    print(save_pose_figure(args.out, panels))


if __name__ == "__main__":
    main()
