"""Where the model's LPIPS deficit against the warp baseline lives: on the person or around it.

Scores three images of the same held-out tuples: the model's, the warp baseline's, and a
composite that keeps the model's pixels inside the target's person mask (Ma et al.'s, the one
mask-SSIM uses) and the warp baseline's outside it. If the composite beats the warp baseline, the
model draws the person better and loses on the background (a grey blur where the warp copies a
source's scene); if not, the person itself is drawn worse. An analysis, not a method: msgen's
generator does not composite.

    python docs/experiments/background_swap.py OUT/fold*/CONFIG

takes runs of docs/experiments/real_study.sh, scores each run's model on the tuples its
evaluation scored (RUN/eval/evaluation.json; the persons of different folds are told apart), and
prints, for each M, the three rows and the paired differences with 95% intervals over persons.
Needs the LPIPS network (`python -m msgen.weights fetch`).
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
MODEL, WARP, COMPOSITE = "model", "warp baseline", "model on the person, warp around it"


def composite(model: MultiSourceGenerator):
    def make(batch: dict) -> torch.Tensor:
        image = model.generate_batch(batch).image
        size = tuple(image.shape[-2:])
        masks = np.stack([person_mask(kp, size) for kp in batch["target_kp"].cpu().numpy()])
        inside = torch.from_numpy(masks).to(image.device)[:, None].bool()
        return torch.where(inside, image, warp_baseline(batch))
    return make


def score_run(run: Path) -> list:
    """The three rows on the tuples RUN/eval/evaluation.json scored, with RUN's last checkpoint and
    the dataset folder RUN/../data (real_study.sh's layout)."""
    report = json.loads((run / "eval" / "evaluation.json").read_text())
    tuples = [(names[:-1], names[-1]) for names in report["tuple_names"]]
    checkpoint = Path(report["checkpoint"])
    model = MultiSourceGenerator.from_checkpoint(checkpoint)
    data = run.parent / "data"
    folder = PoseImageFolder(data / "images", data / "annotation.csv",
                             image_size=tuple(model.generator.config.image_size))
    methods = [Method(MODEL, lambda batch: model.generate_batch(batch).image), Method(WARP, warp_baseline),
               Method(COMPOSITE, composite(model))]
    networks = Networks(lpips=load_lpips(None, None, "cpu"))
    with torch.no_grad():
        return score_methods(methods, TupleDataset(folder, tuples), report["sources"], networks=networks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help=(
        "runs of docs/experiments/real_study.sh (OUT/fold<k>/<config>), each evaluated: their tuples are pooled"))
    args = parser.parse_args()
    scores: dict[tuple[str, int], dict[str, list]] = {}
    for run in args.runs:
        for result in score_run(run):
            pooled = scores.setdefault((result.method, result.num_sources), {k: [] for k in (*METRICS, "persons")})
            for k in METRICS:
                pooled[k].extend(result.per_tuple[k].tolist())
            pooled["persons"].extend(f"{run.parent.name}/{p}" for p in result.persons)
    for m in sorted({m for _, m in scores}):
        who = scores[(MODEL, m)]["persons"]
        print(f"\nM = {m}: {len(who)} tuples of {len(set(who))} persons, {len(args.runs)} run(s)")
        print("| row | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
        for name in (MODEL, WARP, COMPOSITE):
            print(f"| {name} | " + " | ".join(f"{np.mean(scores[(name, m)][k]):.4f}" for k in METRICS) + " |")
        for a, b in ((COMPOSITE, WARP), (COMPOSITE, MODEL), (MODEL, WARP)):
            cells = []
            for k in METRICS:
                d = paired_difference(np.array(scores[(a, m)][k]), np.array(scores[(b, m)][k]), persons=who)
                cells.append(f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
            print(f"| {a} minus {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
