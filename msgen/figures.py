"""Figures of a generation: the sources, the target pose, the result and one saliency map per source.

Layout of ``tuple_figure`` (every panel the model's image size (H, W) times ``scale``, GAP white
pixels between panels and around the figure, a LABEL_HEIGHT label band above each row):

    row 0:  source 1 .. source M | target pose | result | target (when given)
    row 1:  saliency 1 .. saliency M   (each under its source)

``figure_layout`` gives the (top, left) pixel of every panel, so callers (and tests) can find them.
The target pose is drawn as a skeleton on black by msgen.pose.draw.draw_pose. A saliency map is
the channel mean of the finest attention level for that source, in [0, 1] (the maps of one pixel
sum to 1 over the sources); it is coloured on the fixed scale [0, 1], not stretched per map, so the
maps of one figure compare directly. ``sample_grid`` stacks figures of
several tuples (the trainer's sample grids).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from msgen.evaluation import to_uint8
from msgen.pose.draw import draw_pose

GAP = 4
LABEL_HEIGHT = 12
BACKGROUND = (255, 255, 255)
# Colour scale of the saliency maps: anchors at 0, 0.25, 0.5, 0.75, 1 (dark blue to yellow).
_SCALE = np.array(
    [[0, 0, 40], [40, 20, 140], [180, 40, 120], [250, 130, 40], [255, 245, 120]], dtype=np.float64
)

ImageLike = np.ndarray | Tensor


def as_uint8_image(image: ImageLike, name: str) -> np.ndarray:
    """A uint8 (H, W, 3) array, or a (3, H, W) tensor in [-1, 1], as a uint8 (H, W, 3) array."""
    if isinstance(image, Tensor):
        if image.dim() != 3:
            raise ValueError(f"{name} must be a (3, H, W) tensor, got {tuple(image.shape)}")
        return to_uint8(image)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must be uint8 (H, W, 3) or a (3, H, W) tensor, got {image.dtype} {image.shape}")
    return image


def colorize(saliency: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] (clipped) -> (H, W, 3) uint8 on the fixed saliency colour scale."""
    value = np.clip(np.asarray(saliency, dtype=np.float64), 0.0, 1.0) * (len(_SCALE) - 1)
    low = np.minimum(np.floor(value).astype(int), len(_SCALE) - 2)
    frac = (value - low)[..., None]
    return np.round(_SCALE[low] * (1 - frac) + _SCALE[low + 1] * frac).astype(np.uint8)


def figure_layout(num_sources: int, size: tuple[int, int], with_target: bool = False) -> dict[str, tuple[int, int]]:
    """(top, left) of each panel of ``tuple_figure``: keys "source i", "saliency i" (i from 1),
    "pose", "result" and, with_target, "target"; plus "figure" -> (height, width) of the whole."""
    if num_sources < 1:
        raise ValueError(f"num_sources must be >= 1, got {num_sources}")
    H, W = size
    columns = num_sources + 2 + int(with_target)

    def left(column: int) -> int:
        return GAP + column * (W + GAP)

    rows = (GAP + LABEL_HEIGHT, GAP + LABEL_HEIGHT + H + GAP + LABEL_HEIGHT)
    layout = {}
    for i in range(num_sources):
        layout[f"source {i + 1}"] = (rows[0], left(i))
        layout[f"saliency {i + 1}"] = (rows[1], left(i))
    layout["pose"] = (rows[0], left(num_sources))
    layout["result"] = (rows[0], left(num_sources + 1))
    if with_target:
        layout["target"] = (rows[0], left(num_sources + 2))
    layout["figure"] = (rows[1] + H + GAP, left(columns))
    return layout


# Each panel's label, longest first: the first that fits the panel's width is drawn (a 32-px
# wide panel of a 64x32 model takes "sal. 1", not a cut "salienc").
_LABELS = {"source": ("source {i}", "src {i}", "{i}"), "saliency": ("saliency {i}", "sal. {i}", "s{i}"),
           "pose": ("target pose", "pose", "p"), "result": ("result", "res.", "r"), "target": ("target", "real", "t")}  # fmt: skip


@functools.cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


