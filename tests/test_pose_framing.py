"""Framing a photo's person as the datasets do (msgen.pose.framing)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from msgen.data.synthetic import generate_synthetic
from msgen.pose import is_usable, read_annotations
from msgen.errors import UsageError
from msgen.pose.framing import (
    ANKLE_Y, CENTRE_X, FRAMINGS, FULL_BODY, HIP_Y, KNEE_Y, MARKET, REFERENCE_SIZE, SHOULDER_Y, check_sizes,
    frame_keypoints, frame_person, framing_box, get_framing, measure_framing, model_framing, warn_if_squeezed,
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


# --- framings per dataset, close-ups, squeezes ------------------------------------------------------


def _legs_cut(image: np.ndarray, kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo cut a little below the hips (a close-up without legs): knees and ankles gone."""
    cut = int(round(_mid(kp, "Rhip", "Lhip")[0] + 4))
    legless = kp.copy()
    legless[legless[:, 0] > cut - 1] = -1
    return np.ascontiguousarray(image[:cut]), legless


@pytest.mark.parametrize("framing", ["market", "full-body"])
def test_a_close_up_keeps_the_scale_of_its_visible_body(people, framing):
    """A person photographed whole and the same photo with the legs cut off are framed at the same
    scale (sized by the torso when no knee or ankle is seen), not enlarged to fill the frame."""
    for image, kp in people:
        photo = np.asarray(Image.fromarray(image).resize((64 * 3, 128 * 3), Image.BICUBIC))
        photo_kp = np.where(kp >= 0, (kp + 0.5) * 3 - 0.5, -1).astype(np.float32)
        if not (photo_kp[[K["Rank"], K["Lank"]]] >= 0).all():
            continue
        _, whole = frame_person(photo, photo_kp, (128, 128), framing)
        close_up, close_kp = _legs_cut(photo, photo_kp)
        framed, legless = frame_person(close_up, close_kp, (128, 128), framing)
        torso = _mid(whole, "Rhip", "Lhip")[0] - _mid(whole, "Rsho", "Lsho")[0]
        torso_close = _mid(legless, "Rhip", "Lhip")[0] - _mid(legless, "Rsho", "Lsho")[0]
        # The synthetic people's torso-to-legs proportion is near the framings' (a few % apart).
        assert abs(torso_close / torso - 1) < 0.12, (torso_close, torso)
        f = get_framing(framing)
        assert abs(_mid(legless, "Rsho", "Lsho")[0] - f.row("shoulder", 128)) < 0.51
        assert abs(_mid(legless, "Rhip", "Lhip")[0] - f.row("hip", 128)) < 0.51  # the torso at the dataset's scale
        assert not (legless[[K["Rkne"], K["Lkne"], K["Rank"], K["Lank"]]] >= 0).any()
        # Below the photo's edge the frame holds the photo's border colour, not the person stretched.
        border = np.concatenate([close_up[0], close_up[-1], close_up[:, 0], close_up[:, -1]])
        assert np.abs(framed[-1].astype(int) - np.median(border, 0)).max() <= 1


def test_framings_place_people_at_their_own_positions_and_keep_their_shape(people):
    image, kp = people[0]
    for name, framing in FRAMINGS.items():
        assert get_framing(name) is framing
        framed_kp = frame_keypoints(kp, (256, 256), name)
        assert abs(_mid(framed_kp, "Rsho", "Lsho")[0] - framing.row("shoulder", 256)) < 0.51
        # One scale for both axes: shoulder width over torso length as in the photo.
        def shape(p: np.ndarray) -> float:
            width = np.linalg.norm(p[K["Rsho"]] - p[K["Lsho"]])
            return width / (_mid(p, "Rhip", "Lhip")[0] - _mid(p, "Rsho", "Lsho")[0])
        assert abs(shape(framed_kp) / shape(kp) - 1) < 1e-4
        np.testing.assert_allclose(frame_person(image, kp, (256, 256), name)[1], framed_kp)
    assert get_framing(None) is MARKET and MARKET.row("shoulder", 128) == pytest.approx(SHOULDER_Y)
    with pytest.raises(ValueError, match="framing must be one of market, full-body, got 'deepfashion'"):
        get_framing("deepfashion")


