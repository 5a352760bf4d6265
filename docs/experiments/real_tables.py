"""Tables of the real-photo study (docs/experiments/real_study.sh), pooled over its folds.

    python docs/experiments/real_tables.py folds runs/real-study            # rows: models, baselines
    python docs/experiments/real_tables.py curve runs/real-study/curve --config default

Each fold's msgen.evaluate run (evaluation.json) keeps every tuple's scores and person. The folds'
test persons are disjoint and together every person, so the per-tuple scores of all folds are
pooled (each person tested once, by the model of its fold) and every interval resamples PERSONS
(a cluster bootstrap: a person's tuples are drawn together), means over tuples. Paired differences
(model minus warp baseline, M = 2 minus M = 1 on the same tuples, configuration against
configuration) are resampled by person too, so what a person's tuples share cancels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from msgen.evaluation import intervals

METRICS = {"ssim": "SSIM (GFLA)", "ssim_256": "SSIM_256", "mask_ssim": "mask-SSIM", "lpips": "LPIPS"}
SET_METRICS = {"fid_tf": "FID (TF graph)", "kid": "KID"}
WARP = "warp baseline"
MS = (1, 2)


def interval(values: np.ndarray, persons: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean of ``values`` resampling ``persons``."""
    return intervals.bootstrap_interval(values, seed=seed, persons=persons)


def load(path: Path) -> dict:
    """{(method, M): {"persons": (N,), "tuples": (N,) str ids, metric: (N,)}} of one evaluation.json."""
    report = json.loads(path.read_text())
    out = {}
    for method, by_m in report["per_tuple"].items():
        for m, scores in by_m.items():
            index = scores["tuple_index"]
            entry = {"persons": np.asarray([report["tuple_persons"][i] for i in index]),
                     "tuples": np.asarray(["|".join(report["tuple_names"][i]) for i in index])}
            entry.update({k: np.asarray(v, np.float64) for k, v in scores.items() if k in METRICS})
            out[(method, int(m))] = entry
    return out


def set_metrics(path: Path) -> dict:
    """{(method, M): {"fid_tf": float, "kid": float}} of one evaluation.json: FID and KID are set
    metrics, one number per row of each fold (KID's mean over its subsets); absent: unavailable."""
    report = json.loads(path.read_text())
    out = {}
    for row in report["rows"]:
        values = {}
        if row.get("fid_tf") is not None:
            values["fid_tf"] = float(row["fid_tf"])
        if row.get("kid") is not None:
            values["kid"] = float(row["kid"][0])
        out[(row["method"], int(row["M"]))] = values
    return out


def set_cell(folds: list[dict], key: tuple[str, int], metric: str) -> str:
    """A set metric over folds: the mean of the folds' values (each fold's own generated and real
    sets; FID is biased upwards at these sizes, KID is not), with their range."""
    values = [f[key][metric] for f in folds if metric in f.get(key, {})]
    if not values:
        return "unavailable"
    digits = 2 if metric == "fid_tf" else 4
    return (f"{np.mean(values):.{digits}f} ({min(values):.{digits}f} to {max(values):.{digits}f}; "
            f"{len(values)} folds)")


def pool(parts: list[dict]) -> dict:
    """Concatenate the per-tuple entries of several folds, key by key."""
    keys = set.intersection(*(set(p) for p in parts)) if parts else set()
    return {key: {field: np.concatenate([p[key][field] for p in parts]) for field in parts[0][key]
                  if all(field in p[key] for p in parts)} for key in keys}


def cell(entry: dict, metric: str) -> str:
    if metric not in entry:
        return "unavailable"
    low, high = interval(entry[metric], entry["persons"])
    return f"{entry[metric].mean():.3f} [{low:.3f}, {high:.3f}]"


def paired(a: dict, b: dict, metric: str) -> str:
    """a minus b over the tuples both scored (matched by tuple name), persons resampled."""
    if metric not in a or metric not in b:
        return "unavailable"
    position = {t: i for i, t in enumerate(b["tuples"])}
    keep = [i for i, t in enumerate(a["tuples"]) if t in position]
    diff = a[metric][keep] - b[metric][[position[t] for t in a["tuples"][keep]]]
    persons = a["persons"][keep]
    if len(set(persons)) < 2:
        return "too few persons"
    low, high = interval(diff, persons)
    return f"{diff.mean():+.4f} [{low:+.4f}, {high:+.4f}] ({len(set(persons))} persons)"


def truncated_m1(entry_m1: dict, entry_m2: dict) -> dict:
    """The M = 1 scores of the tuples scored at M = 2 (M = 1 uses their first source), keyed by
    the M = 2 tuple names so ``paired`` matches them."""
    position = {t.split("|")[0] + "|" + t.split("|")[-1]: i for i, t in enumerate(entry_m1["tuples"])}
    rows = [position.get(t.split("|")[0] + "|" + t.split("|")[-1]) for t in entry_m2["tuples"]]
    keep = [j for j, r in enumerate(rows) if r is not None]
    out = {"tuples": entry_m2["tuples"][keep], "persons": entry_m2["persons"][keep]}
    out.update({k: entry_m1[k][[rows[j] for j in keep]] for k in METRICS if k in entry_m1})
    return out


