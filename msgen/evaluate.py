"""``python -m msgen.evaluate``: the table the field reports (FID, KID, LPIPS, SSIM, mask-SSIM, IS)
per M, with reference rows and 95% intervals.

    python -m msgen.evaluate --checkpoint CKPT [--data DIR] [--sources 1 2 3 5] [--out OUT]
    python -m msgen.evaluate --data DIR --identity market          # the reference rows only
    python -m msgen.evaluate compare A/evaluation.json B/evaluation.json [--method model]

DIR is a dataset folder (DIR/images, DIR/annotation.csv, DIR/split.json), the same folder
``msgen.train --data.root`` takes; default: the checkpoint's training data. The test tuples are
the split's (``msgen.data.split.run_split``: split.json, else the persons held out by the
checkpoint's data.test_fraction and data.seed, exactly as training held them out): never the
validation persons training chose best.pt on. Each M scores the tuples that hold M sources or more,
truncated to M, so every test person serves each M its images allow (M = 1 from 2 images); the
table says how many persons each M rests on, and evaluation.json keeps each scored tuple's index
and person. By default the first 500 tuples (about a minute on 2 CPU cores), ``--max-tuples all`` for every one.
With an official split (``msgen.data.prepare --official``) ``--sources 1 --max-tuples all`` scores
the 12,000 standard pairs. The person rule (identity) is the dataset folder's (summary.json), unless
--identity overrides it.
The outputs go to --out, by default runs/eval-NAME (NAME from the checkpoint's file and run).

Rows: the model; the warp baseline (each source warped with its own part affines and masks, the
warped sources averaged; no learning); a constant image of the training mean colour; the ground
truth (FID and IS of the test images themselves). Columns (docs/EVALUATION.md): SSIM as GFLA's
script computes it (51x51 window; images >= 51x51), SSIM_256 (Gaussian window, data range
--data-range), mask-SSIM, LPIPS (v0.1 AlexNet), FID (TF graph) and KID (the TF 2015-12-05 FID
Inception graph's pool features, pytorch-fid's and clean-fid's network), FID (torchvision, GFLA)
(torchvision's Inception-v3, GFLA's script), IS and mask-IS (10 splits; they need a classifier
head, which only torchvision's Inception-v3 file holds). The real set is the split's training
images; its features are cached in DIR/.msgen-cache/. Per-tuple metrics carry a 95% bootstrap
interval over PERSONS (a person's tuples are not independent: persons are drawn with replacement,
all their tuples kept), and evaluation.json keeps every per-tuple score, each tuple's person
(``tuple_persons``, beside ``tuple_names``) and the PAIRED intervals of the differences (model at the largest M minus the smallest; model minus warp baseline at
each M); ``compare`` pairs two runs' evaluation.json tuple by tuple. The FID graph and LPIPS
come from msgen's cache (``python -m msgen.weights fetch`` puts them there), the options or
their environment variables; without them a column says "unavailable" and why. Evaluation
downloads nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from msgen.data import PoseImageFolder, TupleDataset, read_tuples_csv, write_tuples_csv
from msgen.data.split import SPLIT_FILE, run_split
from msgen.checkpoint import CheckpointError
from msgen.errors import CommandLineParser, UsageError
from msgen.evaluation import (
    DATA_RANGES,
    IS_SPLITS,
    PAIRWISE,
    FeatureStats,
    Method,
    MethodResult,
    MetricUnavailable,
    Networks,
    constant_method,
    count_persons,
    ground_truth_method,
    load_fid_inception,
    load_inception_model,
    load_lpips,
    mean_colour,
    paired_difference,
    real_fid_features,
    real_statistics,
    score_methods,
    summarise,
    tuple_persons,
    warp_baseline,
)
from msgen.pose.framing import check_sizes
from msgen.training.config import DataConfig, IDENTITIES
from msgen.training.data import dataset_dir, ensure_synthetic, identity_function, resolve_rules

PROG = "python -m msgen.evaluate"
MAX_TEST_TUPLES = 12000  # the standard Market-1501 test pairs
# The default: the split's first 500 tuples, the study's set (docs/RESULTS.md), scored at M = 1, 2,
# 3, 5 in about a minute on 2 CPU cores; all 12,000 took 23 min there. --max-tuples all scores them.
DEFAULT_TUPLES = 500
COLUMNS = {"ssim": "SSIM (GFLA)", "ssim_256": "SSIM_256", "mask_ssim": "mask-SSIM", "lpips": "LPIPS"}
WARP = "warp baseline"


def _fmt(summary: dict | None) -> str:
    if summary is None:
        return "—"
    return f"{summary['mean']:.3f} [{summary['low']:.3f}, {summary['high']:.3f}]"


SET_COLUMNS = {"fid_tf": "FID (TF graph)", "kid": "KID", "fid": "FID (torchvision, GFLA)", "is": "IS",
               "mask_is": "mask-IS"}
TIMED = {"ssim": "SSIM_256 and SSIM (GFLA)", "mask_ssim": "mask-SSIM", "lpips": "LPIPS",
         "fid_tf": "FID (TF graph) and KID: the graph's features", "inception": "torchvision Inception-v3 (FID, IS)"}


def _set_cell(row: dict, key: str, notes: dict) -> str:
    value = row.get(key)
    if value is None:
        note = "is" if key == "mask_is" else key
        return "unavailable" if note in notes else "—"
    if key == "kid":
        return f"{value[0]:.4f} ± {value[1]:.4f}"
    if key in ("is", "mask_is"):
        return f"{value[0]:.2f} ± {value[1]:.2f}"
    return f"{value:.2f}"


def markdown_table(report: dict) -> str:
    """The table as Markdown: one line per (method, M), then the notes."""
    notes = report["notes"]
    header = ["method", "M", *COLUMNS.values(), *SET_COLUMNS.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report["rows"]:
        cells = [row["method"], str(row["M"]) if row["per_m"] else "any"]
        for key in COLUMNS:
            if not row["pairwise"]:
                cells.append("—")
            elif key in row["metrics"]:
                cells.append(_fmt(row["metrics"][key]))
            else:
                cells.append("unavailable" if key in notes else "—")
        cells += [_set_cell(row, key, notes) for key in SET_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"{report['num_tuples']} test tuples: {report['tuples']}. Mean [95% bootstrap interval over "
              f"persons]; KID: mean ± std over subsets; IS: mean ± std over {IS_SPLITS} splits. SSIM_256 data "
              f"range: {report['data_range']}. FID and KID real set: {report.get('real_set')}.",
              _rests_on(report)]
    names = {**COLUMNS, **SET_COLUMNS, "is": "IS and mask-IS"}
    lines += [f"{names[key]} unavailable: {reason}." for key, reason in notes.items()]
    timed = report.get("timings") or {}
    if any(timed.get(f"{key}_images") for key in TIMED):
        lines += ["", "Seconds per 100 scored images (tuples of one row at one M), this run's device:"]
        lines += [f"- {label}: {100 * timed[key] / timed[f'{key}_images']:.2f} s"
                  for key, label in TIMED.items() if timed.get(f"{key}_images")]
    if report["paired"]:
        lines += ["", "Paired differences (same tuples; 95% bootstrap interval of the mean difference):", ""]
        for item in report["paired"]:
            lines.append(f"- {item['what']}, {COLUMNS[item['metric']]}: {item['mean']:+.4f} "
                         f"[{item['low']:+.4f}, {item['high']:+.4f}] ({_counts(item)})")
    return "\n".join(lines) + "\n"


def _counts(summary: dict) -> str:
    """"n tuples of p persons" of a summary or paired item (files from before persons: tuples only)."""
    persons = f" of {summary['persons']} persons" if "persons" in summary else ""
    return f"{summary['n']} tuples{persons}"


def _rests_on(report: dict) -> str:
    """What each M's scores rest on: its tuples and their persons."""
    counts = {}
    for row in report["rows"]:
        if row["pairwise"] and row["metrics"]:
            counts.setdefault(row["M"], _counts(next(iter(row["metrics"].values()))))
    return "Each M rests on: " + "; ".join(f"M = {m}: {text}" for m, text in sorted(counts.items())) + "."


