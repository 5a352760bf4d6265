"""Prepare a real dataset for training: filter images, split persons, sample train/test tuples.

    python -m msgen.data.prepare --dataset market --images DIR --annotations CSV --out OUT \\
        --num-sources 5 [--test-fraction 0.2 --seed 0 --max-test-tuples 12000]

Input: the layout of the public pose-transfer releases, a folder of images and the annotation CSV
(``name:keypoints_y:keypoints_x``). Identity: Market-1501, the name before the first ``_`` (names
starting with ``-1``/``0000`` are dropped as junk); DeepFashion, id + item, the name before the
last ``_`` (``fashionWOMENDressesid0000262902_3back.jpg`` -> ``fashionWOMENDressesid0000262902``).

Output in OUT: ``train_tuples.csv`` and ``test_tuples.csv`` (``from_0,...,from_{M-1},to``; persons
disjoint; at most --max-test-tuples test tuples, sampled like the training ones), and
``summary.json``: the inputs, the image size, what was dropped and why, the identities of each
split and the counts, including the identities skipped for having fewer than M + 1 images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from msgen.data.folder import DROP_REASONS, PoseImageFolder, deepfashion_identity, market_identity
from msgen.data.synthetic import parse_size
from msgen.data.tuples import sample_tuples, split_by_identity, write_tuples_csv

DATASETS = {
    "market": dict(identity_fn=market_identity, drop_junk=True),
    "deepfashion": dict(identity_fn=deepfashion_identity, drop_junk=False),
}
TRAIN_CSV, TEST_CSV, SUMMARY = "train_tuples.csv", "test_tuples.csv", "summary.json"


def prepare(
    dataset: str,
    images: str | Path,
    annotations: str | Path,
    out: str | Path,
    num_sources: int,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_test_tuples: int | None = 12000,
    image_size: tuple[int, int] | None = None,
    resize: bool = False,
) -> dict:
    """Write the tuple CSVs and summary.json into ``out``; returns the summary."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    folder = PoseImageFolder(images, annotations, image_size=image_size, resize=resize, **DATASETS[dataset])
    folder.verify_images()
    train_ids, test_ids = split_by_identity(folder.identities, test_fraction, seed)
    train = sample_tuples(train_ids, num_sources, seed)
    test = sample_tuples(test_ids, num_sources, seed + 1, max_tuples=max_test_tuples)
    if not train:
        raise ValueError(
            f"no training tuple: none of the {len(train_ids)} training identities has "
            f"{num_sources + 1} usable images ({folder.report()})"
        )
    if test_fraction > 0 and not test:
        raise ValueError(
            f"no test tuple: none of the {len(test_ids)} test identities has {num_sources + 1} usable "
            f"images; raise --test-fraction or lower --num-sources"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_tuples_csv(out / TRAIN_CSV, train)
    if test:
        write_tuples_csv(out / TEST_CSV, test)
    summary = {
        "dataset": dataset,
        "images": str(Path(images).resolve()),
        "annotations": str(Path(annotations).resolve()),
        "image_size": list(folder.image_size),
        "num_sources": num_sources,
        "test_fraction": test_fraction,
        "seed": seed,
        "kept_images": len(folder),
        "dropped_images": {reason: folder.dropped[reason] for reason in DROP_REASONS},
        "identities": {"train": sorted(train_ids), "test": sorted(test_ids)},
        "skipped_identities": {"train": train.skipped_identities, "test": test.skipped_identities},
        "tuples": {"train": len(train), "test": len(test)},
        "files": {"train": TRAIN_CSV, "test": TEST_CSV if test else None},
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m msgen.data.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--images", required=True, type=Path, help="folder of the image files")
    parser.add_argument("--annotations", required=True, type=Path, help="annotation CSV (name:keypoints_y:keypoints_x)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--num-sources", required=True, type=int, help="M, the sources per tuple")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of persons held out for test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-test-tuples", type=int, default=12000)
    parser.add_argument("--image-size", type=parse_size, default=None, help="HxW; default: the first image's")
    parser.add_argument("--resize", action="store_true", help="resize images of another size instead of failing")
    args = parser.parse_args(argv)
    try:
        summary = prepare(args.dataset, args.images, args.annotations, args.out, args.num_sources,
                          args.test_fraction, args.seed, args.max_test_tuples, args.image_size, args.resize)
    except (ValueError, OSError) as error:
        parser.exit(1, f"error: {error}\n")
    dropped = ", ".join(f"{n} {reason}" for reason, n in summary["dropped_images"].items() if n) or "none"
    skipped = {split: len(ids) for split, ids in summary["skipped_identities"].items()}
    print(
        f"kept {summary['kept_images']} images (dropped: {dropped}); identities train "
        f"{len(summary['identities']['train'])}, test {len(summary['identities']['test'])} "
        f"(skipped with fewer than {args.num_sources + 1} images: train {skipped['train']}, test {skipped['test']}); "
        f"tuples train {summary['tuples']['train']}, test {summary['tuples']['test']} -> {args.out}"
    )


if __name__ == "__main__":
    main()
