"""The built-in synthetic people: determinism, exact keypoints, views that differ, the CLI."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

from msgen.data import synthetic
from msgen.data.synthetic import render, write
from msgen.data.synthetic import (
    SUPERSAMPLE,
    generate_synthetic,
    identity_appearance,
    logo_layer,
    parse_sample_name,
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


def test_logo_layer_is_the_logo_and_only_the_logo():
    seen = unseen = 0
    for index in range(12):
        name, image, _ = render_sample(5, 3, index, SIZE)
        plain, logo = logo_layer(5, 3, index, SIZE)
        # plain + logo is the image without its sensor noise (at most 6 grey levels of std).
        assert np.abs(image - (plain + logo)).mean() < 6
        covered = np.abs(logo).sum(-1) > 0
        if "front" in name:
            # The logo's pixels move towards its colour from the shirt's, the rest do not change.
            seen += 1
            assert covered.sum() >= 6
            direction = np.array(identity_appearance(5, 3).logo_colour, float) - identity_appearance(5, 3).shirt_front
            assert (logo[covered] @ direction > 0).mean() > 0.9
        if "back" in name:  # turned more than 112.5 degrees from the camera
            unseen += 1
            assert not covered.any()  # the logo exists on the shirt's front only
    assert seen and unseen


def test_render_sample_names_its_view():
    name, image, kp = render_sample(3, 12, 7, SIZE)
    identity, view, index = name[: -len(".png")].split("_")
    assert (identity, index) == ("0012", "007") and view in synthetic.VIEW_NAMES
    assert image.shape == (*SIZE, 3) and image.dtype == np.uint8 and kp.shape == (18, 2)
    assert parse_sample_name(f"images/{name}") == (12, view, 7)
    with pytest.raises(ValueError, match="<identity>_<view>_<index>"):
        parse_sample_name("0001_c1s1_000151_00.jpg")  # a Market-1501 name


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


# -- poses that leave the frame, partial output, any seed trains ---------------------------------------


def test_the_reported_crash_seed_3_identity_444_gives_a_valid_pose():
    # `--identities 1000 --images-per-identity 10 --size 128x64 --seed 3` died writing the CSV on
    # 0444_backright_007.png: the raised right wrist rendered at row -1 (above the top edge).
    from msgen.pose.keypoints import KEYPOINT_INDEX, check_keypoints

    rng = render._image_rng(3, 444, 7)
    pose = sample_pose(rng)
    _, raw = render_person(identity_appearance(3, 444), pose, synthetic.sample_background(rng, SIZE))
    assert raw[KEYPOINT_INDEX["Rwri"], 0] < 0 and raw[KEYPOINT_INDEX["Rwri"], 1] >= 0  # the bad point, as rendered
    name, _, kp = render_sample(3, 444, 7, SIZE)
    assert name == "0444_backright_007.png"
    check_keypoints(kp)
    np.testing.assert_array_equal(kp[KEYPOINT_INDEX["Rwri"]], [-1, -1])  # outside the frame: missing
    inside = (raw >= 0).all(1) & (raw[:, 0] <= SIZE[0] - 1) & (raw[:, 1] <= SIZE[1] - 1)
    np.testing.assert_array_equal(kp[inside], raw[inside])  # every point inside is kept as it was


def test_in_frame_marks_exactly_the_points_outside_the_image():
    kp = np.full((18, 2), 5.0, np.float32)
    kp[0] = (-1, -1)  # already missing
    kp[1] = (0, 0)  # corner pixel: inside
    kp[2] = (63, 31)  # the opposite corner: inside
    kp[3] = (64, 10)  # one row below the last
    kp[4] = (10, 32)  # one column right of the last
    kp[5] = (-1, 7)  # above the top edge
    fixed = synthetic.in_frame(kp, (64, 32))
    assert [i for i in range(18) if (fixed[i] == -1).all()] == [0, 3, 4, 5]
    np.testing.assert_array_equal(fixed[[1, 2, 6]], kp[[1, 2, 6]])
    assert kp[3, 0] == 64  # the input is not modified


@pytest.mark.parametrize("seed", range(40))
def test_any_seed_and_size_renders_poses_inside_their_image(seed):
    # Property: for any seed, image size and identity, every keypoint written is missing or inside
    # the image, and the rows are valid CSV rows. Sizes from 32x32 to 256x256, wide and tall.
    from msgen.pose.keypoints import annotation_row

    rng = np.random.default_rng(seed)
    size = (int(rng.integers(32, 257)), int(rng.integers(32, 257)))
    for identity in rng.integers(1, 5000, 3):
        for index in range(4):
            name, image, kp = render_sample(seed, int(identity), index, size)
            assert image.shape == (*size, 3)
            kept = (kp >= 0).all(1)
            assert ((kp[~kept] == -1).all())
            assert (kp[kept, 0] <= size[0] - 1).all() and (kp[kept, 1] <= size[1] - 1).all()
            annotation_row(name, kp)


def test_annotations_are_written_as_identities_finish_and_a_late_error_keeps_them(tmp_path, monkeypatch):
    real = write._render_identity

    def failing_on_the_third(args):
        if args[2] == 3:
            raise RuntimeError("disk full")
        return real(args)

    monkeypatch.setattr(write, "_render_identity", failing_on_the_third)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_synthetic(tmp_path, identities=4, images_per_identity=2, size=(64, 32), seed=5)
    assert not (tmp_path / "annotation.csv").exists() and not (tmp_path / "synthetic.json").exists()
    lines = (tmp_path / "annotation.csv.partial").read_text().splitlines()
    assert lines[0] == "name:keypoints_y:keypoints_x"
    names = [line.split(":")[0] for line in lines[1:]]
    assert names == [f"000{i}_{name.split('_')[1]}_00{j}.png" for i in (1, 2) for j in (0, 1)
                     for name in [render_sample(5, i, j, (64, 32))[0]]]
    assert all((tmp_path / "images" / name).is_file() for name in names)

    monkeypatch.setattr(write, "_render_identity", real)
    generate_synthetic(tmp_path, identities=4, images_per_identity=2, size=(64, 32), seed=5)
    assert not (tmp_path / "annotation.csv.partial").exists()
    assert len(read_annotations(tmp_path / "annotation.csv")) == 8


@pytest.mark.parametrize("seed, size", [(3, (64, 32)), (11, (32, 32)), (29, (64, 64)), (1234, (128, 64))])
def test_any_seed_gives_a_dataset_that_loads_and_trains_a_step(tmp_path, seed, size):
    import torch

    from msgen.data import PoseImageFolder, TupleDataset, collate_tuples, sample_tuples
    from msgen.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, NearestNeighbourLoss
    from msgen.training.step import TrainingStep

    root = generate_synthetic(tmp_path, identities=3, images_per_identity=3, size=size, seed=seed)
    folder = PoseImageFolder(root / "images", root / "annotation.csv", image_size=size)
    tuples = sample_tuples(folder.identities, 2, seed=seed, max_tuples=2)
    batch = collate_tuples([TupleDataset(folder, tuples)[i] for i in range(len(tuples))])
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig(image_size=size, levels=3, warp_levels=2, width=1 / 16, ops="fast"))
    D = Discriminator(DiscriminatorConfig(width=1 / 16))
    with pytest.warns(UserWarning):  # the pixel-space substitute says so
        nn_loss = NearestNeighbourLoss("pixel")
    adam = dict(lr=2e-4, betas=(0.5, 0.999))
    step = TrainingStep(G, D, nn_loss, torch.optim.Adam(G.parameters(), **adam),
                        torch.optim.Adam(D.parameters(), **adam), image_size=size, lambda_nn=1.0,
                        device=torch.device("cpu"))
    before = [p.detach().clone() for p in G.parameters()]
    losses = step(batch)
    assert torch.isfinite(losses).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters()))