NO_HEAD = ("they need an Inception classifier head: the FID (TF graph) file holds the network up to its "
           "pool features only, and torchvision's Inception-v3 (--inception-weights) is not here")


def _networks(args: argparse.Namespace, log: Callable[[str], None]) -> tuple[Networks, dict[str, str]]:
    networks, notes = Networks(batch_size=args.batch_size), {}
    if args.fid_tf:
        try:
            networks.fid_inception = load_fid_inception(args.fid_weights, args.device)
            networks.fid_inception_note = None
        except MetricUnavailable as error:
            notes["fid_tf"] = notes["kid"] = str(error)
            log(f"FID (TF graph), KID: unavailable: {error}")
    else:
        notes["fid_tf"] = notes["kid"] = "left out (--no-fid-tf)"
    try:
        networks.inception = load_inception_model(args.inception_weights, args.device)
        networks.inception_note = None
    except MetricUnavailable as error:
        notes["fid"] = str(error)
        notes["is"] = f"{NO_HEAD} ({error})"
        log(f"FID (torchvision, GFLA), IS: unavailable: {error}")
    try:
        networks.lpips = load_lpips(args.alexnet_weights, args.lpips_heads, args.device)
        networks.lpips_note = None
    except MetricUnavailable as error:
        notes["lpips"] = str(error)
        log(f"LPIPS: unavailable: {error}")
    return networks, notes