def test_a_model_uses_the_framing_its_configuration_records():
    from types import SimpleNamespace

    assert model_framing(None) is MARKET
    assert model_framing(SimpleNamespace(data=SimpleNamespace(root=None))) is MARKET  # recorded before framings
    assert model_framing(SimpleNamespace(data=SimpleNamespace(framing="full-body"))) is FULL_BODY


def test_a_change_of_aspect_ratio_warns_once_with_the_ratio():
    with pytest.warns(UserWarning) as caught:
        message = warn_if_squeezed([(256, 256)] * 5 + [(128, 64)], (64, 32), "--data.root x")
    assert len(caught) == 1 and str(caught[0].message) == message
    assert "5 image(s) of 256x256 (HxW)" in message and "2.00x as tall" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_squeezed([(128, 64), (130, 64)], (64, 32), "x") is None  # within 5 %
    with pytest.raises(UsageError, match=r"--data d: 1 of 2 images are not the model's 64x32 .* pass --resize"):
        check_sizes([(64, 32), (128, 128)], (64, 32), "--data d", resize=False, resize_option="--resize")


def test_evaluate_names_resize_and_warns_of_squeezes(tmp_path, capsys):
    """python -m msgen.evaluate on a folder of 64x64 images with a 64x32 model: the error names
    --resize; with --resize the squeeze is announced with its ratio."""
    from msgen import evaluate
    from msgen.models import Generator, preset
    from msgen.checkpoint import CheckpointManager
    from msgen.training.config import TrainConfig, config_to_dict

    config = TrainConfig(model=preset("synthetic-small", image_size=(64, 32), levels=4))
    checkpoint = CheckpointManager(tmp_path / "ckpt", keep_last=1).save(
        0, {"config": config_to_dict(config), "generator": Generator(config.model.generator).state_dict()})
    data = generate_synthetic(tmp_path / "data", identities=4, images_per_identity=3, size=(64, 64), seed=2)
    argv = ["--checkpoint", str(checkpoint), "--data", str(data), "--sources", "1", "--out", str(tmp_path / "eval"), "--no-progress"]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert "not the model's 64x32" in err and "pass --resize" in err
    with pytest.warns(UserWarning, match=r"2.00x as tall relative to their width"):
        evaluate.main([*argv, "--resize", "--max-tuples", "1"])


def test_training_on_another_aspect_ratio_warns_once_with_the_ratio(tmp_path):
    from msgen.training.config import DataConfig
    from msgen.training.data import open_folder

    data = generate_synthetic(tmp_path / "data", identities=3, images_per_identity=3, size=(64, 64), seed=4)
    with pytest.warns(UserWarning) as caught:
        folder = open_folder(DataConfig(root=str(data), dataset="folder"), (64, 32))
    squeezes = [w for w in caught if "aspect ratio" in str(w.message)]
    assert len(squeezes) == 1 and "9 image(s) of 64x64 (HxW) are resized to 64x32" in str(squeezes[0].message)
    assert "2.00x as tall" in str(squeezes[0].message) and len(folder) == 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_folder(DataConfig(root=str(data), dataset="folder"), (128, 128))  # same aspect ratio: silent


def test_a_run_opens_each_image_header_once(tmp_path, monkeypatch):
    """The aspect check and verify_images share one read of the headers (a large folder's start-up
    costs one pass over its files, not two)."""
    from PIL import Image

    from msgen.training.config import DataConfig
    from msgen.training.data import open_folder

    data = generate_synthetic(tmp_path / "data", identities=3, images_per_identity=3, size=(64, 32), seed=5)
    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    folder = open_folder(DataConfig(root=str(data), dataset="folder"), (64, 32))
    folder.verify_images()
    assert len(folder) == 9 and sorted(opened) == sorted(str(folder.root / n) for n in folder.names)
