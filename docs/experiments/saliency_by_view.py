"""Does the attention favour the sources whose view matches the target? Measured on synthetic
tuples, whose file names carry the view (front, frontleft, left, ... in steps of 45 degrees).

    python docs/experiments/saliency_by_view.py --checkpoint CKPT --tuples EVAL/test_tuples.csv [--sources 5] [--all-levels]

For every tuple at M sources and every source: the view difference to the target (0 to 4 steps of
45 degrees) and the source's mean saliency (the finest attention's channel mean) over the target's
person mask. Prints, per view difference, the mean saliency with a 95% bootstrap interval over
persons (a person's tuples resampled together); an even split gives 1 / M at every difference. ``--all-levels`` prints the same table for
every attention level of the decoder (level 0 is the finest, the one the saliency maps show;
coarser levels' attention is upsampled to the image, nearest).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from msgen.api import MultiSourceGenerator
from msgen.data import TupleDataset, collate_tuples, read_tuples_csv
from msgen.data.synthetic import VIEW_NAMES, parse_sample_name
from msgen.pose import person_mask
from msgen.evaluation import bootstrap_interval, count_persons
from msgen.training.data import open_folder


def view_steps(a: str, b: str) -> int:
    """Steps of 45 degrees between the views in two synthetic file names (0 .. 4)."""
    i, j = (VIEW_NAMES.index(parse_sample_name(name)[1]) for name in (a, b))
    d = abs(i - j) % len(VIEW_NAMES)
    return min(d, len(VIEW_NAMES) - d)


def record_every_level(model: MultiSourceGenerator) -> dict[int, torch.Tensor]:
    """Make every attention level of model's decoder leave its saliency (B, M, h, w) in the
    returned dict, keyed by level, at each forward; the decoder still gets what it asked for."""
    store: dict[int, torch.Tensor] = {}
    asked: dict[int, bool] = {}

    def force(module, args, kwargs, level):
        asked[level] = bool(kwargs.get("return_saliency", len(args) > 3 and args[3]))
        return args[:3], {"return_saliency": True}

    def keep(module, args, kwargs, output, level):
        store[level] = output[1]
        return output if asked[level] else output[0]

    for level, fusion in enumerate(model.generator.decoder.fusion):
        fusion.register_forward_pre_hook(lambda m, a, k, level=level: force(m, a, k, level), with_kwargs=True)
        fusion.register_forward_hook(lambda m, a, k, o, level=level: keep(m, a, k, o, level), with_kwargs=True)
    return store


def print_table(title: str, by_steps: dict[int, list[tuple[str, list[float]]]]) -> None:
    """by_steps: view difference -> (the tuple's person, its sources' saliencies) per tuple."""
    print(title)
    print("| view difference | sources | tuples | persons | mean saliency on the target's person [95% interval] |")
    print("|---|---|---|---|---|")
    for steps in sorted(by_steps):
        persons = [person for person, _ in by_steps[steps]]
        per_tuple_means = np.array([np.mean(v) for _, v in by_steps[steps]])
        low, high = bootstrap_interval(per_tuple_means, persons=persons)
        count = sum(len(v) for _, v in by_steps[steps])
        print(f"| {45 * steps} degrees | {count} | {len(persons)} | {count_persons(persons)} | "
              f"{per_tuple_means.mean():.4f} [{low:.4f}, {high:.4f}] |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint or exported generator")
    parser.add_argument("--tuples", type=Path, required=True, help="synthetic test tuples (an evaluation's test_tuples.csv)")
    parser.add_argument("--sources", type=int, default=5, help="M, the sources used per tuple (default: 5)")
    parser.add_argument("--all-levels", action="store_true",
                        help="a table for every attention level of the decoder, not only the finest")
    args = parser.parse_args()
    model = MultiSourceGenerator.from_checkpoint(args.checkpoint)
    levels = record_every_level(model) if args.all_levels else {}
    folder = open_folder(model.config.data, model.image_size)
    tuples = read_tuples_csv(args.tuples)
    dataset = TupleDataset(folder, tuples)
    by_level: dict[int, dict[int, list[tuple[str, list[float]]]]] = {}
    with torch.no_grad():
        for start in range(0, len(tuples), 32):
            items = [dataset[(i, args.sources)] for i in range(start, min(start + 32, len(tuples)))]
            batch = collate_tuples(items)
            maps = {0: model.generate_batch(batch).saliency}  # (B, M, H, W)
            maps.update({r: F.interpolate(s, size=model.image_size) for r, s in levels.items() if r})
            masks = [person_mask(kp.numpy(), model.image_size) > 0 for kp in batch["target_kp"]]
            for level, saliency in maps.items():
                saliency = saliency.cpu().numpy()
                for b, i in enumerate(range(start, start + len(items))):
                    sources, target = tuples[i]
                    mask = masks[b]
                    per_tuple: dict[int, list[float]] = {}
                    for m, name in enumerate(sources[: args.sources]):
                        per_tuple.setdefault(view_steps(name, target), []).append(float(saliency[b, m][mask].mean()))
                    for steps, values in per_tuple.items():
                        by_level.setdefault(level, {}).setdefault(steps, []).append((folder.identity_fn(target), values))
    print(f"{args.checkpoint}: {len(tuples)} tuples, M = {args.sources}; even share 1/M = {1 / args.sources:.3f}")
    for level in sorted(by_level):
        print_table(f"\nattention level {level} (stride {2 ** level})", by_level[level])


if __name__ == "__main__":
    main()
