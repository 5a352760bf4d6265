"""The built-in synthetic people: determinism, exact keypoints, views that differ, the CLI."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

from msgen.data import synthetic
from msgen.data.synthetic import (
    SUPERSAMPLE,
    generate_synthetic,
    identity_appearance,
    render_person,
    render_sample,
    sample_pose,
)
from msgen.pose import is_usable, read_annotations

SIZE = (128, 64)


def _files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _solid(value: int, size=SIZE) -> np.ndarray:
    return np.full((size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE, 3), value, dtype=np.uint8)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    a = _files(generate_synthetic(tmp_path / "a", identities=3, images_per_identity=4, seed=7))
    b = _files(generate_synthetic(tmp_path / "b", identities=3, images_per_identity=4, seed=7))
    c = _files(generate_synthetic(tmp_path / "c", identities=3, images_per_identity=4, seed=8))
    assert len(a) == 3 * 4 + 2  # images, annotation.csv, synthetic.json
    assert a == b
    images_a = [data for path, data in a.items() if path.suffix == ".png"]
    images_c = [data for path, data in c.items() if path.suffix == ".png"]
    assert not set(images_a) & set(images_c)


def test_workers_do_not_change_the_output(tmp_path):
    serial = _files(generate_synthetic(tmp_path / "serial", identities=3, images_per_identity=2, seed=3))
    parallel = _files(generate_synthetic(tmp_path / "parallel", identities=3, images_per_identity=2, seed=3, workers=2))
    assert serial == parallel


def test_files_follow_the_standard_format(tmp_path):
    out = generate_synthetic(tmp_path, identities=4, images_per_identity=5, size=(96, 80), seed=1)
    annotations = read_annotations(out / "annotation.csv")
    images = sorted(p.name for p in (out / "images").iterdir())
    assert sorted(annotations) == images and len(images) == 20
    identities = {name.split("_", 1)[0] for name in images}
    assert identities == {"0001", "0002", "0003", "0004"}  # never 0000, which Market's filter drops
    for name, kp in annotations.items():
        assert name.split("_")[1] in synthetic.VIEW_NAMES
        assert is_usable(kp)
        seen = kp[(kp >= 0).all(-1)]
        assert (seen[:, 0] <= 95).all() and (seen[:, 1] <= 79).all()


def test_keypoints_sit_on_the_drawn_person():
    # Drawn over black and over white, a pixel covered by the person is the same in both images.
    rng = np.random.default_rng(12345)
    checked = 0
    for _ in range(40):
        appearance = synthetic.sample_appearance(rng)
        pose = sample_pose(rng)
        on_black, kp = render_person(appearance, pose, _solid(0))
        on_white, kp_white = render_person(appearance, pose, _solid(255))
        np.testing.assert_array_equal(kp, kp_white)
        seen = (kp >= 0).all(-1)
        assert seen[1:14].all(), "body points (neck to ankles) are always written as present"
        rows, cols = kp[seen].astype(int).T
        assert (rows >= 0).all() and (rows < SIZE[0]).all() and (cols >= 0).all() and (cols < SIZE[1]).all()
        np.testing.assert_array_equal(on_black[rows, cols], on_white[rows, cols])
        checked += len(rows)
    assert checked > 40 * 13


def test_face_points_follow_the_view():
    appearance = identity_appearance(0, 5)
    pose = sample_pose(np.random.default_rng(0))
    nose, eyes, ears = 0, [14, 15], [16, 17]
    _, front = render_person(appearance, dataclasses.replace(pose, yaw=0.0), _solid(0))
    _, back = render_person(appearance, dataclasses.replace(pose, yaw=math.pi), _solid(0))
    _, right = render_person(appearance, dataclasses.replace(pose, yaw=math.pi / 2), _solid(0))
    assert (front[[nose, *eyes, *ears]] >= 0).all()
    assert (back[[nose, *eyes]] == -1).all() and (back[ears] >= 0).all()
    assert (right[17] >= 0).all() and (right[16] == -1).all()  # the right side faces the camera


def _torso_patch(image: np.ndarray, kp: np.ndarray) -> np.ndarray:
    centre = kp[[2, 5, 8, 11]].mean(0).round().astype(int)
    return image[centre[0] - 2 : centre[0] + 3, centre[1] - 2 : centre[1] + 3].reshape(-1, 3).astype(float)


@pytest.mark.parametrize("identity", [1, 2, 3, 4, 5, 6])
def test_front_and_back_look_different(identity):
    appearance = identity_appearance(11, identity)
    pose = dataclasses.replace(sample_pose(np.random.default_rng(identity)), arm_swing=(0.0, 0.0), elbow=(0.0, 0.0))
    front, kp_front = render_person(appearance, dataclasses.replace(pose, yaw=0.0), _solid(128))
    back, kp_back = render_person(appearance, dataclasses.replace(pose, yaw=math.pi), _solid(128))
    # The logo is on the front only and the back has another colour.
    logo = np.array(appearance.logo_colour, dtype=float)
    shirt_back = np.array(appearance.shirt_back, dtype=float)
    front_person = front.reshape(-1, 3).astype(float)
    back_person = back.reshape(-1, 3).astype(float)
    exactly = lambda pixels, colour: (np.abs(pixels - colour).max(-1) <= 2).sum()  # noqa: E731
    assert exactly(front_person, logo) >= 6 and exactly(back_person, logo) == 0
    assert np.abs(_torso_patch(back, kp_back).mean(0) - shirt_back).max() < 40
    assert np.abs(_torso_patch(front, kp_front).mean(0) - _torso_patch(back, kp_back).mean(0)).sum() > 60


def test_render_sample_names_its_view():
    name, image, kp = render_sample(3, 12, 7, SIZE)
    identity, view, index = name[: -len(".png")].split("_")
    assert (identity, index) == ("0012", "007") and view in synthetic.VIEW_NAMES
    assert image.shape == (*SIZE, 3) and image.dtype == np.uint8 and kp.shape == (18, 2)


def test_cli_writes_the_dataset(tmp_path, capsys):
    synthetic.main(["--out", str(tmp_path), "--identities", "2", "--images-per-identity", "3", "--size", "64x48",
                    "--seed", "4"])
    assert "wrote 6 images" in capsys.readouterr().out
    annotations = read_annotations(tmp_path / "annotation.csv")
    for name, kp in annotations.items():
        identity, _, index = name[: -len(".png")].split("_")
        expected_name, _, expected_kp = render_sample(4, int(identity), int(index), (64, 48))
        assert name == expected_name
        np.testing.assert_array_equal(kp, expected_kp)


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(identities=0, images_per_identity=2), "identities"),
        (dict(identities=2, images_per_identity=2, size=(16, 16)), "size"),
        (dict(identities=2, images_per_identity=2, workers=0), "workers"),
    ],
)
def test_bad_arguments_are_named(tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        generate_synthetic(tmp_path, **args)


def test_cli_rejects_a_malformed_size(tmp_path):
    with pytest.raises(SystemExit):
        synthetic.main(["--out", str(tmp_path), "--size", "128by64"])


@pytest.mark.slow
def test_ten_thousand_images_in_under_a_minute_of_one_core(tmp_path):
    # Process CPU time, so other jobs sharing the core do not count; the wall time is reported.
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    generate_synthetic(tmp_path, identities=500, images_per_identity=20, seed=0, workers=1)
    cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    print(f"10,000 images: {cpu:.1f} s of CPU, {wall:.1f} s wall")
    assert len(list((tmp_path / "images").iterdir())) == 10_000
    assert cpu < 60, f"10,000 images took {cpu:.1f} s of CPU time in one process"


def test_example_grid_shows_every_view():
    grid = synthetic.example_grid(seed=0, identities=2, size=(64, 32))
    assert grid.shape == (2 * 64, 8 * 32, 3) and grid.dtype == np.uint8
