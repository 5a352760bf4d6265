"""Keypoints given as (x, y) where msgen expects (y, x) get a hint at the order, not a guess at the
image size; keypoints that fit neither way keep the size hint."""

from __future__ import annotations

import numpy as np
import pytest

from msgen.api import check_pose
from msgen.errors import UsageError
from msgen.pose.keypoints import order_hint


def standing_person(size: tuple[int, int]) -> np.ndarray:
    """18 (y, x) points of an upright person filling a (H, W) image (taller than wide)."""
    H, W = size
    rng = np.random.default_rng(3)
    return np.stack([rng.uniform(0.1, 0.95, 18) * (H - 1), rng.uniform(0.2, 0.8, 18) * (W - 1)], -1).astype(np.float32)


def test_transposed_keypoints_get_the_order_hint():
    size = (64, 32)
    kp = standing_person(size)
    assert order_hint(kp, size) == ""  # fits as given
    with pytest.raises(UsageError, match=r"fit the image as \(x, y\) pairs.*\(y, x\).*kp\[:, ::-1\]"):
        check_pose(kp[:, ::-1], size, "target keypoints")
    np.testing.assert_array_equal(check_pose(kp[:, ::-1][:, ::-1], size, "target keypoints"), kp)


def test_keypoints_of_another_size_keep_the_size_hint():
    kp = standing_person((128, 64))  # twice the size: fits neither way
    with pytest.raises(UsageError, match="another image size") as raised:
        check_pose(kp, (64, 32), "target keypoints")
    assert "(x, y)" not in str(raised.value)
