"""Python API: load a trained generator and call it on images and keypoints.

    from msgen.api import MultiSourceGenerator
    model = MultiSourceGenerator.from_checkpoint("runs/x/best.pt", device="cpu")
    result = model.generate(["a.png", "b.png"], source_keypoints, target_keypoints)
    result.image          # (H, W, 3) uint8, the person in the target pose
    result.saliency       # (M, H, W) float32, how much each source contributes at each pixel
    result.figure()       # (h, w, 3) uint8: sources, target pose, result, one saliency map per source

Photos alone (no keypoints; needs the pose extra, ``pip install 'msgen[pose]'``, or any
msgen.pose.detector.Detector as ``detector=``):

    result = model.generate(["a.jpg", "b.jpg"], target_keypoints=model.pose_of("c.jpg"))

Each source without keypoints has its person detected and is cropped and resized around that
person to the model's frame, in the datasets' framing (msgen.pose.framing); ``pose_of`` does the
same for a photo whose pose is wanted and returns the pose in the model's frame.

Conventions: keypoints are (18, 2) (y, x) pixels of the image they belong to, -1 = missing
(msgen.pose.keypoints). Every pose must be usable (Rsho, Lsho, Rhip, Lhip present: the torso part
warp needs them), as the datasets require.

Size policy: a source image of another size than the model's (H, W) is resized to (H, W)
(bilinear) and its keypoints rescaled with the pixel-centre convention of
``msgen.data.folder.rescale_keypoints``, the same policy as ``PoseImageFolder(resize=True)``; a
warning says so when the aspect ratio changes by more than 5 %. Target keypoints are in the output
image's pixels, (H, W), unless ``target_size`` names the size of the image they come from.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from msgen.errors import UsageError
from msgen.data.folder import rescale_keypoints
from msgen.figures import tuple_figure
from msgen.evaluation import to_uint8
from msgen.export import load_generator
from msgen.models import Generator, GeneratorOutput, set_ops_impl
from msgen.pose import check_keypoints, is_usable, pose_inputs, present
from msgen.pose.detector import Detector, detect_person, read_photo
from msgen.pose.framing import frame_person
from msgen.pose.keypoints import KEYPOINT_NAMES, TORSO

SourceImage = Image.Image | np.ndarray | str | Path
# How far (px) a keypoint may lie outside its image before it is taken for a size mistake.
FRAME_TOLERANCE = 1.0


def load_image(image: SourceImage, name: str = "image") -> np.ndarray:
    """A path, PIL image or uint8 (H, W, 3) array as a uint8 RGB array (H, W, 3)."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: image not found: {path}")
        try:
            with Image.open(path) as file:
                return np.asarray(file.convert("RGB")).copy()
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            raise UsageError(f"{name}: cannot read image {path}: {error}") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB")).copy()
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise UsageError(f"{name} must be a path, a PIL image or uint8 (H, W, 3), got {array.dtype} {array.shape}")
    return array


