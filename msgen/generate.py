"""``python -m msgen.generate``: a person from M photos, in a new pose, with a figure.

    python -m msgen.generate --checkpoint CKPT --sources A.png B.png ... --target-pose T \\
        [--keypoints annotation.csv] [--out OUT_DIR]

Writes OUT_DIR/generated.png (the result, at the model's image size) and OUT_DIR/figure.png
(the sources, the target pose as a skeleton, the result and one saliency map per source, panels
enlarged --figure-scale times).

Keypoints of a source: its file name's row in ``--keypoints`` (an annotation CSV, keypoints at the
image's stored size), else extracted from the image by msgen.pose.annotate (needs the pose extra,
``pip install 'msgen[pose]'``). The target pose T is one of:
- a JSON file: ``{"keypoints": [[y, x], ... 18 pairs]}``, ``{"keypoints_y": [...], "keypoints_x":
  [...]}`` or a bare list of 18 [y, x] pairs; an optional ``"size": [H, W]`` names the image the
  keypoints belong to (default: the model's image size);
- an annotation CSV holding exactly one row;
- the name of a row of ``--keypoints`` (its size is that of the image of that name beside the CSV,
  or the model's image size when there is no such image);
- an image: its row in ``--keypoints``, else keypoints extracted from it.
Images of another size than the model's are resized and their keypoints rescaled (msgen.api).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from msgen.api import MultiSourceGenerator, check_pose, load_image
from msgen.checkpoint import CheckpointError
from msgen.data.folder import IMAGE_SUFFIXES
from msgen.figures import save_png
from msgen.pose import NUM_KEYPOINTS, read_annotations

PROG = "python -m msgen.generate"


def estimate_keypoints(path: Path) -> np.ndarray:
    """Keypoints (18, 2) of the person in an image, by msgen.pose.annotate (MediaPipe).

    Raises ValueError when the pose extra is missing or no person is found.
    """
    if importlib.util.find_spec("mediapipe") is None:
        raise ValueError(
            f"no keypoints for {path}: it has no row in --keypoints, and extracting keypoints needs the "
            f"pose extra (pip install 'msgen[pose]'); or annotate it with python -m msgen.pose.annotate"
        )
    from msgen.pose.annotate import annotate

    keypoints, undetected = annotate([path])
    if undetected:
        raise ValueError(f"no person detected in {path}")
    return keypoints[path.name]


def _pose_from_json(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    size = None
    if isinstance(data, dict):
        if "size" in data:
            size = tuple(int(v) for v in data["size"])
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"{path}: size must be [H, W], got {data['size']}")
        if "keypoints" in data:
            points = data["keypoints"]
        elif "keypoints_y" in data and "keypoints_x" in data:
            ys, xs = data["keypoints_y"], data["keypoints_x"]
            if len(ys) != NUM_KEYPOINTS or len(xs) != NUM_KEYPOINTS:
                raise ValueError(f"{path}: keypoints_y and keypoints_x must hold {NUM_KEYPOINTS} values each, "
                                 f"got {len(ys)} and {len(xs)}")
            points = list(zip(ys, xs))
        else:
            raise ValueError(f"{path}: expected a 'keypoints' list or 'keypoints_y' and 'keypoints_x'")
    else:
        points = data
    try:
        kp = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: keypoints must be numbers") from None
    if kp.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"{path}: expected {NUM_KEYPOINTS} [y, x] pairs, got an array of shape {kp.shape}")
    return kp, size


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size[1], image.size[0]


def resolve_target(
    spec: str, annotations: dict[str, np.ndarray], annotations_path: Path | None
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The target keypoints and the (H, W) of the image they belong to (None: the model's size)."""
    path = Path(spec)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return _pose_from_json(path)
        if suffix == ".csv":
            rows = read_annotations(path)
            if len(rows) != 1:
                raise ValueError(f"--target-pose {path} holds {len(rows)} rows; give one row's name with "
                                 f"--target-pose NAME --keypoints {path}")
            (name, kp), = rows.items()
            return kp, _row_image_size(name, path)
        if suffix in IMAGE_SUFFIXES:
            kp = annotations[path.name] if path.name in annotations else estimate_keypoints(path)
            return kp, _image_size(path)
        raise ValueError(f"--target-pose {path}: expected a .json or .csv keypoint file or an image "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    if spec in annotations:
        return annotations[spec], _row_image_size(spec, annotations_path)
    where = f"no row named {spec!r} in {annotations_path}" if annotations_path else "no --keypoints CSV given"
    raise FileNotFoundError(f"--target-pose {spec}: no such file, and {where}")


def _row_image_size(name: str, csv_path: Path | None) -> tuple[int, int] | None:
    if csv_path is None:
        return None
    for folder in (csv_path.parent, csv_path.parent / "images"):
        if (folder / name).is_file():
            return _image_size(folder / name)
    return None


def source_keypoints(paths: Sequence[Path], annotations: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Each source's keypoints: its row in the annotations, else extracted from the image."""
    result = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"--sources: image not found: {path}")
        kp = annotations.get(path.name)
        result.append(kp if kp is not None else estimate_keypoints(path))
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--checkpoint", type=Path, required=True, help="a training checkpoint (.pt)")
    parser.add_argument("--sources", type=Path, nargs="+", required=True, help="M >= 1 images of one person")
    parser.add_argument("--target-pose", required=True, help="JSON/CSV keypoint file, a row name of --keypoints, or an image")
    parser.add_argument("--keypoints", "--source-keypoints", dest="keypoints", type=Path,
                        help="annotation CSV with rows for the sources (and maybe the target)")
    parser.add_argument("--out", type=Path, default=Path("generated"), help="output folder (default ./generated)")
    parser.add_argument("--figure-scale", type=int, default=2, help="enlarge the figure's panels (default 2)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--ops", choices=("reference", "fast"), help="op implementations (default: the checkpoint's)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Generate and write the image and the figure; returns their paths."""
    annotations = read_annotations(args.keypoints) if args.keypoints else {}
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint: file not found: {args.checkpoint}")
    model = MultiSourceGenerator.from_checkpoint(args.checkpoint, device=args.device, ops=args.ops)
    kps = source_keypoints(args.sources, annotations)
    target_kp, target_size = resolve_target(args.target_pose, annotations, args.keypoints)
    images = [load_image(path, f"--sources {path}") for path in args.sources]
    # Checked here too so that errors name the files rather than list positions.
    for path, image, kp in zip(args.sources, images, kps):
        check_pose(kp, image.shape[:2], f"keypoints of {path}")
    check_pose(target_kp, target_size or model.image_size, f"--target-pose {args.target_pose}")
    result = model.generate(images, kps, target_kp, target_size=target_size)
    return {
        "generated": save_png(result.image, args.out / "generated.png"),
        "figure": save_png(result.figure(scale=args.figure_scale), args.out / "figure.png"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        paths = run(args)
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    for what, path in paths.items():
        print(f"{what}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