@functools.cache
def panel_label(name: str, width: int) -> str:
    """The label of panel ``name`` ("source 2", "pose", ...): the longest form that fits ``width`` px."""
    kind, _, index = name.partition(" ")
    forms = [form.format(i=index) for form in _LABELS[kind]]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    for text in forms:
        left, _, right, _ = measure.textbbox((0, 0), text, font=_font())
        if right - min(left, 0) <= width:
            return text
    return forms[-1]


def _label(name: str, width: int) -> Image.Image:
    """The label band of a panel: its label on white, in a form that fits the panel's width."""
    text = panel_label(name, width)
    band = Image.new("RGB", (width, LABEL_HEIGHT), BACKGROUND)
    font = _font()
    left = ImageDraw.Draw(band).textbbox((0, 0), text, font=font)[0]
    ImageDraw.Draw(band).text((max(0, -left), 0), text, fill=(0, 0, 0), font=font)
    return band


def _enlarge(pixels: np.ndarray, scale: int) -> np.ndarray:
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)


def tuple_figure(
    sources: Sequence[ImageLike] | Tensor,
    target_pose: np.ndarray | Tensor,
    result: ImageLike,
    saliency: np.ndarray | Tensor,
    target: ImageLike | None = None,
    scale: int = 1,
) -> np.ndarray:
    """The figure of one generation as a uint8 (h, w, 3) array (layout: ``figure_layout``).

    sources: M uint8 (H, W, 3) images, or a tensor (M, 3, H, W) in [-1, 1]; target_pose (18, 2)
    (y, x) keypoints in the result's pixels; result: uint8 (H, W, 3) or a (3, H, W) tensor;
    saliency (M, H, W) in [0, 1]; target: the ground truth, shown after the result when given.
    scale: every panel enlarged by this integer factor (nearest), panels (scale H, scale W).
    """
    if scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale}")
    sources = [as_uint8_image(s, f"sources[{i}]") for i, s in enumerate(sources)]
    if not sources:
        raise ValueError("sources is empty: a figure needs at least one source")
    result = as_uint8_image(result, "result")
    size = result.shape[:2]
    for i, source in enumerate(sources):
        if source.shape[:2] != size:
            raise ValueError(f"sources[{i}] is {source.shape[:2]}, the result {size}: resize it first")
    saliency = saliency.detach().float().cpu().numpy() if isinstance(saliency, Tensor) else np.asarray(saliency)
    if saliency.shape != (len(sources), *size):
        raise ValueError(f"saliency must be (M, H, W) = {(len(sources), *size)}, got {saliency.shape}")
    panels = {f"source {i + 1}": s for i, s in enumerate(sources)}
    panels.update({f"saliency {i + 1}": colorize(m) for i, m in enumerate(saliency)})
    panels["result"] = result
    if target is not None:
        panels["target"] = as_uint8_image(target, "target")
        if panels["target"].shape[:2] != size:
            raise ValueError(f"target is {panels['target'].shape[:2]}, the result {size}")
    panels = {name: _enlarge(pixels, scale) for name, pixels in panels.items()}
    panels["pose"] = draw_pose(np.zeros((*size, 3), np.uint8), target_pose, scale=scale)

    panel_size = (size[0] * scale, size[1] * scale)
    layout = figure_layout(len(sources), panel_size, with_target=target is not None)
    height, width = layout["figure"]
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    for name, pixels in panels.items():
        top, left = layout[name]
        canvas.paste(_label(name, panel_size[1]), (left, top - LABEL_HEIGHT))
        canvas.paste(Image.fromarray(pixels), (left, top))
    return np.asarray(canvas).copy()


def sample_grid(figures: Sequence[np.ndarray]) -> np.ndarray:
    """Stack figures (uint8 (h_i, w_i, 3)) top to bottom, padding narrower ones on the right."""
    if not figures:
        raise ValueError("sample_grid needs at least one figure")
    width = max(f.shape[1] for f in figures)
    padded = [np.pad(f, ((0, 0), (0, width - f.shape[1]), (0, 0)), constant_values=BACKGROUND[0]) for f in figures]
    return np.concatenate(padded, axis=0)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 (H, W, 3) array as a PNG, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
    return path
