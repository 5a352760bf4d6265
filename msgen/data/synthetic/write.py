"""Write the built-in synthetic dataset: articulated people seen from any side, with exact keypoints.

The writer and its command line (``python -m msgen.data.synthetic``): every image is rendered by
``msgen.data.synthetic.render`` (``render_sample``).

Output: ``DIR/images/<identity:04d>_<view>_<index:03d>.png`` (identities numbered from 1, so no
name starts with ``0000``, which the Market junk filter drops), ``DIR/annotation.csv`` in the
standard format, and ``DIR/synthetic.json`` with the generation parameters. The bytes depend only
on the arguments, not on the number of workers: every image has its own seeded generator. The
annotation rows are appended to ``DIR/annotation.csv.partial`` as each identity is finished, and
the file is renamed to ``annotation.csv`` at the end (then ``synthetic.json`` marks the set
complete), so an error late in a long run loses no finished work: the partial file names every
image written so far.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

from msgen.data.synthetic.render import example_grid, render_sample

def _render_identity(args: tuple[Path, int, int, int, tuple[int, int]]) -> list[str]:
    """Render and save one identity's images; returns their annotation rows (checked)."""
    from msgen.pose.keypoints import annotation_row

    images_dir, seed, identity, count, size = args
    rows = []
    for index in range(count):
        name, image, keypoints = render_sample(seed, identity, index, size)
        row = annotation_row(name, keypoints)  # checked before the image is written
        Image.fromarray(image).save(images_dir / name, compress_level=1)
        rows.append(row)
    return rows


def generate_synthetic(
    out: str | Path,
    identities: int,
    images_per_identity: int,
    size: tuple[int, int] = (128, 64),
    seed: int = 0,
    workers: int = 1,
) -> Path:
    """Render ``identities`` x ``images_per_identity`` images into ``out`` and return ``out``.

    Writes out/images/*.png, out/annotation.csv (standard format) and out/synthetic.json.
    ``workers`` > 1 renders identities in that many processes; the output is identical. Rows are
    appended to out/annotation.csv.partial as identities finish, in identity order.
    """
    from msgen.pose.keypoints import CSV_HEADER  # the pose package owns the CSV format

    if identities < 1:
        raise ValueError(f"identities (--identities) must be >= 1, got {identities}")
    if images_per_identity < 1:
        raise ValueError(f"images_per_identity (--images-per-identity) must be >= 1, got {images_per_identity}")
    if len(size) != 2 or min(size) < 32:
        raise ValueError(f"size (--size) must be HxW with both >= 32, got {'x'.join(map(str, size))}")
    if workers < 1:
        raise ValueError(f"workers (--workers) must be >= 1, got {workers}")
    out = Path(out)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(images_dir, seed, identity, images_per_identity, tuple(size)) for identity in range(1, identities + 1)]
    partial = out / "annotation.csv.partial"
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        results = (map(_render_identity, jobs) if pool is None
                   else pool.map(_render_identity, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
        with open(partial, "w") as csv:
            csv.write(CSV_HEADER + "\n")
            for rows in results:
                csv.write("".join(row + "\n" for row in rows))
                csv.flush()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    partial.replace(out / "annotation.csv")
    parameters = dict(identities=identities, images_per_identity=images_per_identity, size=list(size), seed=seed)
    (out / "synthetic.json").write_text(json.dumps(parameters, indent=2) + "\n")
    return out


def parse_size(text: str) -> tuple[int, int]:
    """'128x64' -> (128, 64): height x width."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 128x64 (height x width), got {text!r}") from None
    return height, width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msgen.data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder; gets images/, annotation.csv and synthetic.json (required)")
    parser.add_argument("--identities", type=int, default=500,
                        help="number of people, each with its own clothes and proportions (>= 1; default: 500)")
    parser.add_argument("--images-per-identity", type=int, default=20,
                        help="images of each person, each in a new pose, view and background (>= 1; default: 20)")
    parser.add_argument("--size", type=parse_size, default=(128, 64),
                        help="image size HxW in pixels, both >= 32, e.g. 128x64 or 256x256 (default: 128x64)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of everything drawn; the same arguments give the same bytes (default: 0)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes rendering in parallel (>= 1; the output does not depend on it; default: 1)")
    parser.add_argument("--grid", type=Path,
                        help="also save a PNG of identities x the eight views to this path (default: none)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.grid:
            Image.fromarray(example_grid(args.seed, size=args.size)).save(args.grid)
        generate_synthetic(args.out, args.identities, args.images_per_identity, args.size, args.seed, args.workers)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    count = args.identities * args.images_per_identity
    print(f"wrote {count} images of {args.identities} identities to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0