def _test_tuples(args: argparse.Namespace, folder: PoseImageFolder, root: Path, data: DataConfig,
                 max_m: int, min_m: int = 1) -> tuple[list, str, list[str]]:
    """(tuples of min_m to max_m sources, where they come from, the training persons' image names)."""
    split = run_split(root, folder.identities, data.test_fraction, data.seed, max_m, args.max_tuples,
                      validation_fraction=data.validation_fraction)
    # The validation persons are training-side data too (FID's real set, the mean colour, --tuples' leak check).
    train = set(split.train_persons) | set(split.validation_persons)
    train_names = [n for n in folder.names if folder.identity_fn(n) in train]
    if args.tuples is not None:
        if not args.tuples.is_file():
            raise UsageError(f"--tuples: file not found: {args.tuples}")
        tuples = read_tuples_csv(args.tuples)
        most = max((len(s) for s, _ in tuples), default=0)
        if most < max_m:
            raise UsageError(f"--tuples {args.tuples} has tuples of up to {most} sources; --sources asks for M={max_m}")
        leaked = sorted({folder.identity_fn(t) for _, t in tuples} & train)
        if leaked:
            raise UsageError(f"--tuples {args.tuples}: persons {', '.join(leaked[:5])} are training persons of {root}")
        origin = f"{args.tuples}"
    else:
        tuples = [(s[:max_m], t) for s, t in split.test_tuples if len(s) >= min_m]
        origin = (f"{root / SPLIT_FILE}" if (root / SPLIT_FILE).is_file() else "derived split") + f" ({split.origin})"
    kept = set(folder.names)
    usable = [(s[:max_m], t) for s, t in tuples if all(n in kept for n in (*s[:max_m], t))]
    dropped = len(tuples) - len(usable)
    if dropped:
        origin += f"; {dropped} tuples skipped for images the folder dropped or lacks"
    if not usable:
        raise UsageError(f"no test tuple of {max_m} sources in {root} ({origin})")
    return usable[: args.max_tuples], origin, train_names


def _rows(results: Sequence[MethodResult], methods: Sequence[Method], seed: int) -> list[dict]:
    by_name = {method.name: method for method in methods}
    rows = []
    order = [method.name for method in methods]
    for result in sorted(results, key=lambda r: (order.index(r.method), r.num_sources)):
        method = by_name[result.method]
        rows.append({
            "method": result.method, "M": result.num_sources, "per_m": method.per_m, "pairwise": method.pairwise,
            "metrics": {k: summarise(v, seed, result.persons) for k, v in result.per_tuple.items()},
            "fid": result.fid, "is": result.inception, "mask_is": result.mask_inception,
            "fid_tf": result.fid_tf, "kid": result.kid,
        })
    return rows


def _on_tuples(result: MethodResult, metric: str, tuples: np.ndarray) -> np.ndarray:
    """``result``'s per-tuple ``metric`` on the dataset tuples ``tuples`` (which it scored)."""
    position = {int(t): i for i, t in enumerate(result.tuples)}
    return result.per_tuple[metric][[position[int(t)] for t in tuples]]


