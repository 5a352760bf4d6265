"""Make a dataset folder: DIR/images, DIR/annotation.csv and the split, DIR/split.json.

    # Market-1501 / DeepFashion, the public release's split and standard test pairs:
    python -m msgen.data.prepare --dataset market --out DIR --images TRAIN_IMAGES TEST_IMAGES \\
        --official market-annotation-train.csv market-annotation-test.csv market-pairs-test.csv
    # any folder: persons held out at random (stratified by image count)
    python -m msgen.data.prepare --dataset market --out DIR [--images IMAGES --annotations CSV] \\
        [--test-fraction 0.1 --seed 0 --num-sources 5 --max-test-tuples 12000]

DIR is what ``msgen.train --data.root DIR`` and ``msgen.evaluate --data DIR`` take. Images and the
annotation CSV default to DIR/images and DIR/annotation.csv; given elsewhere, DIR/images becomes a
symbolic link to the image folder, or a folder of links to the files of several (nothing is
copied), and the CSV is copied to DIR/annotation.csv (with --official, the train and test CSVs
together). Identity: Market-1501, the name before the
first ``_`` (``-1*``/``0000*`` junk dropped); DeepFashion, id + item, the name before the last ``_``.

split.json (``msgen.data.split``): training persons, test persons, test tuples of up to
--num-sources sources. With --official the test tuples are the pairs of the pairs CSV in order,
each pair's source first (``msgen.evaluate --sources 1`` scores exactly the standard pairs), and
the images need not be present yet. summary.json: inputs, counts, what was dropped and why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from msgen.data.folder import DROP_REASONS, JUNK_PREFIXES, PoseImageFolder, deepfashion_identity, market_identity
from msgen.data.split import SPLIT_FILE, derive_split, official_split, write_split
from msgen.errors import CommandLineParser, UsageError
from msgen.pose import is_usable, read_annotations

DATASETS = {
    "market": dict(identity_fn=market_identity, drop_junk=True),
    "deepfashion": dict(identity_fn=deepfashion_identity, drop_junk=False),
}
SUMMARY = "summary.json"
PROG = "python -m msgen.data.prepare"


def _link_images(out: Path, folders: Sequence[Path]) -> Path:
    """DIR/images: a link to the one image folder, or a folder of links to the files of several
    (the releases ship train/ and test/ apart). Nothing is copied."""
    target = out / "images"
    if len(folders) == 1 and target.resolve() == folders[0].resolve():
        return target
    if target.exists() or target.is_symlink():
        raise UsageError(f"--out {out}: already has images/ ({target}); omit --images or choose another --out")
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


def _write_annotations(out: Path, sources: Sequence[Path]) -> Path:
    """DIR/annotation.csv as the concatenation of ``sources`` (one header)."""
    target = out / "annotation.csv"
    if len(sources) == 1 and sources[0].resolve() == target.resolve():
        return target
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
) -> dict:
    """Make the dataset folder ``out`` (see the module docstring); returns the summary."""
    if dataset not in DATASETS:
        raise UsageError(f"--dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    if num_sources < 1:
        raise UsageError(f"--num-sources must be >= 1, got {num_sources}")
    if not 0 < test_fraction < 1:
        raise UsageError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identity_fn = DATASETS[dataset]["identity_fn"]
    if images is not None:
        folders = [Path(images)] if isinstance(images, (str, Path)) else [Path(f) for f in images]
        for folder in folders:
            if not folder.is_dir():
                raise UsageError(f"--images: image folder {folder} does not exist")
        _link_images(out, folders)
    summary: dict = {"dataset": dataset, "out": str(out.resolve())}
    if official is not None:
        train_csv, test_csv, pairs_csv = (Path(p) for p in official)
        for path in (train_csv, test_csv, pairs_csv):
            if not path.is_file():
                raise UsageError(f"--official: file not found: {path}")
        annotation = _write_annotations(out, [train_csv, test_csv])
        keypoints = read_annotations(annotation)
        junk = (lambda n: n.startswith(JUNK_PREFIXES)) if DATASETS[dataset]["drop_junk"] else (lambda n: False)
        split = official_split(train_csv, test_csv, pairs_csv, identity_fn, num_sources, seed,
                               usable=lambda name: bool(is_usable(keypoints[name])), is_junk=junk)
        present = (out / "images").is_dir()
        if present:
            on_disk = set(os.listdir(out / "images"))
            missing = sorted({n for s, t in split.test_tuples for n in (*s, t)} - on_disk)
            summary["missing_test_images"] = len(missing)
            if missing:
                raise UsageError(f"{len(missing)} images of the test tuples are not in {out / 'images'}, "
                                 f"e.g. {', '.join(missing[:3])}")
        summary["images_present"] = present
    else:
        annotation = _write_annotations(out, [Path(annotations) if annotations else out / "annotation.csv"])
        if not (out / "images").is_dir():
            raise UsageError(f"--images: no image folder (none given and {out / 'images'} does not exist)")
        folder = PoseImageFolder(out / "images", annotation, resize=resize, **DATASETS[dataset])
        folder.verify_images()
        split = derive_split(folder.identities, test_fraction, seed, num_sources, max_test_tuples)
        if not split.test_tuples:
            raise UsageError(f"no test tuple: none of the {len(split.test_persons)} test persons has "
                             f"{num_sources + 1} usable images; raise --test-fraction or lower --num-sources")
        summary.update(image_size=list(folder.image_size), kept_images=len(folder),
                       dropped_images={reason: folder.dropped[reason] for reason in DROP_REASONS})
    write_split(out / SPLIT_FILE, split)
    sources = [len(s) for s, _ in split.test_tuples]
    summary.update(
        origin=split.origin, num_sources=num_sources, seed=seed,
        persons={"train": len(split.train_persons), "test": len(split.test_persons)},
        test_tuples=len(split.test_tuples),
        test_tuples_by_sources={m: sum(1 for k in sources if k >= m) for m in range(1, num_sources + 1)},
    )
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
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
                          args.test_fraction, args.seed, args.max_test_tuples, args.resize)
    except (UsageError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = ", ".join(f"M>={m}: {n}" for m, n in summary["test_tuples_by_sources"].items())
    print(f"{args.out}: persons train {summary['persons']['train']}, test {summary['persons']['test']}; "
          f"{summary['test_tuples']} test tuples ({counts}); {summary['origin']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
