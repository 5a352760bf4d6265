"""A figure in the style of the paper's Figure 4: for held-out tuples, the sources, the target,
the results for growing M and, for the largest M, the saliency map of each source.

    python docs/experiments/figure_sources.py --checkpoint CKPT --tuples EVAL/test_tuples.csv \\
        --out docs/images/study_sources.png [--count 6] [--sources 1 2 3 5] [--scale 3]

One row per tuple: sources 1..M, target, results at each M (the first M sources), then the
saliency maps of the largest M relative to an even share (mid-grey: 1 / M of the pixel, white: 2 / M
or more, black: none). The tuples are the first
``--count`` of the CSV (msgen.evaluate writes the ones it scored), read from the checkpoint's data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from msgen.api import MultiSourceGenerator
from msgen.data import TupleDataset, collate_tuples, read_tuples_csv
from msgen.evaluation import to_uint8
from msgen.training.data import open_folder

GAP = 2


def rows_of(model: MultiSourceGenerator, dataset: TupleDataset, index: int, ms: list[int]) -> list[tuple[str, np.ndarray]]:
    """The labelled panels of one tuple."""
    top = max(ms)
    full = collate_tuples([dataset[(index, top)]])
    panels = [(f"source {i + 1}", to_uint8(full["sources"][0, i])) for i in range(top)]
    panels.append(("target", to_uint8(full["target"][0])))
    saliency = None
    for m in ms:
        out = model.generate_batch(collate_tuples([dataset[(index, m)]]))
        panels.append((f"M={m}", to_uint8(out.image[0])))
        if m == top:
            saliency = out.saliency[0].clamp(0, 1).cpu().numpy()
    for i in range(top):
        # Shown relative to an even share: mid-grey = 1 / M, white = 2 / M or more, black = 0.
        grey = (np.clip(saliency[i] * top / 2, 0, 1) * 255).round().astype(np.uint8)
        panels.append((f"att {i + 1}", np.repeat(grey[..., None], 3, axis=-1)))
    return panels


def figure(rows: list[list[tuple[str, np.ndarray]]], scale: int) -> Image.Image:
    H, W = rows[0][0][1].shape[:2]
    h, w = H * scale, W * scale
    label_height = 12
    columns = len(rows[0])
    canvas = Image.new("RGB", (columns * (w + GAP) - GAP, label_height + len(rows) * (h + GAP) - GAP), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for c, (label, _) in enumerate(rows[0]):
        draw.text((c * (w + GAP) + 2, 0), label, fill="black", font=font)
    for r, panels in enumerate(rows):
        for c, (_, pixels) in enumerate(panels):
            tile = Image.fromarray(pixels).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (c * (w + GAP), label_height + r * (h + GAP)))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a training checkpoint (.pt)")
    parser.add_argument("--tuples", type=Path, required=True, help="a test tuple CSV, e.g. an evaluation's test_tuples.csv")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--count", type=int, default=6, help="tuples shown, one per row (default: 6)")
    parser.add_argument("--first", type=int, default=0, help="index of the first tuple shown (default: 0)")
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 2, 3, 5], help="the M shown (default: 1 2 3 5)")
    parser.add_argument("--scale", type=int, default=3, help="pixel enlargement (default: 3)")
    args = parser.parse_args()
    model = MultiSourceGenerator.from_checkpoint(args.checkpoint)
    folder = open_folder(model.config.data, model.image_size)
    tuples = read_tuples_csv(args.tuples)[args.first : args.first + args.count]
    dataset = TupleDataset(folder, tuples)
    with torch.no_grad():
        rows = [rows_of(model, dataset, i, sorted(args.sources)) for i in range(len(tuples))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure(rows, args.scale).save(args.out)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
