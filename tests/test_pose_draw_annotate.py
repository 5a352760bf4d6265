"""Drawing poses and the annotate CLI (mediapipe is optional: its tests skip without it)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from msgen.pose import body_part_affines, draw_pose, read_annotations, save_pose_figure
from msgen.pose.draw import KEYPOINT_COLOURS, main as draw_main



def _pose() -> np.ndarray:
    kp = np.full((18, 2), -1.0)
    kp[[1, 2, 5, 8, 11, 3]] = [(10, 16), (10, 10), (10, 22), (30, 11), (30, 21), (20, 8)]
    return kp


def test_draw_pose_marks_keypoints_and_parts():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(40, 32, 3), dtype=np.uint8)
    kp = _pose()
    plain = draw_pose(image, kp, scale=3)
    assert plain.shape == (120, 96, 3) and plain.dtype == np.uint8
    for i in (1, 2, 8):
        y, x = (kp[i] * 3 + 1).astype(int)
        np.testing.assert_array_equal(plain[y, x], KEYPOINT_COLOURS[i])
    assert (plain[::3, ::3][:2, :2] == image[:2, :2]).all()  # far from the pose: untouched
    theta, masks = body_part_affines(torch.from_numpy(kp)[None], torch.from_numpy(kp)[None], (40, 32))
    tinted = draw_pose(image, kp, masks[0], scale=3)
    covered = masks[0, 2:].amax(0).numpy().repeat(3, 0).repeat(3, 1) > 0
    assert covered.any() and (tinted[covered] != plain[covered]).any()
    with pytest.raises(ValueError, match="image"):
        draw_pose(image.astype(np.float32), kp)
    with pytest.raises(ValueError, match="parts_masks"):
        draw_pose(image, kp, masks[0, :, :10])


@pytest.mark.data
def test_save_pose_figure_and_cli(tmp_path, shared_data):
    folder = shared_data / "market-real"
    names = list(read_annotations(folder / "annotation.csv"))[:2]
    out = tmp_path / "figure.png"
    draw_main([str(folder / "annotation.csv"), *(str(folder / "images" / n) for n in names), "--out", str(out)])
    with Image.open(out) as figure:
        assert figure.size == (4 * 64 * 4 + 3 * 4, 128 * 4)
    path = save_pose_figure(tmp_path / "sub" / "two.png", [np.zeros((5, 4, 3), np.uint8)] * 2, gap=1)
    with Image.open(path) as figure:
        assert figure.size == (9, 5)



def test_annotate_without_mediapipe_says_how_to_install(tmp_path):
    # mediapipe made unimportable in the child, so this runs with and without the pose extra.
    code = ("import sys; sys.modules['mediapipe'] = None; from msgen.pose.annotate import main; "
            f"sys.exit(main(['x.png', '--out', {str(tmp_path / 'a.csv')!r}]))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2 and "error: detecting keypoints needs mediapipe" in result.stderr
    assert "pip install 'msgen[pose]'" in result.stderr and not (tmp_path / "a.csv").exists()


@pytest.mark.data
@pytest.mark.usefixtures("require_mediapipe")
def test_annotate_real_images_close_to_the_openpose_annotations(tmp_path, shared_data):
    folder = shared_data / "market-real"
    truth = read_annotations(folder / "annotation.csv")
    names = sorted(truth)[::8][:24]
    out = tmp_path / "annotation.csv"
    missing = tmp_path / "absent.png"
    bad = subprocess.run([sys.executable, "-m", "msgen.pose.annotate", str(missing), "--out", str(out)],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode != 0 and "image not found" in bad.stderr
    subprocess.run(
        [sys.executable, "-m", "msgen.pose.annotate", *(str(folder / "images" / n) for n in names), "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    found = read_annotations(out)
    assert list(found) == names
    detected = [n for n in names if (found[n] >= 0).any()]
    assert len(detected) >= len(names) // 2
    errors = []
    for n in detected:
        both = (found[n] >= 0).all(-1) & (truth[n] >= 0).all(-1)
        errors += list(np.linalg.norm(found[n][both] - truth[n][both], axis=-1))
    assert np.median(errors) < 6  # pixels, on 128x64 crops
