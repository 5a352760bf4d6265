"""Keypoint format, validation and the annotation CSV."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msgen.pose import (
    KEYPOINT_NAMES,
    LIMBS,
    NUM_KEYPOINTS,
    check_keypoints,
    is_usable,
    present,
    read_annotations,
    write_annotations,
)


def _random_pose(rng: np.random.Generator, integer: bool = True) -> np.ndarray:
    kp = rng.uniform(0, 127, size=(NUM_KEYPOINTS, 2))
    kp = np.rint(kp) if integer else kp
    kp[rng.random(NUM_KEYPOINTS) < 0.3] = -1
    return kp.astype(np.float32)


def test_names_and_limbs_are_consistent():
    assert len(KEYPOINT_NAMES) == NUM_KEYPOINTS == len(set(KEYPOINT_NAMES))
    assert KEYPOINT_NAMES[2] == "Rsho" and KEYPOINT_NAMES[11] == "Lhip" and KEYPOINT_NAMES[17] == "Rear"
    assert all(0 <= a < NUM_KEYPOINTS and 0 <= b < NUM_KEYPOINTS and a != b for a, b in LIMBS)


def test_present_and_usable_numpy_and_torch():
    rng = np.random.default_rng(0)
    kp = np.stack([_random_pose(rng) for _ in range(7)])
    expected = (kp[..., 0] >= 0) & (kp[..., 1] >= 0)
    np.testing.assert_array_equal(present(kp), expected)
    np.testing.assert_array_equal(present(torch.from_numpy(kp)).numpy(), expected)
    usable = expected[:, [2, 5, 8, 11]].all(-1)
    np.testing.assert_array_equal(is_usable(kp), usable)
    assert is_usable(kp[0]) == bool(usable[0])
    full = np.full((NUM_KEYPOINTS, 2), 5.0)
    full[KEYPOINT_NAMES.index("Lhip")] = -1
    assert not is_usable(full)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((17, 2)), "shape"),
        (np.zeros((18, 3)), "shape"),
        (np.full((18, 2), np.nan), "NaN"),
        (np.array([[np.inf, 0]] + [[1, 1]] * 17), "NaN or Inf"),
        (np.array([[-1, 4]] + [[1, 1]] * 17), "nose"),
        (np.array([[3, 3]] * 5 + [[-2, -2]] + [[1, 1]] * 12), "Lsho"),
    ],
)
def test_check_keypoints_rejects(bad, message):
    with pytest.raises(ValueError, match=message):
        check_keypoints(bad, name="pose_x")
    with pytest.raises(ValueError, match="pose_x"):
        check_keypoints(torch.as_tensor(bad), name="pose_x")


def test_csv_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    mapping = {f"{i:04d}_c1s1_{rng.integers(1e6):06d}_01.jpg": _random_pose(rng, integer=i % 2 == 0) for i in range(9)}
    path = tmp_path / "annotation.csv"
    write_annotations(path, mapping)
    text = path.read_text().splitlines()
    assert text[0] == "name:keypoints_y:keypoints_x" and len(text) == 10
    back = read_annotations(path)
    assert list(back) == list(mapping)
    for name, kp in mapping.items():
        assert back[name].dtype == np.float32 and back[name].shape == (18, 2)
        np.testing.assert_array_equal(back[name], kp)


def test_reads_the_public_format(tmp_path):
    ys = [14, 28, 29, 50, 65, 28, 41, 27, 68, 96, 112, 67, 93, 119, 12, -1, 14, -1]
    xs = [45, 30, 20, 18, 31, 40, 54, 48, 26, 20, 2, 44, 51, 53, 41, -1, 30, -1]
    path = tmp_path / "a.csv"
    path.write_text(f"name:keypoints_y:keypoints_x\n0364_c2s1_084546_01.jpg: {ys}: {xs}\n\n")
    kp = read_annotations(path)["0364_c2s1_084546_01.jpg"]
    np.testing.assert_array_equal(kp[:, 0], ys)
    np.testing.assert_array_equal(kp[:, 1], xs)


ROW = "a.jpg: [" + ", ".join(["3"] * 18) + "]: [" + ", ".join(["4"] * 18) + "]"


@pytest.mark.parametrize(
    "row, message",
    [
        ("a.jpg [1, 2]", "malformed row"),
        ("a.jpg: [" + ", ".join(["3"] * 17) + "]: [" + ", ".join(["4"] * 18) + "]", "keypoints_y has 17 values"),
        ("a.jpg: [" + ", ".join(["3"] * 18) + "]: [" + ", ".join(["x"] * 18) + "]", "not a number"),
        ("a.jpg: [" + ", ".join(["-3"] * 18) + "]: [" + ", ".join(["4"] * 18) + "]", "must be >= 0"),
        ("a.jpg: [" + ", ".join(["nan"] * 18) + "]: [" + ", ".join(["4"] * 18) + "]", "NaN"),
        (ROW, "duplicate"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, row, message):
    path = tmp_path / "bad.csv"
    path.write_text(f"name:keypoints_y:keypoints_x\n{ROW.replace('a.jpg', 'ok.jpg')}\n{ROW}\n{row}\n")
    with pytest.raises(ValueError, match=message) as error:
        read_annotations(path)
    assert f"{path}:4: " in str(error.value)  # the header is line 1, the bad row line 4


def test_bad_header_and_missing_file(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("name,keypoints_y,keypoints_x\n")
    with pytest.raises(ValueError, match=f"{path}:1: expected the header"):
        read_annotations(path)
    with pytest.raises(FileNotFoundError):
        read_annotations(tmp_path / "absent.csv")


def test_write_rejects_bad_names_and_poses(tmp_path):
    kp = np.zeros((18, 2), np.float32)
    with pytest.raises(ValueError, match="cannot be stored"):
        write_annotations(tmp_path / "x.csv", {"a:b.jpg": kp})
    with pytest.raises(ValueError, match="keypoints of a.jpg"):
        write_annotations(tmp_path / "x.csv", {"a.jpg": np.zeros((18, 3))})
