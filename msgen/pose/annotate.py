"""Keypoints for your own photos: ``python -m msgen.pose.annotate IMAGES... --out annotation.csv``.

Runs MediaPipe Pose (msgen.pose.detector; the optional ``pose`` extra, ``pip install 'msgen[pose]'``)
on each image (shown upright, as its EXIF orientation says) and writes the 18 OpenPose keypoints in
the standard annotation CSV in each image's stored pixels. An image without a detected person gets a row of -1 and is counted.

``python -m msgen.pose.annotate --evaluate DIR`` instead measures the detector against a dataset
folder's annotations (DIR/images, DIR/annotation.csv): how many people it finds and, per keypoint,
the median pixel error, the shares within 5 and 10 px, the median signed error, missed and extra
points, and the images where no person was found (the figures in docs/POSE.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from msgen.errors import UsageError
from msgen.pose.detector import (
    MAX_SIDE,
    MIN_SIDE,
    MIN_VISIBILITY,
    PADS,
    Detector,
    MediaPipeDetector,
    read_photo,
    to_stored,
)
from msgen.pose.keypoints import KEYPOINT_NAMES, MISSING, NUM_KEYPOINTS, present, read_annotations, write_annotations

PROG = "python -m msgen.pose.annotate"
WITHIN_PX = 5.0
WITHIN_FAR_PX = 10.0


def detect_stored(path: Path, detector: Detector, name: str) -> np.ndarray | None:
    """The first person's keypoints (18, 2) in the image's stored pixels, or None when none is found.

    Detection sees the photo upright (its EXIF orientation applied); the keypoints are mapped back
    to the stored pixels, which is what the annotation CSV and the datasets' loaders use.
    """
    upright, back = read_photo(path, name)
    people = detector.detect(upright)
    return to_stored(np.asarray(people[0], dtype=np.float32), back) if people else None


def annotate(paths: Iterable[Path], detector: Detector) -> tuple[dict[str, np.ndarray], list[str]]:
    """Keypoints for each image: ({file name: (18, 2) (y, x)}, names where no person was found).

    Raises UsageError for a missing or unreadable image or a repeated file name (the CSV keys rows
    by file name).
    """
    result: dict[str, np.ndarray] = {}
    undetected: list[str] = []
    for path in map(Path, paths):
        if path.name in result:
            raise UsageError(f"two images are named {path.name!r}; the annotation CSV keys rows by file name")
        kp = detect_stored(path, detector, "images")
        if kp is None:
            undetected.append(path.name)
            kp = np.full((NUM_KEYPOINTS, 2), float(MISSING), dtype=np.float32)
        result[path.name] = kp
    return result, undetected


def accuracy(
    found: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray], within: float = WITHIN_PX, within_far: float = WITHIN_FAR_PX
) -> dict:
    """Detected keypoints against reference annotations of the same images.

    found: {name: (18, 2)} for the images where a person was found; truth: {name: (18, 2)} for all.
    Per keypoint, over the images where both have it: count, median error (px, Euclidean), shares
    within ``within`` and ``within_far`` px, and the median signed error (dy, dx) = detected minus
    annotated (a consistent offset shows there, not in the Euclidean median). Over the found images:
    ``missed`` (annotated, not detected) and ``extra`` (detected, not annotated: e.g. a face on a
    back view, which the annotations leave out). Plus the same over all points, the detection
    counts and ``not_found``, the images without a person.
    """
    errors: dict[str, list[np.ndarray]] = {name: [] for name in KEYPOINT_NAMES}
    missed = dict.fromkeys(KEYPOINT_NAMES, 0)
    extra = dict.fromkeys(KEYPOINT_NAMES, 0)
    for image, kp in found.items():
        ref = truth[image]
        has, annotated = present(kp), present(ref)
        for i in np.flatnonzero(has & annotated):
            errors[KEYPOINT_NAMES[i]].append(kp[i].astype(np.float64) - ref[i])
        for i in np.flatnonzero(annotated & ~has):
            missed[KEYPOINT_NAMES[i]] += 1
        for i in np.flatnonzero(has & ~annotated):
            extra[KEYPOINT_NAMES[i]] += 1

    def summary(values: list[np.ndarray], missed: int, extra: int) -> dict:
        if not values:
            return {"count": 0, "median_px": None, "within": None, "within_far": None, "signed_median": None,
                    "missed": missed, "extra": extra}  # fmt: skip
        d = np.asarray(values).reshape(-1, 2)
        e = np.linalg.norm(d, axis=1)
        return {"count": len(e), "median_px": float(np.median(e)), "within": float(np.mean(e <= within)),
                "within_far": float(np.mean(e <= within_far)), "signed_median": np.median(d, axis=0).tolist(),
                "missed": missed, "extra": extra}  # fmt: skip

    return {
        "images": len(truth),
        "found": len(found),
        "not_found": sorted(set(truth) - set(found)),
        "within_px": within,
        "within_far_px": within_far,
        "all": summary([e for v in errors.values() for e in v], sum(missed.values()), sum(extra.values())),
        "keypoints": {name: summary(v, missed[name], extra[name]) for name, v in errors.items()},
    }


def evaluate(folder: Path, detector: Detector, limit: int | None = None) -> dict:
    """``accuracy`` of ``detector`` on a dataset folder (folder/images, folder/annotation.csv)."""
    csv = folder / "annotation.csv"
    if not csv.is_file():
        raise UsageError(f"--evaluate {folder}: no annotation.csv in it (expected DIR/images and DIR/annotation.csv)")
    truth = read_annotations(csv)
    names = sorted(truth)[:limit] if limit else sorted(truth)
    found: dict[str, np.ndarray] = {}
    for name in names:
        kp = detect_stored(folder / "images" / name, detector, f"--evaluate {folder}")
        if kp is not None:
            found[name] = kp
    return accuracy(found, {n: truth[n] for n in names})


def format_accuracy(report: dict) -> str:
    """The accuracy report as a Markdown table (one row per keypoint, then all points), then the
    images without a person."""
    w, far = report["within_px"], report["within_far_px"]
    lines = [
        f"person found in {report['found']} of {report['images']} images",
        "",
        f"| keypoint | points compared | median error (px) | within {w:g} px | within {far:g} px "
        f"| signed median (dy, dx) | missed | extra |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [*report["keypoints"].items(), ("all", report["all"])]
    for name, s in rows:
        median = "-" if s["median_px"] is None else f"{s['median_px']:.1f}"
        share = "-" if s["within"] is None else f"{100 * s['within']:.0f} %"
        share_far = "-" if s["within_far"] is None else f"{100 * s['within_far']:.0f} %"
        signed = "-" if s["signed_median"] is None else "({:+.1f}, {:+.1f})".format(*s["signed_median"])
        lines.append(f"| {name} | {s['count']} | {median} | {share} | {share_far} | {signed} | {s['missed']} | {s['extra']} |")
    if report["not_found"]:
        lines += ["", f"no person found in {len(report['not_found'])}: {', '.join(report['not_found'])}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].replace("``", ""),
                                     epilog=__doc__.split("\n\n")[2].replace("``", ""))  # fmt: skip
    parser.add_argument("images", nargs="*", type=Path, help="image files to annotate (PNG/JPEG, any size)")
    parser.add_argument("--out", type=Path, help="annotation CSV to write (required unless --evaluate)")
    parser.add_argument("--evaluate", type=Path, metavar="DIR",
                        help="measure the detector on DIR/images against DIR/annotation.csv instead (default: off)")
    parser.add_argument("--limit", type=int, help="--evaluate: only the first N images by name (default: all)")
    parser.add_argument("--json", type=Path, help="--evaluate: also write the report as JSON here (default: none)")
    parser.add_argument("--min-visibility", type=float, default=MIN_VISIBILITY,
                        help=f"landmarks less visible than this (0-1) are missing (default {MIN_VISIBILITY})")
    parser.add_argument("--pad", type=float, nargs="+", default=list(PADS), metavar="FRACTION",
                        help=f"grey border added on every side before detection, as a fraction of the image's side; "
                             f"several are tried in order until a person is found (default {' '.join(map(str, PADS))}; "
                             f"tight crops need one)")
    parser.add_argument("--min-side", type=int, default=MIN_SIDE,
                        help=f"enlarge images to at least this many px on the shorter side before detection, "
                             f"0 = never (default {MIN_SIDE})")
    parser.add_argument("--max-side", type=int, default=MAX_SIDE,
                        help=f"shrink images to at most this many px on the longer side before detection "
                             f"(default {MAX_SIDE})")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.evaluate is None and (not args.images or args.out is None):
            raise UsageError("give IMAGES... and --out annotation.csv, or --evaluate DIR")
        if args.evaluate is not None and args.images:
            raise UsageError("--evaluate DIR takes its images from DIR/images; give no IMAGES with it")
        if not 0 <= args.min_visibility <= 1:
            raise UsageError(f"--min-visibility must be in [0, 1], got {args.min_visibility}")
        if min(args.pad) < 0 or args.min_side < 0:
            raise UsageError("--pad and --min-side must be >= 0")
        if args.max_side < 16:
            raise UsageError(f"--max-side must be >= 16 px, got {args.max_side}")
        detector = MediaPipeDetector(args.min_visibility, args.pad, args.min_side, args.max_side, look_for_others=False)
        with detector:
            if args.evaluate is not None:
                report = evaluate(args.evaluate, detector, args.limit)
                print(format_accuracy(report))
                if args.json:
                    args.json.write_text(json.dumps(report, indent=1) + "\n")
                return 0
            keypoints, undetected = annotate(args.images, detector)
    except (UsageError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_annotations(args.out, keypoints)
    print(f"wrote {len(keypoints)} rows to {args.out}", file=sys.stderr)
    if undetected:
        names = ", ".join(undetected)
        print(f"no person found in {len(undetected)} image(s), written as all -1: {names}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
