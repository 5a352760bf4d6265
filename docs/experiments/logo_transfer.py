"""Does the model draw the logo? Measured on synthetic held-out tuples whose target shows the
shirt's logo (the logo exists only on the shirt's front, so only front-facing sources show it).

    python docs/experiments/logo_transfer.py --checkpoint CKPT [CKPT ...] --tuples EVAL/test_tuples.csv \\
        [--sources 1 5] [--min-area 6] [--out logo.json]

For each tuple the target is rendered again without its noise, as generated and with the logo in
the shirt's colour (``msgen.data.synthetic.logo_layer``), which gives the logo's contribution d
(H, W, 3) at every pixel. An image x is scored by the logo contrast it draws: the least-squares a
of x - plain = a * d + c over the logo's pixels and a 2-pixel ring of shirt around them, c a
constant colour, so a shirt drawn a little too dark or light does not count as a logo. a = 1: the
logo as in the target; 0: plain shirt; the target photo itself scores about 1 (its sensor noise).
A tuple counts when the target's logo covers at least --min-area pixels and at least one of its
largest-M sources shows the logo too (so it can be copied). Printed per method and M: the mean a
with a 95% bootstrap interval over persons (a person's tuples resampled together; with, as an oracle of what copying one source could
give, the best of the largest-M sources each warped alone), and the paired differences of each checkpoint against
the warp baseline (each source warped with its part affines, the warped sources averaged).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from msgen.api import MultiSourceGenerator
from msgen.data import TupleDataset, collate_tuples, read_tuples_csv
from logo_measure import logo_contrast, logo_tuples
from msgen.evaluation import bootstrap_interval, count_persons
from msgen.pose import with_pose_inputs
from msgen.training.data import open_folder
from msgen.evaluation import warp_baseline


def to_255(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) float in 0..255, not rounded (msgen.evaluation.to_uint8
    rounds, which moves the contrast of a 4-pixel logo in the third decimal)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy()


def summary(values: list[float], persons: list[str]) -> str:
    low, high = bootstrap_interval(np.asarray(values), persons=persons)
    return f"{np.mean(values):+.3f} [{low:+.3f}, {high:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, nargs="+", required=True,
                        help="checkpoints or exported generators, scored on the same tuples")
    parser.add_argument("--tuples", type=Path, required=True, help="synthetic test tuples (an evaluation's test_tuples.csv)")
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 5], help="the M to score (default: 1 5)")
    parser.add_argument("--min-area", type=float, default=6.0,
                        help="pixels the logo must cover in the target and in at least one source (default: 6)")
    parser.add_argument("--out", type=Path, default=None, help="write the per-tuple scores here as JSON")
    args = parser.parse_args()
    models = [MultiSourceGenerator.from_checkpoint(path) for path in args.checkpoint]
    data = models[0].config.data
    size = models[0].image_size
    folder = open_folder(data, size)
    tuples = read_tuples_csv(args.tuples)
    dataset = TupleDataset(folder, tuples)
    top = max(args.sources)

    layers = logo_tuples(tuples, data.seed, size, top, args.min_area)
    chosen = list(layers)
    persons = [folder.identity_fn(tuples[i][1]) for i in chosen]
    print(f"{len(chosen)} of {len(tuples)} tuples ({count_persons(persons)} persons): target logo >= "
          f"{args.min_area:g} px, shown by a source among the first {top}")

    scores: dict[str, list[float]] = {}
    with torch.no_grad():
        for start in range(0, len(chosen), 32):
            index = chosen[start : start + 32]
            for m in args.sources:
                batch = collate_tuples([dataset[(i, m)] for i in index])
                outputs = {"target": to_255(batch["target"])} if m == args.sources[0] else {}
                posed = with_pose_inputs(batch, size)
                outputs[f"warp baseline, M={m}"] = to_255(warp_baseline(posed))
                if m == top:  # each source warped alone: the best of them is what copying could give
                    for j in range(m):
                        alone = torch.zeros(len(index), m, dtype=torch.bool)
                        alone[:, j] = True
                        outputs[f"source {j + 1} warped alone"] = to_255(warp_baseline({**posed, "valid": alone}))
                for path, model in zip(args.checkpoint, models):
                    outputs[f"{path}, M={m}"] = to_255(model.generate_batch(batch).image)
                for name, images in outputs.items():
                    for b, i in enumerate(index):
                        scores.setdefault(name, []).append(logo_contrast(images[b], *layers[i]))

    alone = [name for name in scores if name.endswith("warped alone")]
    scores[f"best single warped source (oracle), M={top}"] = list(np.max([scores.pop(n) for n in alone], axis=0))
    print("| image | logo contrast drawn (1: as the target, 0: plain shirt) [95% interval] |")
    print("|---|---|")
    for name, values in scores.items():
        print(f"| {name} | {summary(values, persons)} |")
    print("\n| paired difference | mean [95% interval] |")
    print("|---|---|")
    for m in args.sources:
        baseline = np.asarray(scores[f"warp baseline, M={m}"])
        for path in args.checkpoint:
            print(f"| {path} minus warp baseline, M={m} | {summary(list(np.asarray(scores[f'{path}, M={m}']) - baseline), persons)} |")
    if len(args.checkpoint) > 1:
        first = args.checkpoint[0]
        for path in args.checkpoint[1:]:
            for m in args.sources:
                diff = np.asarray(scores[f"{path}, M={m}"]) - np.asarray(scores[f"{first}, M={m}"])
                print(f"| {path} minus {first}, M={m} | {summary(list(diff), persons)} |")
    if args.out is not None:
        args.out.write_text(json.dumps({"tuples": [tuples[i][1] for i in chosen], "scores": scores}, indent=1))


if __name__ == "__main__":
    main()
