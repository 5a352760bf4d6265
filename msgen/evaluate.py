"""``python -m msgen.evaluate``: the paper's table (SSIM, mask-SSIM, IS, mask-IS) for several M.

    python -m msgen.evaluate --checkpoint CKPT --data DIR --sources 1 2 3 5 \\
        [--tuples TEST_TUPLES.csv] [--max-tuples N] [--out OUT_DIR] [--data-range 255|minmax]

DIR is a dataset folder: the images (in DIR/images when that folder exists, else in DIR) and
DIR/annotation.csv (or --annotations), as msgen.data.synthetic and msgen.data.prepare write them.
Every M is scored on the SAME test tuples truncated to their first M sources (METHOD.md):
- --tuples: a tuple CSV (msgen.data.prepare's test_tuples.csv) with at least max(M) sources;
- otherwise tuples of max(M) sources are sampled from the held-out persons of the checkpoint's
  own split (``split_by_identity`` with its data.test_fraction and data.seed; sampling seed
  data.seed + 1, as training draws its held-out tuples), which are persons the run never trained
  on when DIR is its dataset; ``--split all`` uses every person of DIR (a separate test folder).
The tuples used are written to OUT_DIR/test_tuples.csv.

Metrics (msgen.metrics): SSIM and mask-SSIM (mask of the TARGET's keypoints) per tuple, mean and
std over tuples; IS and mask-IS over the generated images, 10 splits, mean and std over splits.
IS needs torchvision and Inception-v3 weights (--inception-weights, MSGEN_INCEPTION_WEIGHTS or
torchvision's cached file); without them the IS columns say unavailable, with the reason.
The table is printed and written to OUT_DIR/evaluation.md and OUT_DIR/evaluation.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

from msgen.api import MultiSourceGenerator
from msgen.checkpoint import CheckpointError
from msgen.data import (
    PoseImageFolder,
    TupleDataset,
    collate_tuples,
    deepfashion_identity,
    market_identity,
    read_tuples_csv,
    sample_tuples,
    split_by_identity,
    write_tuples_csv,
)
from msgen.data.tuples import Tuple
from msgen.training.data import data_paths
from msgen.metrics import (
    DATA_RANGES,
    InceptionScorer,
    InceptionUnavailable,
    apply_mask,
    inception_score_from_probabilities,
    load_inception,
    ssim,
    to_uint8,
)
from msgen.pose import person_mask

PROG = "python -m msgen.evaluate"
IS_SPLITS = 10
MAX_TEST_TUPLES = 12000  # METHOD.md: up to 12,000 test tuples
IDENTITY_FNS = {"market": market_identity, "deepfashion": deepfashion_identity}


@dataclass
class Score:
    mean: float
    std: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass
class Row:
    """The scores at one M. IS fields are None when unavailable, with the reason in ``is_note``."""

    num_sources: int
    tuples: int
    ssim: Score
    mask_ssim: Score
    inception_score: Score | None
    mask_inception_score: Score | None
    is_note: str | None


def _score(values: Sequence[float]) -> Score:
    return Score(float(np.mean(values)), float(np.std(values)))


def evaluate_tuples(
    model: MultiSourceGenerator,
    dataset: TupleDataset,
    num_sources: Sequence[int],
    data_range: str = "255",
    scorer: InceptionScorer | None = None,
    is_unavailable: str | None = None,
    batch_size: int = 16,
    workers: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> list[Row]:
    """Score the dataset's tuples truncated to each M of ``num_sources`` (each <= the tuples' M).

    scorer: None leaves IS out, with ``is_unavailable`` as the reason. workers: DataLoader
    processes preparing the batches (images, heatmaps, part affines) while the model runs.
    """
    rows = []
    for m in num_sources:
        ssims, mask_ssims, probs, mask_probs = [], [], [], []
        # Items (i, m) keep the first m sources of tuple i (msgen.data.TupleDataset).
        batches = [[(i, m) for i in range(start, min(start + batch_size, len(dataset)))]
                   for start in range(0, len(dataset), batch_size)]
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_tuples, num_workers=workers)
        for batch in loader:
            generated = to_uint8(model.generate_batch(batch).image)
            targets = to_uint8(batch["target"])
            masked = []
            for fake, real, kp in zip(generated, targets, batch["target_kp"].numpy()):
                ssims.append(ssim(fake, real, data_range))
                # mask_ssim's definition, with the TARGET's mask built once for mask-SSIM and mask-IS.
                mask = person_mask(kp, fake.shape[:2])
                masked.append(apply_mask(fake, mask))
                mask_ssims.append(ssim(masked[-1], apply_mask(real, mask), data_range))
            if scorer is not None:
                probs.append(scorer.probabilities(generated))
                mask_probs.append(scorer.probabilities(np.stack(masked)))
        note = is_unavailable
        inception = mask_inception = None
        if scorer is not None and len(dataset) < IS_SPLITS:
            note = f"the Inception Score over {IS_SPLITS} splits needs >= {IS_SPLITS} images, got {len(dataset)}"
        elif scorer is not None:
            inception = Score(*inception_score_from_probabilities(np.concatenate(probs), IS_SPLITS))
            mask_inception = Score(*inception_score_from_probabilities(np.concatenate(mask_probs), IS_SPLITS))
        log(f"M={m}: scored {len(dataset)} tuples")
        rows.append(Row(m, len(dataset), _score(ssims), _score(mask_ssims), inception, mask_inception, note))
    return rows


def markdown_table(rows: Sequence[Row], data_range: str) -> str:
    """The table as Markdown: one line per M, then the notes (data range, IS availability)."""
    lines = [
        "| M | tuples | SSIM | mask-SSIM | IS | mask-IS |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        inception = [str(s) if s is not None else "unavailable" for s in (row.inception_score, row.mask_inception_score)]
        lines.append(f"| {row.num_sources} | {row.tuples} | {row.ssim} | {row.mask_ssim} | {inception[0]} | {inception[1]} |")
    range_text = "255" if data_range == "255" else "max - min of each generated image (the published code's variant)"
    lines += ["", f"SSIM data range: {range_text}. Mean ± std over tuples (SSIM) and over {IS_SPLITS} splits (IS)."]
    notes = sorted({row.is_note for row in rows if row.is_note})
    lines += [f"IS and mask-IS unavailable ({note})." for note in notes]
    return "\n".join(lines) + "\n"


def load_tuples(args: argparse.Namespace, folder: PoseImageFolder, config: object, max_m: int) -> tuple[list[Tuple], str]:
    """The test tuples (with >= max_m sources) and a description of where they come from."""
    if args.tuples is not None:
        if not args.tuples.is_file():
            raise FileNotFoundError(f"--tuples: file not found: {args.tuples}")
        tuples = read_tuples_csv(args.tuples)
        available = len(tuples[0][0]) if tuples else 0
        if available < max_m:
            raise ValueError(f"--tuples {args.tuples} has tuples of {available} sources; --sources asks for M={max_m}")
        return tuples[: args.max_tuples], f"{args.tuples} (first {min(len(tuples), args.max_tuples)} tuples)"
    data = config.data
    identities = folder.identities
    where = f"all {len(identities)} persons of {folder.root}"
    if args.split == "held-out":
        _, identities = split_by_identity(folder.identities, data.test_fraction, data.seed)
        where = (f"{len(identities)} held-out persons of {folder.root} (split test_fraction={data.test_fraction}, "
                 f"seed={data.seed})")
    tuples = sample_tuples(identities, max_m, seed=data.seed + 1, max_tuples=args.max_tuples)
    if not tuples:
        raise ValueError(f"no test tuple of {max_m} sources: none of the {where} has {max_m + 1} images")
    return list(tuples), f"sampled from {where}, M={max_m}, seed {data.seed + 1}"


def _check_size(folder: PoseImageFolder, name: str, size: tuple[int, int], resize: bool) -> None:
    """Fail before any work when the data set's images are not at the model's size."""
    with Image.open(folder.root / name) as image:
        found = (image.height, image.width)
    if found != tuple(size) and not resize:
        raise ValueError(f"the images of {folder.root} are {found[0]}x{found[1]} (e.g. {name}), the model makes "
                         f"{size[0]}x{size[1]}: pass --resize to resize them (keypoints rescaled)")


def _inception(args: argparse.Namespace) -> tuple[InceptionScorer | None, str | None]:
    try:
        return InceptionScorer(load_inception(args.inception_weights, args.device), batch_size=args.batch_size), None
    except InceptionUnavailable as error:
        return None, str(error)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--checkpoint", type=Path, required=True, help="a training checkpoint (.pt)")
    parser.add_argument("--data", type=Path,
                        help="dataset folder (images + annotation.csv); default: the checkpoint's training data")
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 2, 3, 5], help="the M to score (default 1 2 3 5)")
    parser.add_argument("--tuples", type=Path, help="test tuple CSV (from_0,...,to); default: sampled, see below")
    parser.add_argument("--max-tuples", type=int, default=MAX_TEST_TUPLES, help=f"at most this many tuples (default {MAX_TEST_TUPLES})")
    parser.add_argument("--out", type=Path, help="output folder (default: eval-<checkpoint name> beside the checkpoint)")
    parser.add_argument("--data-range", choices=DATA_RANGES, default="255", help="SSIM data range (default 255)")
    parser.add_argument("--annotations", type=Path, help="annotation CSV (default DIR/annotation.csv)")
    parser.add_argument("--identity", choices=tuple(IDENTITY_FNS), help="file name -> person rule (default: the checkpoint's)")
    parser.add_argument("--split", choices=("held-out", "all"), default="held-out",
                        help="persons to sample tuples from without --tuples (default held-out)")
    parser.add_argument("--resize", action="store_true", help="resize images of another size to the model's")
    parser.add_argument("--inception-weights", type=Path, help="torchvision Inception-v3 state dict for IS")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="data loading processes (default 2)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--ops", choices=("reference", "fast"), help="op implementations (default: the checkpoint's)")
    args = parser.parse_args(argv)
    if any(m < 1 for m in args.sources):
        parser.error(f"--sources must be M >= 1, got {args.sources}")
    if args.max_tuples < 1 or args.batch_size < 1 or args.workers < 0:
        parser.error("--max-tuples and --batch-size must be >= 1, --workers >= 0")
    args.sources = sorted(set(args.sources))
    return args


def run(args: argparse.Namespace, log: Callable[[str], None] = lambda message: None) -> dict:
    """Evaluate and write the report files; returns the JSON report."""
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint: file not found: {args.checkpoint}")
    model = MultiSourceGenerator.from_checkpoint(args.checkpoint, device=args.device, ops=args.ops)
    if args.data is None:  # the checkpoint's own training data
        args.data, trained_annotations = data_paths(model.config.data, model.image_size)
        args.annotations = args.annotations or trained_annotations
    if not args.data.is_dir():
        raise FileNotFoundError(f"--data: folder not found: {args.data}")
    images = args.data / "images" if (args.data / "images").is_dir() else args.data
    annotations = args.annotations or args.data / "annotation.csv"
    if not annotations.is_file():
        raise FileNotFoundError(f"annotation CSV not found: {annotations} (pass --annotations)")
    identity = args.identity or model.config.data.identity
    folder = PoseImageFolder(images, annotations, image_size=model.image_size, identity_fn=IDENTITY_FNS[identity],
                             drop_junk=identity == "market", resize=args.resize)
    tuples, origin = load_tuples(args, folder, model.config, max(args.sources))
    _check_size(folder, tuples[0][1], model.image_size, args.resize)
    scorer, is_unavailable = _inception(args)
    rows = evaluate_tuples(model, TupleDataset(folder, tuples), args.sources, args.data_range, scorer,
                           is_unavailable, args.batch_size, args.workers, log)
    out = args.out or args.checkpoint.parent / f"eval-{args.checkpoint.stem}"
    out.mkdir(parents=True, exist_ok=True)
    write_tuples_csv(out / "test_tuples.csv", tuples)
    table = markdown_table(rows, args.data_range)
    report = {
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "tuples": origin,
        "data_range": args.data_range,
        "inception": {"available": scorer is not None, "reason": is_unavailable, "splits": IS_SPLITS},
        "rows": [asdict(row) for row in rows],
    }
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    header = f"# Evaluation of {args.checkpoint}\n\nData: {args.data}; tuples: {origin}.\n\n"
    (out / "evaluation.md").write_text(header + table)
    report["table"] = table
    report["out"] = str(out)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args, log=lambda message: print(message, file=sys.stderr))
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(f"tuples: {report['tuples']}")
    print(report["table"], end="")
    print(f"written: {report['out']}/evaluation.md, evaluation.json, test_tuples.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
