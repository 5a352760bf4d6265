"""Framing a photo's person as the datasets do (msgen.pose.framing)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from msgen.data.synthetic import generate_synthetic
from msgen.pose import is_usable, read_annotations
from msgen.pose.framing import (
    ANKLE_Y, CENTRE_X, HIP_Y, KNEE_Y, REFERENCE_SIZE, SHOULDER_Y, frame_person, framing_box, measure_framing,
)  # fmt: skip
from msgen.pose.keypoints import KEYPOINT_INDEX as K


def _mid(kp: np.ndarray, a: str, b: str) -> np.ndarray:
    return (kp[K[a]] + kp[K[b]]) / 2


def _reference(size: tuple[int, int], value: float, axis: int) -> float:
    """A reference row (axis 0) or column (axis 1) of the 128x64 frame at another frame size."""
    return (value + 0.5) / REFERENCE_SIZE[axis] * size[axis] - 0.5


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    data = generate_synthetic(tmp_path_factory.mktemp("framing"), identities=2, images_per_identity=4, size=(128, 64), seed=5)
    rows = read_annotations(data / "annotation.csv")
    return [(np.asarray(Image.open(data / "images" / n).convert("RGB")), kp) for n, kp in sorted(rows.items())]


@pytest.mark.parametrize("size", [(128, 64), (64, 32), (256, 256)])
def test_framed_person_lands_on_the_reference_positions(people, size):
    for image, kp in people:
        # The person as a photo: enlarged 3x and placed off-centre on a larger canvas.
        photo = np.full((600, 500, 3), 200, np.uint8)
        big = np.asarray(Image.fromarray(image).resize((64 * 3, 128 * 3), Image.NEAREST))
        photo[50 : 50 + 384, 220 : 220 + 192] = big
        photo_kp = np.where(kp >= 0, (kp + 0.5) * 3 - 0.5 + np.array([50, 220]), -1).astype(np.float32)
        framed, framed_kp = frame_person(photo, photo_kp, size)
        assert framed.shape == (*size, 3) and framed.dtype == np.uint8
        shoulder = _mid(framed_kp, "Rsho", "Lsho")
        centre = (shoulder + _mid(framed_kp, "Rhip", "Lhip")) / 2
        assert abs(shoulder[0] - _reference(size, SHOULDER_Y, 0)) < 0.51
        assert abs(centre[1] - _reference(size, CENTRE_X, 1)) < 0.51
        if (framed_kp[[K["Rank"], K["Lank"]]] >= 0).all() and (kp[[K["Rank"], K["Lank"]]] >= 0).all():
            assert abs(_mid(framed_kp, "Rank", "Lank")[0] - _reference(size, ANKLE_Y, 0)) < 0.51
        assert is_usable(framed_kp)


def test_framing_does_not_depend_on_the_photos_scale_or_position(people):
    """The same person enlarged 2x and shifted gives the same framed image (up to resampling)."""
    image, kp = people[0]
    framed, framed_kp = frame_person(image, kp, (128, 64))
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    photo = np.empty((400, 300, 3), np.uint8)
    photo[:] = np.median(border, axis=0).astype(np.uint8)  # the fill that framing the image itself uses
    photo[30 : 30 + 256, 70 : 70 + 128] = np.asarray(Image.fromarray(image).resize((128, 256), Image.BICUBIC))
    photo_kp = np.where(kp >= 0, (kp + 0.5) * 2 - 0.5 + np.array([30, 70]), -1).astype(np.float32)
    again, again_kp = frame_person(photo, photo_kp, (128, 64))
    np.testing.assert_allclose(again_kp, framed_kp, atol=1e-3)
    diff = np.abs(again.astype(int) - framed.astype(int))
    assert np.median(diff) <= 2 and np.mean(diff) < 6


def test_points_outside_the_frame_become_missing_and_the_fill_is_the_border_colour():
    kp = np.full((18, 2), -1.0, np.float32)
    # A person whose raised wrist is far above the head: it leaves the frame.
    for name, yx in {"Rsho": (100, 90), "Lsho": (100, 110), "Rhip": (150, 92), "Lhip": (150, 108),
                     "Rkne": (200, 92), "Lkne": (200, 108), "Rwri": (2, 85)}.items():  # fmt: skip
        kp[K[name]] = yx
    photo = np.full((220, 200, 3), (10, 200, 30), np.uint8)
    framed, framed_kp = frame_person(photo, kp, (128, 64))
    assert (framed_kp[K["Rwri"]] == -1).all() and is_usable(framed_kp)
    assert abs(_mid(framed_kp, "Rkne", "Lkne")[0] - _reference((128, 64), KNEE_Y, 0)) < 0.51  # no ankles: knees
    np.testing.assert_array_equal(framed[-1, 0], (10, 200, 30))  # beyond the photo: its border colour
    with pytest.raises(ValueError, match="both shoulders and both hips"):
        framing_box(np.full((18, 2), -1.0), (128, 64))


@pytest.mark.data
def test_framing_constants_are_the_market_annotations_medians(shared_data):
    poses = []
    for part in ("train", "test"):
        poses += read_annotations(shared_data / "market-keypoints" / f"market-annotation-{part}.csv").values()
    measured = measure_framing(np.stack(poses))
    expected = {"shoulder_y": SHOULDER_Y, "hip_y": HIP_Y, "knee_y": KNEE_Y, "ankle_y": ANKLE_Y, "centre_x": CENTRE_X}
    for key, value in expected.items():
        assert abs(measured[key] - value) <= 0.5, (key, measured[key], value)