def _paired(results: Sequence[MethodResult], seed: int) -> list[dict]:
    """Per-tuple metrics: each M-dependent row at its largest M minus its smallest, on the tuples
    that serve the largest M; the model minus the warp baseline at every M."""
    table = {(r.method, r.num_sources): r for r in results}
    items = []
    for metric in PAIRWISE:
        for name in dict.fromkeys(name for name, _ in table):
            ms = sorted(m for n, m in table if n == name)
            if len(ms) > 1 and metric in table[(name, ms[-1])].per_tuple:
                high, low = table[(name, ms[-1])], table[(name, ms[0])]
                if len(high.tuples) < 2:
                    continue
                items.append({"what": f"{name} M={ms[-1]} minus M={ms[0]}", "metric": metric,
                              **paired_difference(high.per_tuple[metric], _on_tuples(low, metric, high.tuples),
                                                  seed=seed, persons=high.persons)})
        for m in sorted(m for n, m in table if n == "model"):
            if (WARP, m) in table and metric in table[("model", m)].per_tuple and len(table[("model", m)].tuples) >= 2:
                items.append({"what": f"model minus {WARP} at M={m}", "metric": metric,
                              **paired_difference(table[("model", m)].per_tuple[metric],
                                                  table[(WARP, m)].per_tuple[metric], seed=seed,
                                                  persons=table[("model", m)].persons)})
    return items


def _fingerprint(network: torch.nn.Module) -> str:
    """A short digest of a feature network's weights (each tensor's name, shape and first 4096
    values): the real-set caches are keyed by the network that made them, not by a file name, so
    a network handed in another way (or a stand-in) never reads another network's features."""
    digest = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().flatten()[:4096].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _real_set_key(network: torch.nn.Module, folder: PoseImageFolder, names: Sequence[str]) -> str:
    """The cache key of a real set's features: the network's weights, the image size, the names."""
    return hashlib.sha256(json.dumps([_fingerprint(network), list(folder.image_size), list(names)]).encode()).hexdigest()[:16]


def _cached_real_statistics(args: argparse.Namespace, folder: PoseImageFolder, root: Path, names: Sequence[str],
                            networks: Networks, log: Callable[[str], None]) -> FeatureStats:
    """The real set's Inception statistics, cached in DIR/.msgen-cache/ (as GFLA caches its
    statistics.npz): the key covers the network's weights (``_fingerprint``), the image size and
    the image names, so a change of any recomputes. A folder that cannot be written to just gets
    no cache."""
    key = _real_set_key(networks.inception, folder, names)
    path = root / ".msgen-cache" / f"fid-real-{key}.npz"
    if path.is_file():
        log(f"FID real set: cached statistics {path}")
        return FeatureStats.load(path)
    stats = real_statistics(folder, names, networks.inception, args.batch_size, progress=args.progress)
    try:
        path.parent.mkdir(exist_ok=True)
        stats.save(path)
    except OSError as error:
        log(f"FID real set: not cached ({error})")
    return stats


def _cached_real_fid_features(args: argparse.Namespace, folder: PoseImageFolder, root: Path, names: Sequence[str],
                              networks: Networks, log: Callable[[str], None]) -> np.ndarray:
    """The real set's FID Inception (TF graph) features (N, 2048), cached in DIR/.msgen-cache/: the
    key covers the network's weights (``_fingerprint``), the image size and the image names."""
    key = _real_set_key(networks.fid_inception, folder, names)
    path = root / ".msgen-cache" / f"fid-tf-real-{key}.npy"
    if path.is_file():
        log(f"FID (TF graph) real set: cached features {path}")
        return np.load(path)
    features = real_fid_features(folder, names, networks.fid_inception, args.batch_size, args.progress, args.device)
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npy")
        np.save(tmp, features)
        tmp.replace(path)
    except OSError as error:
        log(f"FID (TF graph) real set: not cached ({error})")
    return features