def folds_tables(root: Path) -> str:
    fold_dirs = sorted(d for d in root.glob("fold*") if d.is_dir())
    configs = sorted({p.parent.parent.name for d in fold_dirs for p in d.glob("*/eval/evaluation.json")})
    per_config = {c: [load(d / c / "eval" / "evaluation.json") for d in fold_dirs
                      if (d / c / "eval" / "evaluation.json").is_file()] for c in configs}
    sets = {c: [set_metrics(d / c / "eval" / "evaluation.json") for d in fold_dirs
                if (d / c / "eval" / "evaluation.json").is_file()] for c in configs}
    lines = [f"# Real-photo study: {root}", "",
             f"Folds with an evaluation: {', '.join(d.name for d in fold_dirs)}; configurations: "
             + ", ".join(f"{c} ({len(per_config[c])} folds)" for c in configs) + ".",
             "Intervals: 95% bootstrap over persons (msgen.evaluation.intervals, persons=).", ""]
    if not configs:
        return "\n".join(lines + ["No evaluation yet."]) + "\n"
    pooled = {c: pool(per_config[c]) for c in configs}
    reference = pooled[configs[0]]  # baselines are the same for every configuration of a fold
    header = ["row", "M", "persons (tuples)", *METRICS.values(), *SET_METRICS.values()]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    constant = next((method for method, _ in reference if method.startswith("constant image")), None)
    rows = [(f"model: {c}", pooled[c], "model", sets[c]) for c in configs] + [(WARP, reference, WARP, sets[configs[0]])]
    if constant:
        rows.append((constant, reference, constant, sets[configs[0]]))
    for name, table, method, folds in rows:
        for m in MS:
            entry = table.get((method, m))
            if entry is None:
                continue
            cells = [name, str(m) if method != constant else "any", f"{len(set(entry['persons']))} ({len(entry['persons'])})"]
            cells += [cell(entry, k) for k in METRICS] + [set_cell(folds, (method, m), k) for k in SET_METRICS]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Paired differences (mean [95% interval over persons]):", ""]
    lines += ["| difference | M | " + " | ".join(METRICS.values()) + " |", "|---|---|" + "---|" * len(METRICS)]
    for c in configs:
        t = pooled[c]
        for m in MS:
            if ("model", m) in t and (WARP, m) in reference:
                lines.append(f"| {c} minus warp baseline | {m} | "
                             + " | ".join(paired(t[("model", m)], reference[(WARP, m)], k) for k in METRICS) + " |")
        if ("model", 2) in t and ("model", 1) in t:
            m1 = truncated_m1(t[("model", 1)], t[("model", 2)])
            lines.append(f"| {c}: M = 2 minus M = 1 (same tuples) | 2 vs 1 | "
                         + " | ".join(paired(t[("model", 2)], m1, k) for k in METRICS) + " |")
    for i, a in enumerate(configs):
        for b in configs[i + 1:]:
            for m in MS:
                if ("model", m) in pooled[a] and ("model", m) in pooled[b]:
                    lines.append(f"| {a} minus {b} | {m} | " + " | ".join(
                        paired(pooled[a][("model", m)], pooled[b][("model", m)], k) for k in METRICS) + " |")
    lines += ["", "FID (TF graph) and KID: one value per fold (its test tuples against its training persons' "
              "images), here the mean over folds and their range; unavailable without `python -m msgen.weights fetch`."]
    return "\n".join(lines) + "\n"


def curve_table(root: Path, config: str) -> str:
    lines = [f"# Learning curve: {config} at fold 0 over the number of training persons ({root})", "",
             "| training persons | M | persons (tuples) | " + " | ".join(f"model {v}" for v in METRICS.values())
             + " | model minus warp, mask-SSIM | model minus warp, SSIM (GFLA) | model minus warp, LPIPS |",
             "|---|---|---|" + "---|" * (len(METRICS) + 3)]
    for point in sorted(root.iterdir(), key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0)):
        path = point / config / "eval" / "evaluation.json"
        if not path.is_file():
            continue
        split = json.loads((point / "data" / "split.json").read_text())
        table = load(path)
        for m in MS:
            if ("model", m) not in table:
                continue
            model, warp = table[("model", m)], table[(WARP, m)]
            lines.append(f"| {len(split['train_persons'])} | {m} | {len(set(model['persons']))} ({len(model['persons'])}) | "
                         + " | ".join(cell(model, k) for k in METRICS)
                         + f" | {paired(model, warp, 'mask_ssim')} | {paired(model, warp, 'ssim')} "
                           f"| {paired(model, warp, 'lpips')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("folds", "curve"), help="folds: the study's tables; curve: the learning curve")
    parser.add_argument("root", type=Path, help="the study's OUT (folds) or OUT/curve (curve)")
    parser.add_argument("--config", default="default", help="the configuration of the curve (default: default)")
    args = parser.parse_args(argv)
    print(folds_tables(args.root) if args.mode == "folds" else curve_table(args.root, args.config), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
