"""Training curves drawn from runs' log.jsonl files, as one PNG (PIL only, no plotting library).

    python docs/experiments/training_curves.py --run full=runs/study/full --run avg=runs/study/avg \\
        --out docs/images/study_curves.png

One panel per quantity, one line per run: by default the reconstruction loss of the training
steps (``loss_nn``, averaged over windows of ``--smooth`` log lines) and the held-out mask-SSIM of
the periodic evaluations (``mask_ssim``). Any numeric key of the log lines can be asked for with
``--panel kind:key`` (kind "train" or "eval").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from msgen.errors import UsageError

DEFAULT_PANELS = ("train:loss_nn", "eval:mask_ssim")
# Distinguishable on white, in the order runs are given.
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
PANEL_SIZE = (420, 260)
MARGIN = (56, 28, 16, 40)  # left, top, right, bottom: room for tick labels and the title


def read_log(path: str | Path) -> list[dict]:
    """The lines of a log.jsonl (a run folder or the file itself) as dicts."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.is_file():
        raise UsageError(f"--run: no log.jsonl at {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series(lines: Sequence[dict], kind: str, key: str, smooth: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``key`` in the log lines of ``kind``, the values averaged over windows of
    ``smooth`` consecutive lines (the step of a window is its last)."""
    points = [(line["step"], line[key]) for line in lines if line.get("kind") == kind and key in line
              and isinstance(line[key], (int, float)) and math.isfinite(line[key])]
    if not points:
        return np.zeros(0), np.zeros(0)
    steps, values = (np.asarray(v, dtype=np.float64) for v in zip(*points))
    if smooth > 1 and len(values) >= smooth:
        n = len(values) // smooth * smooth
        steps = steps[:n].reshape(-1, smooth)[:, -1]
        values = values[:n].reshape(-1, smooth).mean(axis=1)
    return steps, values


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    return [lo + (hi - lo) * i / count for i in range(count + 1)]


def _label(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def draw_panel(title: str, lines: dict[str, tuple[np.ndarray, np.ndarray]]) -> Image.Image:
    """One panel: a line per run over a shared step axis, with ticks and a legend."""
    width, height = PANEL_SIZE
    left, top, right, bottom = MARGIN
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((left, 6), title, fill="black", font=font)
    box = (left, top, width - right, height - bottom)
    draw.rectangle(box, outline=(120, 120, 120))
    filled = {name: xy for name, xy in lines.items() if len(xy[0])}
    if not filled:
        draw.text((left + 10, top + 10), "no data", fill="black", font=font)
        return image
    xs = np.concatenate([x for x, _ in filled.values()])
    ys = np.concatenate([y for _, y in filled.values()])
    x_lo, x_hi = 0.0, float(xs.max()) or 1.0
    y_lo, y_hi = float(ys.min()), float(ys.max())
    pad = (y_hi - y_lo) * 0.05 or abs(y_hi) * 0.05 or 1.0
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (box[0] + (x - x_lo) / (x_hi - x_lo) * (box[2] - box[0]),
                box[3] - (y - y_lo) / (y_hi - y_lo) * (box[3] - box[1]))

    for x in _ticks(x_lo, x_hi):
        px, _ = to_px(x, y_lo)
        draw.line([(px, box[3]), (px, box[3] + 4)], fill="black")
        draw.text((px - 10, box[3] + 6), _label(x), fill="black", font=font)
    for y in _ticks(y_lo, y_hi):
        _, py = to_px(x_lo, y)
        draw.line([(box[0] - 4, py), (box[0], py)], fill="black")
        draw.text((4, py - 6), _label(y), fill="black", font=font)
    draw.text((box[2] - 30, height - 14), "step", fill="black", font=font)
    for i, (name, (x, y)) in enumerate(filled.items()):
        colour = COLOURS[i % len(COLOURS)]
        points = [to_px(float(a), float(b)) for a, b in zip(x, y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points if len(points) <= 40 else points[-1:]:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        draw.text((box[2] - 64, box[1] + 4 + 12 * i), name, fill=colour, font=font)
    return image


def plot_curves(runs: dict[str, Sequence[dict]], panels: Sequence[str] = DEFAULT_PANELS, smooth: int = 10) -> Image.Image:
    """The panels side by side: runs maps a label to its log lines; panels are "kind:key"."""
    images = []
    for panel in panels:
        kind, _, key = panel.partition(":")
        if kind not in ("train", "eval") or not key:
            raise UsageError(f"--panel must be train:KEY or eval:KEY, got {panel!r}")
        window = smooth if kind == "train" else 1
        title = f"{key} ({'training, mean of ' + str(window) + ' log lines' if kind == 'train' else 'held-out evaluation'})"
        images.append(draw_panel(title, {name: series(lines, kind, key, window) for name, lines in runs.items()}))
    canvas = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)), "white")
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width
    return canvas


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python docs/experiments/training_curves.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=DIR",
                        help="a run to draw: its label and its folder (or log.jsonl); repeat for several runs")
    parser.add_argument("--panel", action="append", metavar="KIND:KEY",
                        help=f"a quantity to draw, train:KEY or eval:KEY; repeatable (default: {' '.join(DEFAULT_PANELS)})")
    parser.add_argument("--smooth", type=int, default=10,
                        help="training lines averaged per plotted point, >= 1 (default: 10)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        if args.smooth < 1:
            raise UsageError(f"--smooth must be >= 1, got {args.smooth}")
        runs = {}
        for spec in args.run:
            label, sep, folder = spec.partition("=")
            if not sep or not label or not folder:
                raise UsageError(f"--run must be LABEL=DIR, got {spec!r}")
            runs[label] = read_log(folder)
        image = plot_curves(runs, args.panel or DEFAULT_PANELS, args.smooth)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