def run(args: argparse.Namespace, log: Callable[[str], None] = lambda message: None) -> dict:
    """Evaluate and write OUT/evaluation.md, evaluation.json and test_tuples.csv; returns the report."""
    model = None
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            raise UsageError(f"--checkpoint: file not found: {args.checkpoint}")
        from msgen.api import MultiSourceGenerator

        model = MultiSourceGenerator.from_checkpoint(args.checkpoint, device=args.device, ops=args.ops)
        data = model.config.data
        image_size = tuple(model.image_size)
    elif args.data is None:
        raise UsageError("--data: give the dataset folder (or --checkpoint to use its training data)")
    else:
        data, image_size = DataConfig(root=str(args.data)), None
    if args.data is not None:
        if not args.data.is_dir():
            raise UsageError(f"--data {args.data}: no such folder; expected a dataset folder holding images/, "
                             f"annotation.csv and split.json")
        # Another folder than the checkpoint's: its own rules (summary.json) apply.
        data = DataConfig(**{**data.__dict__, "root": str(args.data), "dataset": "folder", "identity": None,
                             "framing": None})
    if args.identity:
        data = DataConfig(**{**data.__dict__, "identity": args.identity})
    if data.root is None and image_size is not None:
        # The checkpoint trained on the synthetic set: made from its seed if absent, as training does.
        ensure_synthetic(data, image_size, log)
    try:
        root = dataset_dir(data, image_size or (0, 0))
    except UsageError as error:
        raise UsageError(str(error).replace("--data.root", "--data")) from None
    data, notices = resolve_rules(data, image_size if args.resize else None)  # without --resize: an error below
    for notice in notices:
        log(notice.replace("--data.identity", "--identity"))
    folder = PoseImageFolder(root / "images", root / "annotation.csv", image_size=image_size,
                             identity_fn=identity_function(data.identity), drop_junk=data.identity == "market",
                             resize=args.resize or image_size is None)
    if image_size is not None:
        check_sizes(folder.image_sizes(), image_size, f"--data {root}", args.resize, "--resize")
    if image_size is not None and not args.resize:
        folder.verify_images()
    tuples, origin, train_names = _test_tuples(args, folder, root, data, max(args.sources), min(args.sources))
    log(f"{len(tuples)} test tuples: {origin}")
    unserved = [m for m in args.sources if not any(len(s) >= m for s, _ in tuples)]
    if unserved:
        log(f"M={', '.join(map(str, unserved))}: no test tuple holds that many sources (no test person has enough "
            "images); not scored")
        args.sources = [m for m in args.sources if m not in unserved]
    networks, notes = _networks(args, log)
    if min(folder.image_size) < 51:
        notes["ssim"] = f"GFLA's 51x51 window does not fit {folder.image_size[0]}x{folder.image_size[1]} images"
    methods = []
    if model is not None:
        methods.append(Method("model", lambda batch: model.generate_batch(batch).image))
    methods += [Method(WARP, warp_baseline), constant_method(mean_colour(folder, train_names)), ground_truth_method()]
    real = real_features = None
    real_names = train_names
    if args.max_real and args.max_real < len(train_names):  # evenly spaced: every person, not the first ones
        real_names = [train_names[i] for i in np.linspace(0, len(train_names) - 1, args.max_real).round().astype(int)]
    if networks.inception is not None:
        real = _cached_real_statistics(args, folder, root, real_names, networks, log)
    if networks.fid_inception is not None:
        real_features = _cached_real_fid_features(args, folder, root, real_names, networks, log)
    start = time.perf_counter()
    dataset = TupleDataset(folder, tuples)
    timings: dict[str, float] = {}
    results = score_methods(methods, dataset, args.sources, args.device, args.batch_size,
                            args.data_range, networks, real, workers=args.workers, progress=args.progress,
                            real_features=real_features, timings=timings)
    seconds = time.perf_counter() - start
    out = args.out or default_out(args.checkpoint, root)
    out.mkdir(parents=True, exist_ok=True)
    write_tuples_csv(out / "test_tuples.csv", tuples)
    report = {
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "data": str(root), "tuples": origin, "num_tuples": len(tuples), "data_range": args.data_range,
        "sources": args.sources, "notes": notes, "seconds": seconds, "timings": timings,
        "real_set": f"{len(train_names) if not args.max_real else min(args.max_real, len(train_names))} training images",
        "rows": _rows(results, methods, args.seed), "paired": _paired(results, args.seed),
        "tuple_names": [[*s, t] for s, t in tuples],
        "tuple_persons": tuple_persons(dataset),
        "per_tuple": {},
    }
    for result in results:
        # "tuple_index": the tuples (of tuple_names / tuple_persons) each score belongs to.
        report["per_tuple"].setdefault(result.method, {})[str(result.num_sources)] = {
            "tuple_index": result.tuples.tolist(), **{k: v.tolist() for k, v in result.per_tuple.items()}}
    (out / "evaluation.json").write_text(json.dumps(report) + "\n")
    table = markdown_table(report)
    title = args.checkpoint or "the reference rows"
    (out / "evaluation.md").write_text(f"# Evaluation of {title}\n\nData: {root}.\n\n" + table)
    return {**report, "table": table, "out": str(out)}


