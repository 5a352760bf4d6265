"""PoseImageFolder: the validity filter and its counts, identities, images, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from msgen.data.folder import PoseImageFolder, deepfashion_identity, market_identity, rescale_keypoints
from msgen.data.synthetic import generate_synthetic
from msgen.pose import read_annotations, write_annotations


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), identities=4, images_per_identity=3, seed=21)


@pytest.fixture
def dataset_copy(synthetic_set, tmp_path):
    """A writable copy of the small synthetic set."""
    shutil.copytree(synthetic_set, tmp_path / "set")
    return tmp_path / "set"


def test_loads_images_and_keypoints(synthetic_set):
    folder = PoseImageFolder(synthetic_set / "images", synthetic_set / "annotation.csv")
    annotations = read_annotations(synthetic_set / "annotation.csv")
    assert folder.names == sorted(annotations) and len(folder) == 12
    assert folder.image_size == (128, 64)
    assert sorted(folder.identities) == ["0001", "0002", "0003", "0004"]
    assert all(len(names) == 3 for names in folder.identities.values())
    item = folder[5]
    image, kp = item["image"], item["keypoints"]
    assert image.shape == (3, 128, 64) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    pixels = np.array(Image.open(synthetic_set / "images" / item["name"]))
    torch.testing.assert_close(image, torch.from_numpy(pixels).permute(2, 0, 1).double().div(127.5).sub(1).float())
    np.testing.assert_array_equal(kp.numpy(), annotations[item["name"]])
    assert folder.dropped["junk_name"] == folder.dropped["unusable_pose"] == folder.dropped["not_annotated"] == 0


def test_drops_are_counted_by_reason(dataset_copy, caplog):
    annotations = read_annotations(dataset_copy / "annotation.csv")
    names = sorted(annotations)
    rng = np.random.default_rng(0)
    no_hip = annotations[names[0]].copy()
    no_hip[rng.choice([2, 5, 8, 11])] = -1  # one torso point missing
    annotations[names[0]] = no_hip
    for junk in ("-1_c1s1_000001_00.png", "0000_c1s1_000002_00.png"):
        shutil.copy(dataset_copy / "images" / names[1], dataset_copy / "images" / junk)
        annotations[junk] = annotations[names[1]]
    shutil.copy(dataset_copy / "images" / names[2], dataset_copy / "images" / "0009_extra.png")  # no row
    write_annotations(dataset_copy / "annotation.csv", annotations)

    with caplog.at_level("INFO", logger="msgen.data.folder"):
        folder = PoseImageFolder(dataset_copy / "images", dataset_copy / "annotation.csv")
    assert dict(folder.dropped) == {"junk_name": 2, "unusable_pose": 1, "not_annotated": 1}
    assert len(folder) == 11 and names[0] not in folder.names
    report = folder.report()
    assert "kept 11 images" in report and "2 names starting with -1 or 0000" in report
    assert "1 poses without all four torso points" in report and "1 image files without" in report
    assert caplog.text.count("kept 11 images") == 1

    kept_junk = PoseImageFolder(dataset_copy / "images", dataset_copy / "annotation.csv", drop_junk=False)
    assert len(kept_junk) == 13 and kept_junk.dropped["junk_name"] == 0
    assert "-1" in kept_junk.identities and "0000" in kept_junk.identities


def test_identity_function_is_configurable(synthetic_set):
    folder = PoseImageFolder(synthetic_set / "images", synthetic_set / "annotation.csv", identity_fn=lambda n: n[:3])
    assert list(folder.identities) == ["000"] and len(folder.identities["000"]) == 12


def test_identity_conventions():
    assert market_identity("0002_c1s1_000451_03.jpg") == "0002"
    assert market_identity("-1_c1s1_000401_03.jpg") == "-1"
    assert deepfashion_identity("fashionWOMENDressesid0000262902_3back.jpg") == "fashionWOMENDressesid0000262902"
    assert deepfashion_identity("fashionMENDenimid0000008001_1front.jpg") == "fashionMENDenimid0000008001"


def test_missing_image_is_an_error_naming_it(dataset_copy):
    victim = sorted((dataset_copy / "images").iterdir())[4]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        PoseImageFolder(dataset_copy / "images", dataset_copy / "annotation.csv")


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder"):
        PoseImageFolder(tmp_path / "nowhere", tmp_path / "annotation.csv")


def test_unreadable_image_is_an_error_naming_it(dataset_copy):
    folder = PoseImageFolder(dataset_copy / "images", dataset_copy / "annotation.csv")
    victim = folder.names[3]
    (dataset_copy / "images" / victim).write_bytes(b"this is not a PNG")
    with pytest.raises(OSError, match=f"cannot read image .*{victim}"):
        folder.load(victim)
    with pytest.raises(OSError, match=victim):
        folder.verify_images()


def test_malformed_annotation_row_names_file_and_line(dataset_copy):
    csv = dataset_copy / "annotation.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].replace("]:", "];", 1)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"annotation\.csv:4"):
        PoseImageFolder(dataset_copy / "images", csv)


def _shrink(path, size_hw):
    Image.open(path).resize((size_hw[1], size_hw[0]), Image.BILINEAR).save(path)


def test_wrong_size_is_an_error_unless_resizing(dataset_copy):
    images = dataset_copy / "images"
    names = sorted(p.name for p in images.iterdir())
    _shrink(images / names[2], (100, 50))
    folder = PoseImageFolder(images, dataset_copy / "annotation.csv")
    with pytest.raises(ValueError, match=f"{names[2]} is 100x50 .*expected 128x64.*resize=True"):
        folder.load(names[2])
    with pytest.raises(ValueError, match=names[2]):
        folder.verify_images()

    resizing = PoseImageFolder(images, dataset_copy / "annotation.csv", resize=True)
    resizing.verify_images()
    image, kp = resizing.load(names[2])
    assert image.shape == (3, 128, 64)
    stored = read_annotations(dataset_copy / "annotation.csv")[names[2]]
    np.testing.assert_allclose(kp.numpy(), rescale_keypoints(stored, (100, 50), (128, 64)))


def test_a_smaller_image_size_resizes_every_image(synthetic_set):
    folder = PoseImageFolder(synthetic_set / "images", synthetic_set / "annotation.csv", image_size=(64, 32),
                             resize=True)
    item = folder[0]
    assert item["image"].shape == (3, 64, 32)
    stored = folder.keypoints(item["name"])
    seen = (stored >= 0).all(-1)
    np.testing.assert_allclose(item["keypoints"].numpy()[seen], (stored[seen] + 0.5) / 2 - 0.5)
    assert (item["keypoints"].numpy()[~seen] == -1).all()


def test_rescale_keypoints_is_exact_for_pixel_centres():
    rng = np.random.default_rng(1)
    kp = rng.uniform(0, 40, (18, 2)).astype(np.float32)
    kp[rng.choice(18, 4, replace=False)] = -1
    there = rescale_keypoints(kp, (41, 43), (123, 86))
    back = rescale_keypoints(there, (123, 86), (41, 43))
    seen = (kp >= 0).all(-1)
    np.testing.assert_allclose(back[seen], kp[seen], atol=1e-4)
    assert (back[~seen] == -1).all() and (there[~seen] == -1).all()


@pytest.mark.data
def test_real_market_images(shared_data):
    root = shared_data / "market-real"
    folder = PoseImageFolder(root / "images", root / "annotation.csv")
    folder.verify_images()
    assert folder.image_size == (128, 64)
    total = len(read_annotations(root / "annotation.csv"))
    assert total == 386
    assert len(folder) + folder.dropped["junk_name"] + folder.dropped["unusable_pose"] == total
    assert sum(len(v) for v in folder.identities.values()) == len(folder)
    image, kp = folder.load(folder.names[0])
    assert image.shape == (3, 128, 64) and -1 <= image.min() < image.max() <= 1
