"""Where the model's LPIPS deficit against the warp baseline lives: on the person or around it.

Scores three images of the same held-out tuples: the model's, the warp baseline's, and a
composite that keeps the model's pixels inside the target's person mask (Ma et al.'s, the one
mask-SSIM uses) and the warp baseline's outside it. If the composite beats the warp baseline, the
model draws the person better and loses on the background (a grey blur where the warp copies a
source's scene); if not, the person itself is drawn worse. An analysis, not a method: msgen's
generator does not composite.

    python docs/experiments/background_swap.py RUN/eval/evaluation.json --checkpoint CKPT --data DIR

reads the tuples (and their persons) that evaluation scored and prints, for each M, the three rows
and the paired differences with 95% intervals over persons. Needs the LPIPS network
(`python -m msgen.weights fetch`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from msgen.api import MultiSourceGenerator
from msgen.data import PoseImageFolder, TupleDataset
from msgen.evaluation import paired_difference
from msgen.evaluation.baselines import warp_baseline
from msgen.evaluation.evaluator import Method, Networks, score_methods
from msgen.evaluation.lpips import load_lpips
from msgen.pose import person_mask

METRICS = ("ssim", "ssim_256", "mask_ssim", "lpips")


def composite(model: MultiSourceGenerator):
    def make(batch: dict) -> torch.Tensor:
        image = model.generate_batch(batch).image
        size = tuple(image.shape[-2:])
        masks = np.stack([person_mask(kp, size) for kp in batch["target_kp"].cpu().numpy()])
        inside = torch.from_numpy(masks).to(image.device)[:, None].bool()
        return torch.where(inside, image, warp_baseline(batch))
    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evaluation", type=Path, help="an evaluation.json of msgen.evaluate: its tuples are scored")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the model (a checkpoint or exported .safetensors)")
    parser.add_argument("--data", type=Path, required=True, help="the dataset folder the evaluation scored")
    args = parser.parse_args()
    report = json.loads(args.evaluation.read_text())
    tuples = [(names[:-1], names[-1]) for names in report["tuple_names"]]
    model = MultiSourceGenerator.from_checkpoint(args.checkpoint)
    folder = PoseImageFolder(args.data / "images", args.data / "annotation.csv",
                             image_size=tuple(model.generator.config.image_size))
    methods = [Method("model", lambda batch: model.generate_batch(batch).image),
               Method("warp baseline", warp_baseline), Method("model on the person, warp around it", composite(model))]
    networks = Networks(lpips=load_lpips(None, None, "cpu"))
    with torch.no_grad():
        results = score_methods(methods, TupleDataset(folder, tuples), report["sources"], networks=networks)
    by = {(r.method, r.num_sources): r for r in results}
    for m in report["sources"]:
        who = by[("model", m)].persons
        print(f"\nM = {m}: {len(who)} tuples of {len(set(who))} persons")
        print("| row | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
        for method in methods:
            row = by[(method.name, m)].per_tuple
            print(f"| {method.name} | " + " | ".join(f"{row[k].mean():.4f}" for k in METRICS) + " |")
        for a, b in (("model on the person, warp around it", "warp baseline"), ("model on the person, warp around it", "model")):
            cells = []
            for k in METRICS:
                d = paired_difference(by[(a, m)].per_tuple[k], by[(b, m)].per_tuple[k], persons=who)
                cells.append(f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
            print(f"| {a} minus {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
