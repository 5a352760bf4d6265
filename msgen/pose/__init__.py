"""msgen.pose: the 18-keypoint pose format and the geometry built on it (METHOD.md).

Keypoints are float (..., 18, 2) as (y, x) pixels of the stored image, -1 = missing.
- keypoints: names, skeleton, validation, the annotation CSV.
- heatmaps: Gaussian keypoint heatmaps (batched torch).
- person_mask: Ma et al.'s person mask for mask-SSIM / mask-IS.
- parts: the 10 body parts' backward affines and target-side masks (batched torch).
- affine: moving those affines to a feature map's grid; ``part_warp_inputs``: theta and masks for
  msgen.ops.part_warp on any feature map, from keypoints (the drop-in for another generator).
- inputs: all of the generator's pose tensors for a batch of keypoints, on their device.
- draw: pictures of poses and parts; annotate: keypoints for new photos (optional mediapipe).
- detector: finding the person in a photo (a Detector interface; MediaPipe, the pose extra).
- framing: cropping a photo around its person as the datasets frame people.
``python -m msgen.pose`` lists the tools that run as scripts.
"""

from msgen.pose.affine import affines_at_stride, part_warp_inputs
from msgen.pose.heatmaps import HEATMAP_SIGMA, heatmaps
from msgen.pose.inputs import POSE_KEYS, pose_inputs, with_pose_inputs
from msgen.pose.keypoints import (
    KEYPOINT_NAMES,
    LIMBS,
    MIRRORED,
    MISSING,
    NUM_KEYPOINTS,
    check_keypoints,
    is_usable,
    mirror_keypoints,
    present,
    read_annotations,
    write_annotations,
)
from msgen.pose.parts import NUM_PARTS, PART_NAMES, body_of, body_part_affines, one_part_per_pixel, part_masks_at, torso_area
from msgen.pose.person_mask import person_mask

_LAZY = {"draw_pose", "save_pose_figure"}


def __getattr__(name: str):
    # msgen.pose.draw is also a script (python -m msgen.pose.draw); importing it here eagerly would
    # make runpy warn that the module was imported before being run.
    if name in _LAZY:
        from msgen.pose import draw

        return getattr(draw, name)
    raise AttributeError(f"module 'msgen.pose' has no attribute {name!r}")

__all__ = [
    "HEATMAP_SIGMA",
    "KEYPOINT_NAMES",
    "LIMBS",
    "MIRRORED",
    "MISSING",
    "NUM_KEYPOINTS",
    "NUM_PARTS",
    "PART_NAMES",
    "POSE_KEYS",
    "affines_at_stride",
    "body_of",
    "body_part_affines",
    "check_keypoints",
    "draw_pose",
    "heatmaps",
    "is_usable",
    "mirror_keypoints",
    "one_part_per_pixel",
    "part_masks_at",
    "part_warp_inputs",
    "torso_area",
    "person_mask",
    "pose_inputs",
    "present",
    "read_annotations",
    "save_pose_figure",
    "with_pose_inputs",
    "write_annotations",
]
