"""The study's tables in the paper's form (variants x M), from the evaluations study.sh wrote.

    python docs/experiments/study_tables.py [runs/study]

Prints Markdown: mask-SSIM and SSIM_256 per variant and M with 95% bootstrap intervals over
persons (``msgen.evaluation.intervals``: a person's tuples are resampled together), the warp
baseline and constant-image rows of the same tuples, then the paired differences that carry the
claims (M = 5 minus M = 1 per variant; full minus avg, full minus att2d, att2d minus avg and avg
minus avg-nod at each M), all computed from the per-tuple scores in evaluation.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from msgen.data.folder import market_identity
from msgen.evaluation import bootstrap_interval, count_persons, paired_difference

VARIANTS = ("avg-nod", "avg", "att2d", "full")
PAIRS = (("full", "avg"), ("full", "att2d"), ("att2d", "avg"), ("avg", "avg-nod"))
METRICS = (("mask_ssim", "mask-SSIM"), ("ssim_256", "SSIM_256"), ("lpips", "LPIPS"))  # LPIPS: lower is better


def load(out: Path) -> dict[str, dict]:
    reports = {}
    for variant in VARIANTS:
        path = out / variant / "eval" / "evaluation.json"
        if path.is_file():
            reports[variant] = json.loads(path.read_text())
    names = {json.dumps(r["tuple_names"]) for r in reports.values()}
    if len(names) > 1:
        raise SystemExit("the evaluations scored different tuples: they cannot be compared pair by pair")
    return reports


def persons_of(report: dict) -> list[str]:
    """Each tuple's person: evaluation.json's tuple_persons; evaluations written before it was
    recorded get it from the target's name by the synthetic (and Market) rule, the study's set."""
    return report.get("tuple_persons") or [market_identity(names[-1]) for names in report["tuple_names"]]


def cell(values: list[float], persons: list[str]) -> str:
    low, high = bootstrap_interval(np.asarray(values), persons=persons)
    return f"{np.mean(values):.3f} [{low:.3f}, {high:.3f}]"


def diff(a: list[float], b: list[float], persons: list[str]) -> str:
    d = paired_difference(np.asarray(a), np.asarray(b), persons=persons)
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/study")
    reports = load(out)
    if not reports:
        raise SystemExit(f"no evaluation under {out}/<variant>/eval")
    any_report = next(iter(reports.values()))
    ms = sorted(any_report["per_tuple"]["model"], key=int)
    n = len(any_report["tuple_names"])
    persons = persons_of(any_report)  # the same tuples in every report (load)
    # The metrics every evaluation scored (LPIPS needs `python -m msgen.weights fetch`).
    metrics = [(key, title) for key, title in METRICS
               if all(key in r["per_tuple"]["model"][ms[0]] for r in reports.values())]
    for key, title in metrics:
        print(f"\n{title}, {n} held-out tuples of {count_persons(persons)} persons at every M, "
              f"mean [95% bootstrap interval over persons]\n")
        print("| variant | " + " | ".join(f"M = {m}" for m in ms) + " |")
        print("|---|" + "---|" * len(ms))
        for variant, report in reports.items():
            print(f"| {variant} | " + " | ".join(cell(report["per_tuple"]["model"][m][key], persons) for m in ms) + " |")
        for method in ("warp baseline", "constant image (training mean colour)"):
            scores = any_report["per_tuple"][method]
            print(f"| {method} | " + " | ".join(cell(scores[m][key] if m in scores else scores[next(iter(scores))][key],
                                                    persons) for m in ms) + " |")
    top, low = ms[-1], ms[0]
    print("\nPaired differences of mask-SSIM, mean [95% paired bootstrap interval over persons]\n")
    print(f"| variant | M = {top} minus M = {low} | model minus warp baseline at M = {top} |")
    print("|---|---|---|")
    for variant, report in reports.items():
        scores = report["per_tuple"]
        print(f"| {variant} | {diff(scores['model'][top]['mask_ssim'], scores['model'][low]['mask_ssim'], persons)} | "
              f"{diff(scores['model'][top]['mask_ssim'], scores['warp baseline'][top]['mask_ssim'], persons)} |")
    for key, title in metrics:
        print(f"\n{title}, paired\n")
        print("| pair | " + " | ".join(f"M = {m}" for m in ms) + " |")
        print("|---|" + "---|" * len(ms))
        for a, b in PAIRS:
            if a in reports and b in reports:
                cells = [diff(reports[a]["per_tuple"]["model"][m][key], reports[b]["per_tuple"]["model"][m][key],
                              persons) for m in ms]
                print(f"| {a} minus {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
