"""Does the attention favour the sources whose view matches the target? Measured on synthetic
tuples, whose file names carry the view (front, frontleft, left, ... in steps of 45 degrees).

    python docs/experiments/saliency_by_view.py --checkpoint CKPT --tuples EVAL/test_tuples.csv [--sources 5]

For every tuple at M sources and every source: the view difference to the target (0 to 4 steps of
45 degrees) and the source's mean saliency (the finest attention's channel mean) over the target's
person mask. Prints, per view difference, the mean saliency with a 95% bootstrap interval over
tuples; an even split gives 1 / M at every difference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from msgen.api import MultiSourceGenerator
from msgen.data import TupleDataset, collate_tuples, read_tuples_csv
from msgen.data.synthetic import VIEW_NAMES
from msgen.pose import person_mask
from msgen.metrics import bootstrap_interval
from msgen.training.data import open_folder


def view_steps(a: str, b: str) -> int:
    """Steps of 45 degrees between the views in two synthetic file names (0 .. 4)."""
    i, j = (VIEW_NAMES.index(Path(name).stem.split("_")[1]) for name in (a, b))
    d = abs(i - j) % len(VIEW_NAMES)
    return min(d, len(VIEW_NAMES) - d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint or exported generator")
    parser.add_argument("--tuples", type=Path, required=True, help="synthetic test tuples (an evaluation's test_tuples.csv)")
    parser.add_argument("--sources", type=int, default=5, help="M, the sources used per tuple (default: 5)")
    args = parser.parse_args()
    model = MultiSourceGenerator.from_checkpoint(args.checkpoint)
    folder = open_folder(model.config.data, model.image_size)
    tuples = read_tuples_csv(args.tuples)
    dataset = TupleDataset(folder, tuples)
    by_steps: dict[int, list[list[float]]] = {}
    with torch.no_grad():
        for start in range(0, len(tuples), 32):
            items = [dataset[(i, args.sources)] for i in range(start, min(start + 32, len(tuples)))]
            batch = collate_tuples(items)
            saliency = model.generate_batch(batch).saliency.cpu().numpy()  # (B, M, H, W)
            for b, i in enumerate(range(start, start + len(items))):
                sources, target = tuples[i]
                mask = person_mask(batch["target_kp"][b].numpy(), model.image_size) > 0
                per_tuple: dict[int, list[float]] = {}
                for m, name in enumerate(sources[: args.sources]):
                    per_tuple.setdefault(view_steps(name, target), []).append(float(saliency[b, m][mask].mean()))
                for steps, values in per_tuple.items():
                    by_steps.setdefault(steps, []).append(values)
    print(f"{args.checkpoint}: {len(tuples)} tuples, M = {args.sources}; even share 1/M = {1 / args.sources:.3f}")
    print("| view difference | sources | mean saliency on the target's person [95% interval] |")
    print("|---|---|---|")
    for steps in sorted(by_steps):
        per_tuple_means = np.array([np.mean(v) for v in by_steps[steps]])
        low, high = bootstrap_interval(per_tuple_means)
        count = sum(len(v) for v in by_steps[steps])
        print(f"| {45 * steps} degrees | {count} | {per_tuple_means.mean():.4f} [{low:.4f}, {high:.4f}] |")


if __name__ == "__main__":
    main()
