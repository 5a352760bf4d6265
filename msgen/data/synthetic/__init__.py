"""The built-in synthetic dataset: articulated people seen from any side, with exact keypoints.

- ``render``: the renderer (appearance, pose, the painter, ``render_sample``, ``logo_layer``);
- ``write``: ``generate_synthetic`` and the command line ``python -m msgen.data.synthetic``.

The names below are the ones ``msgen.data.synthetic`` has always offered.
"""

from msgen.data.synthetic.render import (
    SUPERSAMPLE,
    VIEW_NAMES,
    Appearance,
    BodyPose,
    example_grid,
    identity_appearance,
    in_frame,
    logo_layer,
    parse_sample_name,
    render_person,
    render_sample,
    sample_appearance,
    sample_background,
    sample_pose,
    skeleton_3d,
    view_name,
)
from msgen.data.synthetic.write import generate_synthetic, main, parse_size

__all__ = [
    "SUPERSAMPLE",
    "VIEW_NAMES",
    "Appearance",
    "BodyPose",
    "example_grid",
    "generate_synthetic",
    "identity_appearance",
    "in_frame",
    "logo_layer",
    "main",
    "parse_sample_name",
    "parse_size",
    "render_person",
    "render_sample",
    "sample_appearance",
    "sample_background",
    "sample_pose",
    "skeleton_3d",
    "view_name",
]