def compare(a_path: Path, b_path: Path, method: str = "model", seed: int = 0) -> str:
    """The paired comparison of two evaluation.json files (same tuples): A minus B per M and metric,
    its interval over persons when both files name each tuple's person (over tuples otherwise, said)."""
    reports = []
    for path in (a_path, b_path):
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as error:
            raise UsageError(f"{path}: not an evaluation.json ({error})") from None
    a, b = reports
    if a.get("tuple_names") != b.get("tuple_names"):
        raise UsageError(f"{a_path} and {b_path} scored different test tuples; a paired comparison needs the same ones")
    for path, report in ((a_path, a), (b_path, b)):
        if method not in report.get("per_tuple", {}):
            raise UsageError(f"{path} has no method {method!r} (it has {sorted(report.get('per_tuple', {}))})")
    persons = a.get("tuple_persons")
    if persons is not None and b.get("tuple_persons") is not None and persons != b["tuple_persons"]:
        raise UsageError(f"{a_path} and {b_path} name different persons for the same tuples (another identity rule?); "
                         f"a paired comparison needs the same ones")
    if persons is not None and b.get("tuple_persons") is not None:
        over = f"of {count_persons(persons)} persons; intervals resample persons"
    elif persons is not None or b.get("tuple_persons") is not None:
        # The same tuples (checked above) are the same persons: one file naming them is enough.
        named, lacking = (a_path, b_path) if persons is not None else (b_path, a_path)
        persons = persons if persons is not None else b["tuple_persons"]
        over = (f"of {count_persons(persons)} persons (as {named} names them; {lacking} was written before "
                f"tuple_persons); intervals resample persons")
    else:
        persons, over = None, f"intervals over tuples: neither {a_path} nor {b_path} names persons (written before tuple_persons)"
    lines = [f"A = {a_path} ({method}), B = {b_path} ({method}); {len(a['tuple_names'])} paired tuples {over}", "",
             "| M | metric | A | B | A - B [95% paired interval] |", "|---|---|---|---|---|"]
    for m in sorted(set(a["per_tuple"][method]) & set(b["per_tuple"][method]), key=int):
        for metric in PAIRWISE:
            x, y = a["per_tuple"][method][m].get(metric), b["per_tuple"][method][m].get(metric)
            if not x or not y:
                continue
            # Each M scored the tuples that serve it ("tuple_index"; all of them in older files).
            index = a["per_tuple"][method][m].get("tuple_index", range(len(x)))
            d = paired_difference(np.array(x), np.array(y), seed=seed,
                                  persons=None if persons is None else [persons[i] for i in index])
            lines.append(f"| {m} | {COLUMNS[metric]} | {np.mean(x):.4f} | {np.mean(y):.4f} | "
                         f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] |")
    return "\n".join(lines) + "\n"


def default_out(checkpoint: Path | None, data: Path) -> Path:
    """runs/eval-NAME under the working directory, never beside the checkpoint (which may lie in
    the repository, as docs/models/ does): NAME is RUN-STEM for a run's checkpoint
    (runs/RUN/checkpoints/best.pt -> runs/eval-RUN-best), else the checkpoint's stem, else the data
    folder's name (reference rows only)."""
    if checkpoint is None:
        return Path("runs") / f"eval-{Path(data).resolve().name}"
    parent = checkpoint.resolve().parent
    name = f"{parent.parent.name}-{checkpoint.stem}" if parent.name == "checkpoints" else checkpoint.stem
    return Path("runs") / f"eval-{name}"


