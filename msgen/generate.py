"""``python -m msgen.generate``: a person from M photos, in a new pose, with a figure.

    python -m msgen.generate --checkpoint CKPT --sources A.jpg B.jpg ... --target-pose T \\
        [--keypoints annotation.csv] [--out OUT_DIR]

Writes OUT_DIR/generated.png (the result, at the model's image size) and OUT_DIR/figure.png
(the sources, the target pose as a skeleton, the result and one saliency map per source, panels
enlarged --figure-scale times).

Keypoints of a source: its file name's row in ``--keypoints`` (an annotation CSV, keypoints at the
image's stored size), else detected in the photo (msgen.pose.detector, needs the pose extra
``pip install 'msgen[pose]'``). A photo not at the model's size is cropped and resized around its
person to the model's frame (one scale for both axes, never squeezed), in the framing of the
model's training data ("market" crops or "full-body" photos, as its checkpoint records; "market"
for checkpoints that record none). The target pose T is one of:
- a JSON file: ``{"keypoints": [[y, x], ... 18 pairs]}``, ``{"keypoints_y": [...], "keypoints_x":
  [...]}`` or a bare list of 18 [y, x] pairs; an optional ``"size": [H, W]`` names the image the
  keypoints belong to (default: the model's image size; another size is framed like a photo);
- an annotation CSV holding exactly one row;
- the name of a row of ``--keypoints`` (its size is that of the image of that name beside the CSV,
  or the model's image size when there is no such image);
- a photo: its row in ``--keypoints``, else the pose detected in it, framed as a source would be.

A target pose without knees and ankles (a close-up) is placed at its torso's scale, and a warning
says that the legs are then the model's guess.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from msgen.api import MultiSourceGenerator, load_image
from msgen.checkpoint import CheckpointError
from msgen.data.folder import IMAGE_SUFFIXES
from msgen.errors import UsageError
from msgen.figures import save_png
from msgen.pose import NUM_KEYPOINTS, read_annotations
from msgen.pose.detector import Detector

PROG = "python -m msgen.generate"


def _pose_from_json(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"--target-pose {path} is not valid JSON: {error}") from None
    size = None
    if isinstance(data, dict):
        if "size" in data:
            size = tuple(int(v) for v in data["size"])
            if len(size) != 2 or min(size) < 1:
                raise UsageError(f"--target-pose {path}: size must be [H, W], got {data['size']}")
        if "keypoints" in data:
            points = data["keypoints"]
        elif "keypoints_y" in data and "keypoints_x" in data:
            ys, xs = data["keypoints_y"], data["keypoints_x"]
            if len(ys) != NUM_KEYPOINTS or len(xs) != NUM_KEYPOINTS:
                raise UsageError(f"--target-pose {path}: keypoints_y and keypoints_x must hold {NUM_KEYPOINTS} values each, "
                                 f"got {len(ys)} and {len(xs)}")
            points = list(zip(ys, xs))
        else:
            raise UsageError(f"--target-pose {path}: expected a 'keypoints' list or 'keypoints_y' and 'keypoints_x'")
    else:
        points = data
    try:
        kp = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError):
        raise UsageError(f"--target-pose {path}: keypoints must be numbers") from None
    if kp.shape != (NUM_KEYPOINTS, 2):
        raise UsageError(f"--target-pose {path}: expected {NUM_KEYPOINTS} [y, x] pairs, got an array of shape {kp.shape}")
    return kp, size


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size[1], image.size[0]


def _row_image_size(name: str, csv_path: Path | None) -> tuple[int, int] | None:
    """(H, W) of the image a CSV row belongs to, when that image lies beside the CSV (or in images/)."""
    if csv_path is None:
        return None
    for folder in (csv_path.parent, csv_path.parent / "images"):
        if (folder / name).is_file():
            return _image_size(folder / name)
    return None


def read_keypoints_option(path: Path | None) -> dict[str, np.ndarray]:
    """The --keypoints annotation CSV ({} without one); UsageError naming the option otherwise."""
    if path is None:
        return {}
    if not path.is_file():
        raise UsageError(f"--keypoints: file not found: {path} (expected an annotation CSV, name:keypoints_y:keypoints_x)")
    try:
        return read_annotations(path)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"--keypoints: {error}") from None


class Inputs:
    """Turns the command line's images into the model's inputs: (image (H, W, 3), keypoints (18, 2))
    at the model's size, from a --keypoints row or by detecting and framing the person."""

    def __init__(self, model: MultiSourceGenerator, annotations: dict[str, np.ndarray],
                 csv_path: Path | None, detector: Detector | None):  # fmt: skip
        self.model, self.annotations, self.csv_path, self.detector = model, annotations, csv_path, detector

    def photo(self, path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
        kp = self.annotations.get(path.name)
        if kp is None:
            return self.model.frame_photo(path, name, self.detector)
        pixels = load_image(path, name)
        # The row's keypoints are at the size of the image of that name beside the CSV, when there is one.
        row_size = _row_image_size(path.name, self.csv_path)
        if row_size is not None and row_size != pixels.shape[:2]:
            raise UsageError(
                f"{name} is {pixels.shape[0]}x{pixels.shape[1]} (HxW), but its row in --keypoints {self.csv_path} "
                f"belongs to the {row_size[0]}x{row_size[1]} image of that name beside the CSV"
            )
        return self.model.frame(pixels, kp, f"{name} (its row in --keypoints {self.csv_path})")

    def target(self, spec: str) -> tuple[np.ndarray, tuple[int, int] | None]:
        """The target keypoints and the (H, W) of the image they belong to (None: the model's size)."""
        path = Path(spec)
        name = f"--target-pose {spec}"
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix == ".json":
                return _pose_from_json(path)
            if suffix == ".csv":
                try:
                    rows = read_annotations(path)
                except ValueError as error:
                    raise UsageError(f"--target-pose: {error}") from None
                if len(rows) != 1:
                    raise UsageError(f"--target-pose {path} holds {len(rows)} rows; give one row's name with "
                                     f"--target-pose NAME --keypoints {path}")
                ((row, kp),) = rows.items()
                return kp, _row_image_size(row, path)
            if suffix in IMAGE_SUFFIXES:
                _, kp = self.photo(path, name)
                return kp, None
            raise UsageError(f"{name}: expected a .json or .csv keypoint file or an image ({', '.join(IMAGE_SUFFIXES)})")
        if spec in self.annotations:
            return self.annotations[spec], _row_image_size(spec, self.csv_path)
        where = f"no row named {spec!r} in --keypoints {self.csv_path}" if self.csv_path else "no --keypoints CSV given"
        raise UsageError(f"{name}: no such file, and {where}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]).replace("``", ""))
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT",
                        help="a training checkpoint (.pt, e.g. runs/x/checkpoints/best.pt); required")
    parser.add_argument("--sources", type=Path, nargs="+", required=True, metavar="PHOTO",
                        help="M >= 1 photos of one person (PNG/JPEG, any size); required")
    parser.add_argument("--target-pose", required=True, metavar="T",
                        help="the pose to generate: a JSON or one-row CSV keypoint file, a row name of --keypoints, "
                             "or a photo (its pose is detected); required")
    parser.add_argument("--keypoints", "--source-keypoints", dest="keypoints", type=Path, metavar="CSV",
                        help="annotation CSV (name:keypoints_y:keypoints_x) with rows for some or all images, keyed "
                             "by file name (default: none; keypoints are detected in each photo)")
    parser.add_argument("--out", type=Path, default=Path("generated"), metavar="DIR",
                        help="output folder for generated.png and figure.png (default ./generated)")
    parser.add_argument("--figure-scale", type=_positive_int, default=2, metavar="N",
                        help="integer enlargement of the figure's panels (default 2)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default cpu)")
    parser.add_argument("--ops", choices=("reference", "fast"),
                        help="op implementations: reference (PyTorch) or fast (fused kernels) (default: the checkpoint's)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, detector: Detector | None = None) -> dict[str, Path]:
    """Generate and write the image and the figure; returns their paths.

    detector: finds people where no keypoints are given (default: MediaPipe, msgen.pose.detector).
    """
    annotations = read_keypoints_option(args.keypoints)
    if not args.checkpoint.is_file():
        raise UsageError(f"--checkpoint: file not found: {args.checkpoint}")
    model = MultiSourceGenerator.from_checkpoint(args.checkpoint, device=args.device, ops=args.ops)
    inputs = Inputs(model, annotations, args.keypoints, detector)
    framed = [inputs.photo(path, f"--sources {path}") for path in args.sources]
    target_kp, target_size = inputs.target(args.target_pose)
    target = model.frame_target(target_kp, target_size, f"--target-pose {args.target_pose}")
    images, kps = zip(*framed)
    result = model.generate_framed(list(images), list(kps), target)
    return {
        "generated": save_png(result.image, args.out / "generated.png"),
        "figure": save_png(result.figure(scale=args.figure_scale), args.out / "figure.png"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            paths = run(args)
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"{PROG}: warning: {warning.message}", file=sys.stderr)
    for what, path in paths.items():
        print(f"{what}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
