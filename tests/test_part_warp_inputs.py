"""part_warp_inputs: the warp's theta and masks at a feature map's size from keypoints, the same as
msgen's encoder builds them (body_part_affines, affines_at_stride, part_masks_at)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import msgen.ops
from msgen.pose import affines_at_stride, body_part_affines, part_masks_at, part_warp_inputs, read_annotations

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """The three example sources, each paired with the example target: (3, 18, 2) twice."""
    rows = read_annotations(EXAMPLES / "annotation.csv")
    sources = torch.from_numpy(np.stack([rows[n] for n in ("0017_front_000.png", "0017_back_007.png", "0017_left_003.png")]))
    return sources, torch.tensor(rows["0017_frontright_018.png"]).expand(3, 18, 2)


@pytest.mark.parametrize("stride", [1, 2, 4, (2, 1)])
def test_equals_the_encoders_composition(stride):
    source, target = example_pairs()
    theta_image, masks_image = body_part_affines(source, target, (64, 32))
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    theta, masks = part_warp_inputs(source, target, (64, 32), stride=stride)
    torch.testing.assert_close(theta, affines_at_stride(theta_image, stride), rtol=0, atol=0)
    torch.testing.assert_close(masks, part_masks_at(masks_image, (64 // sy, 32 // sx)), rtol=0, atol=0)
    by_size = part_warp_inputs(source, target, (64, 32), (64 // sy, 32 // sx))
    assert all(torch.equal(a, b) for a, b in zip(by_size, (theta, masks)))
    assert theta.shape == (3, 10, 2, 3) and masks.shape == (3, 10, 64 // sy, 32 // sx)


def test_warps_a_feature_map_into_the_target_pose():
    source, target = example_pairs()
    features = torch.rand(3, 5, 32, 16, generator=torch.Generator().manual_seed(0))
    theta, masks = part_warp_inputs(source, target, (64, 32), (32, 16))
    warped = msgen.ops.part_warp(features, theta, masks, impl="reference")
    assert warped.shape == (3, 5, 32, 16) and torch.isfinite(warped).all() and warped.abs().sum() > 0


def test_bad_sizes_are_named():
    source, target = example_pairs()
    with pytest.raises(ValueError, match="exactly one of feature_size"):
        part_warp_inputs(source, target, (64, 32))
    with pytest.raises(ValueError, match="exactly one of feature_size"):
        part_warp_inputs(source, target, (64, 32), (32, 16), stride=2)
    with pytest.raises(ValueError, match="feature_size 30x16 must divide the image size 64x32"):
        part_warp_inputs(source, target, (64, 32), (30, 16))
    with pytest.raises(ValueError, match="stride 3 must be >= 1 and divide"):
        part_warp_inputs(source, target, (64, 32), stride=3)