def _tuple_count(text: str) -> int:
    if text == "all":
        return MAX_TEST_TUPLES
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 1 or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1 or 'all', got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(prog=PROG, description=__doc__.split("\n\n")[0].replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--checkpoint", type=Path,
                        help="the model row's model: a training checkpoint (.pt, e.g. runs/NAME/checkpoints/best.pt) "
                             "or an exported generator (.safetensors, e.g. docs/models/synthetic-full.safetensors); "
                             "default: none (reference rows only)")
    parser.add_argument("--data", type=Path,
                        help="dataset folder (DIR/images, DIR/annotation.csv, DIR/split.json); "
                             "default: the checkpoint's training data")
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 2, 3, 5],
                        help="the M to score, each >= 1 (default: 1 2 3 5)")
    parser.add_argument("--tuples", type=Path,
                        help="a test tuple CSV (from_0,...,to) instead of the split's tuples (default: the split's)")
    parser.add_argument("--max-tuples", type=_tuple_count, default=DEFAULT_TUPLES, metavar="N|all",
                        help=f"score at most this many tuples, the split's first ones; 'all': up to "
                             f"{MAX_TEST_TUPLES}, every tuple of a standard test set (default: {DEFAULT_TUPLES}, "
                             f"about a minute on 2 CPU cores at M = 1 2 3 5)")
    parser.add_argument("--out", type=Path,
                        help="output folder for evaluation.json (every score, per tuple too) and evaluation.md "
                             "(the table) (default: runs/eval-RUN-STEM for runs/RUN/checkpoints/STEM.pt, "
                             "runs/eval-STEM for another checkpoint, runs/eval-DATA without one)")
    parser.add_argument("--data-range", choices=DATA_RANGES, default="255",
                        help="data range of SSIM_256 and mask-SSIM: 255, or minmax (max - min of the generated "
                             "image, GFLA's ssim_256) (default: 255)")
    parser.add_argument("--identity", choices=IDENTITIES,
                        help="file name -> person rule (default: the checkpoint's, else market)")
    parser.add_argument("--resize", action="store_true",
                        help="resize images of another size to the model's, keypoints rescaled; a change of aspect ratio "
                             "squeezes people and warns (default: an error)")
    parser.add_argument("--fid-tf", action=argparse.BooleanOptionalAction, default=True,
                        help="FID (TF graph) and KID on the FID Inception graph (default: on; --no-fid-tf leaves "
                             "them out: the graph costs about 6 GFLOP per image)")
    parser.add_argument("--fid-weights", type=Path,
                        help="the converted FID Inception graph (.safetensors) (default: the one `python -m "
                             "msgen.weights fetch` put in msgen's cache)")
    parser.add_argument("--inception-weights", type=Path,
                        help="torchvision Inception-v3 state dict for FID (torchvision, GFLA) and IS (default: "
                             "$MSGEN_INCEPTION_WEIGHTS, else torch's hub cache)")
    parser.add_argument("--alexnet-weights", type=Path,
                        help="torchvision AlexNet state dict for LPIPS (default: $MSGEN_ALEXNET_WEIGHTS, else "
                             "msgen's cache (python -m msgen.weights fetch), else torch's hub cache)")
    parser.add_argument("--lpips-heads", type=Path,
                        help="LPIPS v0.1 AlexNet linear heads (default: $MSGEN_LPIPS_HEADS, else msgen's cache, "
                             "else the lpips package's weights/v0.1/alex.pth)")
    parser.add_argument("--max-real", type=int, default=None,
                        help="use at most this many training images as the real set of FID and KID (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default: 0)")
    parser.add_argument("--batch-size", type=int, default=16, help="tuples per batch, >= 1 (default: 16)")
    parser.add_argument("--workers", type=int, default=0, help="data loading processes, >= 0 (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--ops", choices=("reference", "fast"), help="op implementations: reference (PyTorch) or fast (fused kernels) (default: the checkpoint's)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show a progress bar (default: on)")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if any(m < 1 for m in args.sources):
        parser.error(f"--sources must be M >= 1, got {args.sources}")
    if args.max_tuples < 1 or args.batch_size < 1 or args.workers < 0 or (args.max_real is not None and args.max_real < 2):
        parser.error("--max-tuples and --batch-size must be >= 1, --workers >= 0, --max-real >= 2")
    args.sources = sorted(set(args.sources))
    return args


def _compare_main(argv: Sequence[str]) -> int:
    parser = CommandLineParser(prog=f"{PROG} compare", description="Pair two evaluation.json files tuple by tuple.")
    parser.add_argument("a", type=Path, help="evaluation.json of run A")
    parser.add_argument("b", type=Path, help="evaluation.json of run B (the same tuples)")
    parser.add_argument("--method", default="model", help="the row compared in both files (default: model)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default: 0)")
    args = parser.parse_args(argv)
    try:
        print(compare(args.a, args.b, args.method, args.seed), end="")
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        return _compare_main(argv[1:])
    args = parse_args(argv)
    try:
        with torch.no_grad():
            report = run(args, log=lambda message: print(message, file=sys.stderr))
    except (UsageError, FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report["table"], end="")
    print(f"written: {report['out']}/evaluation.md, evaluation.json, test_tuples.csv "
          f"({report['seconds']:.1f} s scoring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