def check_pose(kp: np.ndarray | Tensor, size: tuple[int, int], name: str) -> np.ndarray:
    """Validate one pose for generation: (18, 2), finite, usable, inside its (H, W) image.

    Returns it as float32 (18, 2). Raises UsageError (a ValueError) naming ``name`` and the problem.
    """
    kp = kp.detach().cpu().numpy() if isinstance(kp, Tensor) else np.asarray(kp)
    if kp.shape != (18, 2):
        raise UsageError(f"{name} must be one pose of 18 (y, x) keypoints, shape (18, 2), got shape {kp.shape}")
    try:
        check_keypoints(kp, name=name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    kp = kp.astype(np.float32)
    if not is_usable(kp):
        lacking = [n for n in TORSO if not present(kp)[KEYPOINT_NAMES.index(n)]]
        raise UsageError(f"{name} lacks the torso point(s) {', '.join(lacking)}; the body-part warp needs all four")
    H, W = size
    ok = present(kp)
    outside = ok & ((kp[:, 0] > H - 1 + FRAME_TOLERANCE) | (kp[:, 1] > W - 1 + FRAME_TOLERANCE))
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise UsageError(
            f"{name}: point {KEYPOINT_NAMES[i]} at (y, x) = {kp[i].tolist()} lies outside the {H}x{W} image "
            f"it belongs to (keypoints for another image size?)"
        )
    # Keypoints of a smaller image (a 64x32 annotation on a 128x64 photo) all fall in the top-left
    # quarter; a person framed as in the datasets never does, as the torso spans the centre.
    if (kp[ok, 0].max() < (H - 1) / 2) and (kp[ok, 1].max() < (W - 1) / 2):
        raise UsageError(
            f"{name}: every keypoint lies in the top-left quarter of the {H}x{W} image it belongs to "
            f"(keypoints for a smaller image, such as an annotation CSV of another image size?)"
        )
    return kp


def fit_to_size(image: np.ndarray, kp: np.ndarray, size: tuple[int, int], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Resize a uint8 image (h, w, 3) to size (H, W) (bilinear) and rescale its keypoints to match."""
    h, w = image.shape[:2]
    H, W = size
    if (h, w) == (H, W):
        return image, kp
    if abs((h / w) / (H / W) - 1) > 0.05:
        warnings.warn(
            f"{name} is {h}x{w} (HxW); resizing it to the model's {H}x{W} changes its aspect ratio", stacklevel=3
        )
    resized = np.asarray(Image.fromarray(image).resize((W, H), Image.BILINEAR))
    return resized, rescale_keypoints(kp, (h, w), (H, W))


@dataclass
class GenerationResult:
    """One generation: image (H, W, 3) uint8; saliency (M, H, W) float32 in [0, 1] (the channel
    mean of the finest attention per source; sums to 1 over the sources); the sources (at the
    model's size) and the target keypoints (in the image's pixels) it was made from."""

    image: np.ndarray
    saliency: np.ndarray
    sources: list[np.ndarray]
    target_keypoints: np.ndarray

    def figure(self, target: np.ndarray | None = None, scale: int = 1) -> np.ndarray:
        """Sources, target pose, result (and ``target`` when given), one saliency map per source;
        panels enlarged ``scale`` times (msgen.figures.tuple_figure)."""
        return tuple_figure(self.sources, self.target_keypoints, self.image, self.saliency, target, scale)


class MultiSourceGenerator:
    """A trained generator with the pose preprocessing of training around it.

    ``generate`` takes M >= 1 images of one person, their keypoints and a target pose; any M works
    with one model. ``generate_batch`` runs collated tensors (msgen.data's batch format).
    """

    def __init__(self, generator: Generator, device: str | torch.device = "cpu", config: object | None = None):
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.config = config

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", ops: str | None = None
    ) -> MultiSourceGenerator:
        """Load the generator of a training checkpoint, or of a generator file exported by
        ``python -m msgen.export export`` (.safetensors), built from its own configuration.

        ops: None keeps the checkpoint's op implementations; "reference" or "fast" switches them.
        Raises FileNotFoundError for a missing file and msgen.checkpoint.CheckpointError for a file
        of another format version or a generator of another size than its configuration.
        """
        generator, config = load_generator(path, map_location=device)
        if ops is not None:
            set_ops_impl(generator, ops)
        return cls(generator, device, config)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images the model takes and makes."""
        return tuple(self.generator.config.image_size)

    def prepare(self, sources: Tensor, source_kp: Tensor, target_kp: Tensor) -> dict[str, Tensor]:
        """The generator's inputs, from ``msgen.pose.pose_inputs`` as in training and evaluation.

        sources (B, M, 3, H, W) in [-1, 1]; source_kp (B, M, 18, 2); target_kp (B, 18, 2), all at
        the model's size. Returns the batch dict of ``Generator.forward_batch`` on self.device.
        """
        pose = pose_inputs(source_kp.to(self.device), target_kp.to(self.device), self.image_size)
        return {"sources": sources.to(self.device), **pose}

    @torch.no_grad()
    def generate_batch(self, batch: dict[str, Tensor]) -> GeneratorOutput:
        """Run the generator on a batch dict (keys of Generator.forward_batch; "valid" optional)."""
        moved = {k: v.to(self.device) for k, v in batch.items() if isinstance(v, Tensor)}
        return self.generator.forward_batch(moved)

    def frame_photo(
        self, photo: SourceImage, name: str = "photo", detector: Detector | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A photo's person detected and framed as in the datasets: (uint8 (H, W, 3) image at the
        model's size, its (18, 2) keypoints). Raises UsageError naming ``name`` when no person,
        several people or a person without the four torso points is found."""
        # A file is read upright (EXIF orientation applied): phones store portraits sideways.
        pixels = read_photo(photo, name)[0] if isinstance(photo, (str, Path)) else load_image(photo, name)
        kp = detect_person(pixels, name, detector)
        framed, kp = frame_person(pixels, kp, self.image_size)
        return framed, check_pose(kp, self.image_size, f"{name} (framed)")

    def pose_of(self, photo: SourceImage, name: str = "photo", detector: Detector | None = None) -> np.ndarray:
        """The pose (18, 2) of a photo's person in the model's frame, ready as ``target_keypoints``."""
        return self.frame_photo(photo, name, detector)[1]

    def generate(
        self,
        source_images: Sequence[SourceImage],
        source_keypoints: Sequence[np.ndarray | Tensor | None] | np.ndarray | Tensor | None = None,
        target_keypoints: np.ndarray | Tensor | None = None,
        target_size: tuple[int, int] | None = None,
        detector: Detector | None = None,
    ) -> GenerationResult:
        """The person of ``source_images`` in the target pose.

        source_images: M paths, PIL images or uint8 (h, w, 3) arrays.
        source_keypoints: M poses (18, 2) (y, x), each in its own image's pixels (that image is
            resized to the model's size); None for all, or None in place of one pose: that source
            is a photo whose person is detected (``detector``, default MediaPipe) and framed.
        target_keypoints: (18, 2) in the output image's pixels, or in an image of ``target_size``
            (``pose_of(photo)`` gives a photo's pose in the output's pixels).
        """
        if isinstance(source_images, (str, Path, Image.Image, np.ndarray)) and not (
            isinstance(source_images, np.ndarray) and source_images.ndim == 4
        ):
            raise UsageError("source_images must be a sequence of images (M >= 1), e.g. a list of paths")
        M = len(source_images)
        if M < 1:
            raise UsageError("source_images is empty: give at least one source image")
        if source_keypoints is None:
            source_keypoints = [None] * M
        if len(source_keypoints) != M:
            raise UsageError(f"source_keypoints holds {len(source_keypoints)} poses for {M} source images")
        if target_keypoints is None:
            raise UsageError("target_keypoints is required: an (18, 2) pose, e.g. model.pose_of('photo.jpg')")
        size = self.image_size
        images, poses = [], []
        for i, (image, kp) in enumerate(zip(source_images, source_keypoints)):
            if kp is None:
                pixels, kp = self.frame_photo(image, f"source_images[{i}]", detector)
            else:
                pixels = load_image(image, f"source_images[{i}]")
                kp = check_pose(kp, pixels.shape[:2], f"source_keypoints[{i}]")
                pixels, kp = fit_to_size(pixels, kp, size, f"source_images[{i}]")
            images.append(pixels)
            poses.append(kp)
        target = check_pose(target_keypoints, target_size or size, "target_keypoints")
        if target_size is not None and tuple(target_size) != size:
            target = rescale_keypoints(target, tuple(target_size), size)

        sources = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        batch = self.prepare(sources[None], torch.from_numpy(np.stack(poses))[None], torch.from_numpy(target)[None])
        output = self.generate_batch(batch)
        return GenerationResult(
            image=to_uint8(output.image[0]),
            saliency=output.saliency[0].float().cpu().numpy(),
            sources=images,
            target_keypoints=target,
        )
