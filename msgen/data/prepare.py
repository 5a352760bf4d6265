"""Make a dataset folder: DIR/images, DIR/annotation.csv and the split, DIR/split.json.

    # Market-1501 / DeepFashion, the public release's split and standard test pairs:
    python -m msgen.data.prepare --dataset market --out DIR --images TRAIN_IMAGES TEST_IMAGES \\
        --official market-annotation-train.csv market-annotation-test.csv market-pairs-test.csv
    # any folder: persons held out at random (stratified by image count)
    python -m msgen.data.prepare --dataset market --out DIR [--images IMAGES --annotations CSV] \\
        [--test-fraction 0.1 --validation-fraction 0.1 --seed 0 --num-sources 5 --max-test-tuples 12000]
    # fold k of K-fold cross-validation over persons (every person tested in exactly one fold)
    python -m msgen.data.prepare --dataset market --out DIR_k --images IMAGES --annotations CSV --folds 5 --fold k

DIR is what ``msgen.train --data.root DIR`` and ``msgen.evaluate --data DIR`` take. Images and the
annotation CSV default to DIR/images and DIR/annotation.csv; given elsewhere, DIR/images becomes a
symbolic link to the image folder, or a folder of links to the files of several (nothing is
copied), and the CSV is copied to DIR/annotation.csv (with --official, the train and test CSVs
together). Identity: Market-1501, the name before the
first ``_`` (``-1*``/``0000*`` junk dropped); DeepFashion, id + item, the name before the last ``_``.

split.json (``msgen.data.split``): training, validation and test persons, and test tuples of up
to --num-sources sources: every test person with 2 or more images serves each M its images allow
(M = 1 from 2 images, M = 2 from 3, ...). The validation persons (--validation-fraction of the
non-test persons) are what training evaluates on and chooses best.pt by; the test persons are
only for ``msgen.evaluate``. With --official the test tuples are the pairs of the pairs CSV in
order, each pair's source first (``msgen.evaluate --sources 1`` scores exactly the standard pairs),
and the images need not be present yet.

summary.json: the folder's rules, which training and evaluation read from it (identity: the
--dataset's person rule; image_size; framing: how photos are cropped for the model, "market" or
"full-body"), the inputs, the counts (persons serving each M) and what was dropped and why.

Nothing is left behind when prepare fails: everything is written into a temporary folder inside
DIR and moved into place at the end (a DIR that prepare created is removed again).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from msgen.data.folder import DROP_REASONS, JUNK_PREFIXES, PoseImageFolder, deepfashion_identity, market_identity
from msgen.data.split import (SPLIT_FILE, derive_split, limit_train_persons, official_split, validation_persons,
                              write_split)
from msgen.data.tuples import tuple_persons
from msgen.errors import CommandLineParser, UsageError
from msgen.pose import is_usable, read_annotations

DATASETS = {
    "market": dict(identity_fn=market_identity, drop_junk=True),
    "deepfashion": dict(identity_fn=deepfashion_identity, drop_junk=False),
}
# How each dataset's photos are framed for the model (msgen.pose.framing): Market's person crops,
# DeepFashion's full-body fashion shots.
FRAMINGS = ("market", "full-body")
DEFAULT_FRAMING = {"market": "market", "deepfashion": "full-body"}
SUMMARY = "summary.json"
PROG = "python -m msgen.data.prepare"
# The share of the non-test persons held out for validation (training's evaluation and best.pt):
# from about 10 persons on, a larger share barely steadies best.pt's choice (docs/EVALUATION.md).
VALIDATION_FRACTION = 0.1


def _link_images(out: Path, stage: Path, folders: Sequence[Path]) -> Path:
    """images/ in ``stage`` (moved to DIR/images at the end): a link to the one image folder, or a
    folder of links to the files of several (the releases ship train/ and test/ apart). Nothing is
    copied. Returns the folder the images are read from now."""
    existing = out / "images"
    if len(folders) == 1 and existing.resolve() == folders[0].resolve():
        return existing
    if existing.exists() or existing.is_symlink():
        raise UsageError(f"--out {out}: already has images/ ({existing}); omit --images or choose another --out")
    target = stage / "images"
    if len(folders) == 1:
        os.symlink(folders[0].resolve(), target, target_is_directory=True)
        return target
    target.mkdir()
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            if (target / name).is_symlink():
                raise UsageError(f"--images: {name} is in two of the folders ({', '.join(map(str, folders))})")
            os.symlink((folder / name).resolve(), target / name)
    return target


def _write_annotations(out: Path, stage: Path, sources: Sequence[Path]) -> Path:
    """annotation.csv in ``stage`` (moved to DIR at the end) as the concatenation of ``sources``
    (one header), or DIR/annotation.csv itself when that is the one source."""
    if len(sources) == 1 and sources[0].resolve() == (out / "annotation.csv").resolve():
        if not sources[0].is_file():
            raise UsageError(f"annotation CSV not found: {sources[0]} (give --annotations)")
        return sources[0]
    target = stage / "annotation.csv"
    lines = ["name:keypoints_y:keypoints_x"]
    for source in sources:
        if not source.is_file():
            raise UsageError(f"annotation CSV not found: {source}")
        lines += [line for line in source.read_text().splitlines()[1:] if line.strip()]
    target.write_text("\n".join(lines) + "\n")
    return target


def prepare(
    dataset: str,
    out: str | Path,
    images: str | Path | Sequence[str | Path] | None = None,
    annotations: str | Path | None = None,
    official: Sequence[str | Path] | None = None,
    num_sources: int = 5,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_test_tuples: int | None = 12000,
    resize: bool = False,
    validation_fraction: float = VALIDATION_FRACTION,
    framing: str | None = None,
    folds: tuple[int, int] | None = None,
    max_train_persons: int | None = None,
) -> dict:
    """Make the dataset folder ``out`` (see the module docstring); returns the summary.

    framing: None takes the dataset's (``DEFAULT_FRAMING``). folds: (K, k), the test persons are
    fold k of K-fold cross-validation over persons instead of a test_fraction share.
    max_train_persons: keep only that many training persons (``limit_train_persons``). On any error nothing new is left in
    ``out`` (and ``out`` itself is removed when this call created it)."""
    if dataset not in DATASETS:
        raise UsageError(f"--dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    framing = DEFAULT_FRAMING[dataset] if framing is None else framing
    if framing not in FRAMINGS:
        raise UsageError(f"--framing must be one of {FRAMINGS}, got {framing!r}")
    if num_sources < 1:
        raise UsageError(f"--num-sources must be >= 1, got {num_sources}")
    if not 0 < test_fraction < 1:
        raise UsageError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    if not 0 < validation_fraction < 1:
        raise UsageError(f"--validation-fraction must be in (0, 1), got {validation_fraction}")
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out))
    try:
        summary = _prepare(dataset, out, stage, images, annotations, official, num_sources, test_fraction, seed,
                           max_test_tuples, resize, validation_fraction, framing, folds, max_train_persons)
        for name in ("images", "annotation.csv", SPLIT_FILE, SUMMARY):  # everything checked: move it in
            if (stage / name).exists() or (stage / name).is_symlink():
                os.replace(stage / name, out / name)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    return summary


def _prepare(dataset: str, out: Path, stage: Path, images, annotations, official, num_sources: int,
             test_fraction: float, seed: int, max_test_tuples: int | None, resize: bool, validation_fraction: float,
             framing: str, folds: tuple[int, int] | None = None, max_train_persons: int | None = None) -> dict:
    """``prepare``'s work: reads from ``out``, writes into ``stage``; returns the summary."""
    identity_fn = DATASETS[dataset]["identity_fn"]
    image_dir = out / "images"
    if images is not None:
        folders = [Path(images)] if isinstance(images, (str, Path)) else [Path(f) for f in images]
        for folder in folders:
            if not folder.is_dir():
                raise UsageError(f"--images: image folder {folder} does not exist")
        image_dir = _link_images(out, stage, folders)
    summary: dict = {"dataset": dataset, "identity": dataset, "framing": framing, "out": str(out.resolve())}
    if official is not None and folds is not None:
        raise UsageError("--folds and --official exclude each other (the release fixes its test persons)")
    if official is not None:
        train_csv, test_csv, pairs_csv = (Path(p) for p in official)
        for path in (train_csv, test_csv, pairs_csv):
            if not path.is_file():
                raise UsageError(f"--official: file not found: {path}")
        annotation = _write_annotations(out, stage, [train_csv, test_csv])
        keypoints = read_annotations(annotation)
        junk = (lambda n: n.startswith(JUNK_PREFIXES)) if DATASETS[dataset]["drop_junk"] else (lambda n: False)
        split = official_split(train_csv, test_csv, pairs_csv, identity_fn, num_sources, seed,
                               usable=lambda name: bool(is_usable(keypoints[name])), is_junk=junk)
        train_ids: dict[str, list[str]] = {}
        for name in read_annotations(train_csv):
            if not junk(name) and is_usable(keypoints[name]):
                train_ids.setdefault(identity_fn(name), []).append(name)
        split.validation_persons = validation_persons(train_ids, validation_fraction, seed)
        split.train_persons = sorted(set(split.train_persons) - set(split.validation_persons))
        split.origin += f"; validation persons {validation_fraction} of the training CSV's persons (seed {seed + 2})"
        present = image_dir.is_dir()
        if present:
            on_disk = set(os.listdir(image_dir))
            missing = sorted({n for s, t in split.test_tuples for n in (*s, t)} - on_disk)
            summary["missing_test_images"] = len(missing)
            if missing:
                raise UsageError(f"{len(missing)} images of the test tuples are not in {image_dir}, "
                                 f"e.g. {', '.join(missing[:3])}")
        summary["images_present"] = present
    else:
        annotation = _write_annotations(out, stage, [Path(annotations) if annotations else out / "annotation.csv"])
        if not image_dir.is_dir():
            raise UsageError(f"--images: no image folder (none given and {image_dir} does not exist)")
        folder = PoseImageFolder(image_dir, annotation, resize=resize, **DATASETS[dataset])
        folder.verify_images()
        split = derive_split(folder.identities, test_fraction, seed, num_sources, max_test_tuples,
                             validation_fraction, folds)
        if not split.test_tuples:
            raise UsageError(f"no test tuple: none of the {len(split.test_persons)} test persons has 2 usable "
                             f"images (a source and a target); raise --test-fraction")
        summary.update(image_size=list(folder.image_size), kept_images=len(folder),
                       dropped_images={reason: folder.dropped[reason] for reason in DROP_REASONS})
    if max_train_persons is not None:
        split = limit_train_persons(split, max_train_persons, seed)
    write_split(stage / SPLIT_FILE, split)
    sources = [len(s) for s, _ in split.test_tuples]
    ms = range(1, num_sources + 1)
    summary.update(
        origin=split.origin, num_sources=num_sources, seed=seed, validation_fraction=validation_fraction,
        folds=None if folds is None else {"folds": folds[0], "fold": folds[1]},
        persons={"train": len(split.train_persons), "validation": len(split.validation_persons),
                 "test": len(split.test_persons)},
        test_tuples=len(split.test_tuples),
        test_tuples_by_sources={m: sum(1 for k in sources if k >= m) for m in ms},
        test_persons_by_sources=tuple_persons(split.test_tuples, identity_fn, ms),
    )
    (stage / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS),
                        help="file-name convention: market (person = name before the first _) or deepfashion "
                             "(person = name before the last _); required")
    parser.add_argument("--out", required=True, type=Path, help="the dataset folder to write (created); required")
    parser.add_argument("--images", type=Path, nargs="+",
                        help="folder(s) of the image files, e.g. a release's train/ and test/ (default: OUT/images)")
    parser.add_argument("--annotations", type=Path,
                        help="annotation CSV name:keypoints_y:keypoints_x (default: OUT/annotation.csv; "
                             "not with --official)")
    parser.add_argument("--official", nargs=3, type=Path, metavar=("TRAIN_CSV", "TEST_CSV", "PAIRS_CSV"),
                        help="use the public release's split: its train and test annotation CSVs and test "
                             "pairs (from,to); default: hold persons out at random")
    parser.add_argument("--num-sources", type=int, default=5,
                        help="largest M the test tuples serve (sources per tuple, >= 1; default 5)")
    parser.add_argument("--test-fraction", type=float, default=0.1,
                        help="share of persons held out for test, in (0, 1), without --official (default 0.1)")
    parser.add_argument("--validation-fraction", type=float, default=VALIDATION_FRACTION,
                        help="share of the non-test persons held out for validation (training's periodic "
                             f"evaluation and best.pt), in (0, 1) (default {VALIDATION_FRACTION})")
    parser.add_argument("--framing", choices=FRAMINGS,
                        help="how photos are framed for the model: market (Market-1501 person crops) or "
                             "full-body (full-body fashion shots); recorded in summary.json, used by training, "
                             "evaluation and generation (default: market for --dataset market, full-body for "
                             "deepfashion)")
    parser.add_argument("--folds", type=int,
                        help="K-fold cross-validation over persons: persons dealt into K folds (stratified by "
                             "image count, from --seed), the test persons are fold --fold; replaces "
                             "--test-fraction; not with --official (default: no folds)")
    parser.add_argument("--fold", type=int, default=0,
                        help="which fold (0..K-1) is the test persons, with --folds (default 0)")
    parser.add_argument("--max-train-persons", type=int,
                        help="keep only this many training persons (a seeded subset, each smaller one inside "
                             "every larger one; for learning curves); validation and test persons unchanged "
                             "(default: all)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the person split and the tuple sampling (integer; default 0)")
    parser.add_argument("--max-test-tuples", type=int, default=12000,
                        help="at most this many sampled test tuples, without --official (default 12000)")
    parser.add_argument("--resize", action="store_true",
                        help="accept images of another size than the first (they are resized when loaded); "
                             "default: such an image is an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.official and args.annotations:
            raise UsageError("--annotations and --official exclude each other (--official names the CSVs)")
        summary = prepare(args.dataset, args.out, args.images, args.annotations, args.official, args.num_sources,
                          args.test_fraction, args.seed, args.max_test_tuples, args.resize, args.validation_fraction,
                          args.framing, None if args.folds is None else (args.folds, args.fold),
                          args.max_train_persons)
    except (UsageError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    persons = summary["persons"]
    counts = ", ".join(f"M={m}: {n} tuples of {summary['test_persons_by_sources'][m]} persons"
                       for m, n in summary["test_tuples_by_sources"].items())
    print(f"{args.out}: persons train {persons['train']}, validation {persons['validation']}, test {persons['test']}; "
          f"{summary['test_tuples']} test tuples ({counts}); framing {summary['framing']}; {summary['origin']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
