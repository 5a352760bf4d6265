"""python -m msgen.generate, the Python API (msgen.api) and the figure (msgen.figures).

The model is a tiny random generator saved with msgen.checkpoint's CheckpointManager (the
training code path's file format); the images are the built-in synthetic people at 64x32.
"""

from __future__ import annotations

import json
import warnings
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from msgen import generate
from msgen.api import MultiSourceGenerator, fit_to_size
from msgen.checkpoint import FORMAT_VERSION, CheckpointError, CheckpointManager, atomic_save
from msgen.data.synthetic import generate_synthetic
from msgen.figures import BACKGROUND, GAP, colorize, figure_layout, sample_grid, tuple_figure
from msgen.models import Generator, preset
from msgen.pose import read_annotations, write_annotations
from msgen.pose.draw import draw_pose
from msgen.training.config import TrainConfig, config_to_dict

SIZE = (64, 32)


def tiny_config() -> TrainConfig:
    return TrainConfig(model=preset("synthetic-small", image_size=SIZE, levels=4))


def save_tiny_checkpoint(directory: Path, config: TrainConfig | None = None) -> Path:
    config = config or tiny_config()
    generator = Generator(config.model.generator)
    state = {"config": config_to_dict(config), "generator": generator.state_dict()}
    return CheckpointManager(directory, keep_last=1).save(0, state)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("generate")
    data = generate_synthetic(root / "data", identities=2, images_per_identity=4, size=SIZE, seed=3)
    annotations = read_annotations(data / "annotation.csv")
    names = sorted(annotations)
    return {
        "root": root,
        "checkpoint": save_tiny_checkpoint(root / "ckpt"),
        "images": data / "images",
        "csv": data / "annotation.csv",
        "annotations": annotations,
        "sources": names[:3],
        "target": names[3],
    }


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def panel(figure: np.ndarray, layout: dict, name: str, size: tuple[int, int]) -> np.ndarray:
    top, left = layout[name]
    return figure[top : top + size[0], left : left + size[1]]


# --- the figure ---------------------------------------------------------------------------------


def test_colorize_is_piecewise_linear_on_the_anchors() -> None:
    anchors = colorize(np.array([[0.0, 0.25, 0.5, 0.75, 1.0]]))[0].astype(float)
    mid = colorize(np.array([[0.125, 2.0, -1.0]]))[0]
    np.testing.assert_array_equal(mid[0], np.round((anchors[0] + anchors[1]) / 2))
    np.testing.assert_array_equal(mid[1], anchors[4])  # clipped to [0, 1]
    np.testing.assert_array_equal(mid[2], anchors[0])
    assert anchors.sum(1).tolist() == sorted(anchors.sum(1).tolist())  # brighter with more saliency


@pytest.mark.parametrize("num_sources,scale,with_target", [(1, 1, False), (3, 2, True)])
def test_figure_panels_hold_their_pixels(num_sources: int, scale: int, with_target: bool) -> None:
    rng = np.random.default_rng()
    H, W = 21, 13
    sources = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(num_sources)]
    result = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    target = rng.integers(0, 256, (H, W, 3), dtype=np.uint8) if with_target else None
    saliency = rng.dirichlet(np.ones(num_sources), size=(H, W)).transpose(2, 0, 1)
    kp = np.stack([rng.uniform(0, H - 1, 18), rng.uniform(0, W - 1, 18)], -1).astype(np.float32)
    kp[[0, 14]] = -1
    figure = tuple_figure(sources, kp, result, saliency, target, scale=scale)

    size = (H * scale, W * scale)
    layout = figure_layout(num_sources, size, with_target)
    assert figure.shape == (*layout["figure"], 3)

    def big(x: np.ndarray) -> np.ndarray:
        return x.repeat(scale, 0).repeat(scale, 1)

    for i in range(num_sources):
        np.testing.assert_array_equal(panel(figure, layout, f"source {i + 1}", size), big(sources[i]))
        np.testing.assert_array_equal(panel(figure, layout, f"saliency {i + 1}", size), big(colorize(saliency[i])))
    np.testing.assert_array_equal(panel(figure, layout, "result", size), big(result))
    if with_target:
        np.testing.assert_array_equal(panel(figure, layout, "target", size), big(target))
    expected_pose = draw_pose(np.zeros((H, W, 3), np.uint8), kp, scale=scale)
    np.testing.assert_array_equal(panel(figure, layout, "pose", size), expected_pose)
    assert expected_pose.any()  # the skeleton is drawn
    # The gaps around and between panels are background.
    assert (figure[:, : GAP] == BACKGROUND).all() and (figure[-GAP:] == BACKGROUND).all()
    top, left = layout["source 1"]
    assert (figure[top : top + size[0], left + size[1] : left + size[1] + GAP] == BACKGROUND).all()


def test_figure_accepts_tensors_and_rejects_mismatches() -> None:
    sources = torch.rand(2, 3, 16, 12) * 2 - 1
    result = torch.rand(3, 16, 12) * 2 - 1
    kp = np.full((18, 2), -1.0, np.float32)
    figure = tuple_figure(sources, kp, result, np.full((2, 16, 12), 0.5))
    layout = figure_layout(2, (16, 12))
    expected = ((sources[1] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(panel(figure, layout, "source 2", (16, 12)), expected)
    assert not panel(figure, layout, "pose", (16, 12)).any()  # no keypoint: a black panel
    with pytest.raises(ValueError, match="saliency must be"):
        tuple_figure(sources, kp, result, np.zeros((3, 16, 12)))
    with pytest.raises(ValueError, match="resize it first"):
        tuple_figure([np.zeros((8, 12, 3), np.uint8)], kp, result, np.zeros((1, 16, 12)))


def test_sample_grid_stacks_and_pads() -> None:
    a, b = np.zeros((5, 7, 3), np.uint8), np.full((3, 4, 3), 9, np.uint8)
    grid = sample_grid([a, b])
    assert grid.shape == (8, 7, 3)
    assert (grid[5:, :4] == 9).all() and (grid[5:, 4:] == BACKGROUND[0]).all()


# --- the Python API -----------------------------------------------------------------------------


def test_api_generates_any_m_with_saliency(setup: dict) -> None:
    model = MultiSourceGenerator.from_checkpoint(setup["checkpoint"])
    assert model.image_size == SIZE
    paths = [setup["images"] / n for n in setup["sources"]]
    kps = [setup["annotations"][n] for n in setup["sources"]]
    target = setup["annotations"][setup["target"]]
    for m in (1, 3):
        result = model.generate(paths[:m], kps[:m], target)
        assert result.image.shape == (*SIZE, 3) and result.image.dtype == np.uint8
        assert result.saliency.shape == (m, *SIZE)
        np.testing.assert_allclose(result.saliency.sum(0), 1.0, atol=1e-5)
    # Sources given as arrays and PIL images give the same result as paths; the order of the
    # sources does not matter (their saliency maps follow them).
    arrays = [load(p) for p in paths]
    again = model.generate([Image.fromarray(arrays[2]), arrays[0], arrays[1]], [kps[2], kps[0], kps[1]], target)
    np.testing.assert_allclose(again.image.astype(int), result.image.astype(int), atol=1)
    np.testing.assert_allclose(again.saliency, result.saliency[[2, 0, 1]], atol=1e-4)


def test_api_resizes_other_sizes_and_rescales_keypoints(setup: dict) -> None:
    rng = np.random.default_rng()
    image = rng.integers(0, 256, (2 * SIZE[0], 2 * SIZE[1], 3), dtype=np.uint8)
    kp = np.array([[10.0, 20.0], [-1.0, -1.0]] + [[5.0, 5.0]] * 16, np.float32)
    resized, mapped = fit_to_size(image, kp, SIZE, "x")
    assert resized.shape == (*SIZE, 3)
    np.testing.assert_allclose(mapped[0], [(10 + 0.5) / 2 - 0.5, (20 + 0.5) / 2 - 0.5])
    np.testing.assert_array_equal(mapped[1], [-1, -1])
    with pytest.warns(UserWarning, match="aspect ratio"):
        fit_to_size(image[:, : SIZE[1]], kp, SIZE, "x")

    model = MultiSourceGenerator.from_checkpoint(setup["checkpoint"])
    name = setup["sources"][0]
    big = np.asarray(Image.open(setup["images"] / name).resize((2 * SIZE[1], 2 * SIZE[0]), Image.NEAREST))
    big_kp = np.where(setup["annotations"][name] >= 0, setup["annotations"][name] * 2 + 0.5, -1)
    result = model.generate([big], [big_kp], setup["annotations"][setup["target"]])
    assert result.image.shape == (*SIZE, 3) and result.sources[0].shape == (*SIZE, 3)


def test_api_rejects_bad_input(setup: dict) -> None:
    model = MultiSourceGenerator.from_checkpoint(setup["checkpoint"])
    image = setup["images"] / setup["sources"][0]
    kp = setup["annotations"][setup["sources"][0]]
    with pytest.raises(FileNotFoundError, match="image not found"):
        model.generate([setup["root"] / "missing.png"], [kp], kp)
    with pytest.raises(ValueError, match=r"shape \(18, 2\)"):
        model.generate([image], [kp[:17]], kp)
    with pytest.raises(ValueError, match="2 poses for 1 source"):
        model.generate([image], [kp, kp], kp)
    no_torso = kp.copy()
    no_torso[8] = -1
    with pytest.raises(ValueError, match="lacks the torso point.*Rhip"):
        model.generate([image], [kp], no_torso)
    with pytest.raises(ValueError, match="outside the 64x32 image"):
        model.generate([image], [kp], np.where(kp >= 0, kp * 3, -1))
    with pytest.raises(ValueError, match="sequence of images"):
        model.generate(image, [kp], kp)
    big = np.asarray(Image.open(image).resize((2 * SIZE[1], 2 * SIZE[0])))
    with pytest.raises(ValueError, match=r"source_keypoints\[0\]: every keypoint lies in the top-left quarter of the 128x64"):
        model.generate([big], [kp], kp)  # keypoints of the 64x32 image on a 128x64 one


# --- python -m msgen.generate -------------------------------------------------------------------


def run_cli(setup: dict, *extra: str, sources: list[str] | None = None) -> Path:
    out = setup["root"] / f"out-{len(list(setup['root'].iterdir()))}"
    sources = sources if sources is not None else [str(setup["images"] / n) for n in setup["sources"]]
    argv = ["--checkpoint", str(setup["checkpoint"]), "--sources", *sources, "--out", str(out), *extra]
    assert generate.main(argv) == 0
    return out


def test_cli_writes_the_image_and_the_figure(setup: dict) -> None:
    out = run_cli(setup, "--keypoints", str(setup["csv"]), "--target-pose", setup["target"], "--figure-scale", "1")
    generated, figure = load(out / "generated.png"), load(out / "figure.png")
    # The same generation through the API.
    model = MultiSourceGenerator.from_checkpoint(setup["checkpoint"])
    expected = model.generate(
        [setup["images"] / n for n in setup["sources"]],
        [setup["annotations"][n] for n in setup["sources"]],
        setup["annotations"][setup["target"]],
    )
    np.testing.assert_array_equal(generated, expected.image)
    layout = figure_layout(3, SIZE)
    assert figure.shape == (*layout["figure"], 3)
    np.testing.assert_array_equal(panel(figure, layout, "result", SIZE), generated)
    for i, name in enumerate(setup["sources"]):
        np.testing.assert_array_equal(panel(figure, layout, f"source {i + 1}", SIZE), load(setup["images"] / name))
        np.testing.assert_array_equal(panel(figure, layout, f"saliency {i + 1}", SIZE), colorize(expected.saliency[i]))


def test_cli_target_pose_forms_agree(setup: dict) -> None:
    kp = setup["annotations"][setup["target"]]
    as_json = setup["root"] / "target.json"
    as_json.write_text(json.dumps({"keypoints": kp.tolist()}))
    as_xy_json = setup["root"] / "target_xy.json"
    as_xy_json.write_text(json.dumps({"keypoints_y": kp[:, 0].tolist(), "keypoints_x": kp[:, 1].tolist(), "size": list(SIZE)}))
    as_csv = setup["root"] / "target.csv"
    write_annotations(as_csv, {setup["target"]: kp})
    csv = ["--keypoints", str(setup["csv"])]
    reference = load(run_cli(setup, *csv, "--target-pose", setup["target"]) / "generated.png")
    for extra in (
        ["--target-pose", str(as_json)],
        ["--target-pose", str(as_xy_json)],
        ["--target-pose", str(as_csv)],
        ["--target-pose", str(setup["images"] / setup["target"])],  # an image with a row in the CSV
    ):
        np.testing.assert_array_equal(load(run_cli(setup, *csv, *extra) / "generated.png"), reference)


def cli_error(setup: dict, capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert generate.main(["--checkpoint", str(setup["checkpoint"]), "--out", str(setup["root"] / "err"), *argv]) == 2
    return capsys.readouterr().err


def test_cli_errors_are_clear(setup: dict, capsys: pytest.CaptureFixture) -> None:
    source = str(setup["images"] / setup["sources"][0])
    csv = ["--keypoints", str(setup["csv"])]
    assert "image not found" in cli_error(setup, capsys, ["--sources", "nope.png", *csv, "--target-pose", setup["target"]])
    assert "no row named 'ghost'" in cli_error(setup, capsys, ["--sources", source, *csv, "--target-pose", "ghost"])
    short = setup["root"] / "short.json"
    short.write_text(json.dumps({"keypoints": [[1, 2]] * 17}))
    assert "expected 18 [y, x] pairs" in cli_error(setup, capsys, ["--sources", source, *csv, "--target-pose", str(short)])
    two_rows = setup["csv"]
    assert "holds 8 rows" in cli_error(setup, capsys, ["--sources", source, *csv, "--target-pose", str(two_rows)])


def test_cli_without_keypoints_needs_the_pose_extra(setup: dict, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    import msgen.pose.detector as detector

    source = str(setup["images"] / setup["sources"][0])
    # Importing mediapipe or any of its modules raises ImportError, even where it is installed.
    for name in [n for n in sys.modules if n == "mediapipe" or n.startswith("mediapipe.")] or ["mediapipe"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    monkeypatch.setattr(detector, "_DEFAULT", None)
    err = cli_error(setup, capsys, ["--sources", source, "--target-pose", setup["target"]])
    assert f"--sources {source}: no keypoints given" in err and "pip install 'msgen[pose]'" in err


def test_cli_missing_keypoints_file_names_the_option(setup: dict, capsys: pytest.CaptureFixture) -> None:
    source = str(setup["images"] / setup["sources"][0])
    missing = setup["root"] / "absent.csv"
    err = cli_error(setup, capsys, ["--sources", source, "--keypoints", str(missing), "--target-pose", setup["target"]])
    assert f"--keypoints: file not found: {missing}" in err and "Errno" not in err
    bad = setup["root"] / "bad.csv"
    bad.write_text("not a header\n")
    assert "--keypoints: " in cli_error(setup, capsys, ["--sources", source, "--keypoints", str(bad), "--target-pose", "x"])


def test_cli_rejects_keypoints_of_another_image_size(setup: dict, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """A 2x larger image named like a row of the 64x32 CSV: the row's keypoints are not its own."""
    name = setup["sources"][0]
    big = tmp_path / name
    Image.open(setup["images"] / name).resize((SIZE[1] * 2, SIZE[0] * 2)).save(big)
    # The CSV's own image of that name is beside it: the sizes disagree.
    err = cli_error(setup, capsys, ["--sources", str(big), "--keypoints", str(setup["csv"]), "--target-pose", setup["target"]])
    assert f"--sources {big} is 128x64 (HxW)" in err and "belongs to the 64x32 image" in err
    # The same CSV alone (no images beside it): every keypoint sits in the top-left quarter.
    alone = tmp_path / "csv" / "annotation.csv"
    alone.parent.mkdir()
    alone.write_text(setup["csv"].read_text())
    err = cli_error(setup, capsys, ["--sources", str(big), "--keypoints", str(alone), "--target-pose", setup["target"]])
    assert f"--sources {big}" in err and "top-left quarter of the 128x64 image" in err


def test_cli_rejects_checkpoints_of_another_version_or_size(setup: dict, capsys: pytest.CaptureFixture) -> None:
    source = str(setup["images"] / setup["sources"][0])
    args = ["--sources", source, "--keypoints", str(setup["csv"]), "--target-pose", setup["target"]]
    state = torch.load(setup["checkpoint"], weights_only=True)
    old = setup["root"] / "old.pt"
    atomic_save({**state, "format_version": FORMAT_VERSION + 1}, old)
    err = cli_error(setup, capsys, [*args, "--checkpoint", str(old)])
    assert "format_version" in err
    # A checkpoint whose weights are of another width than its configuration says.
    wide = Generator(preset("synthetic-small", image_size=SIZE, levels=4, width=0.25).generator)
    other = setup["root"] / "other.pt"
    atomic_save({**state, "generator": wide.state_dict()}, other)
    assert "another size" in cli_error(setup, capsys, [*args, "--checkpoint", str(other)])
    with pytest.raises(CheckpointError):
        MultiSourceGenerator.from_checkpoint(other)
    assert "file not found" in cli_error(setup, capsys, [*args, "--checkpoint", str(setup["root"] / "none.pt")])


# --- photos alone: keypoints detected (a stub detector here; MediaPipe on real photos below) -----


class LookupDetector:
    """A Detector that knows the people of given images (keyed by their pixels)."""

    def __init__(self, people: dict[bytes, list[np.ndarray]]):
        self.people = people

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        return list(self.people.get(np.ascontiguousarray(image).tobytes(), []))


def as_photo(image: np.ndarray, kp: np.ndarray, path: Path, scale: int = 3, offset=(40, 70)) -> tuple[np.ndarray, np.ndarray]:
    """The person of a dataset image as a larger photo: enlarged, placed off-centre on a grey canvas."""
    h, w = image.shape[:2]
    photo = np.full((h * scale + 2 * offset[0], w * scale + 3 * offset[1], 3), 150, np.uint8)
    photo[offset[0] : offset[0] + h * scale, offset[1] : offset[1] + w * scale] = image.repeat(scale, 0).repeat(scale, 1)
    photo_kp = np.where(kp >= 0, (kp + 0.5) * scale - 0.5 + np.array(offset), -1).astype(np.float32)
    Image.fromarray(photo).save(path)
    return photo, photo_kp


@pytest.fixture
def photos(setup: dict, tmp_path: Path) -> dict:
    names = [*setup["sources"], setup["target"]]
    paths, people = [], {}
    for name in names:
        photo, kp = as_photo(load(setup["images"] / name), setup["annotations"][name], tmp_path / f"photo_{name}")
        paths.append(tmp_path / f"photo_{name}")
        people[photo.tobytes()] = [kp]
    return {"sources": paths[:-1], "target": paths[-1], "detector": LookupDetector(people), "dir": tmp_path}


def test_api_generates_from_photos_alone(setup: dict, photos: dict) -> None:
    from msgen.pose.framing import frame_person

    model = MultiSourceGenerator.from_checkpoint(setup["checkpoint"])
    detector = photos["detector"]
    target = model.pose_of(photos["target"], detector=detector)
    result = model.generate(photos["sources"], target_keypoints=target, detector=detector)
    assert result.image.shape == (*SIZE, 3) and result.saliency.shape == (3, *SIZE)
    for path, framed in zip(photos["sources"], result.sources):
        photo = load(path)
        expected, _ = frame_person(photo, detector.detect(photo)[0], SIZE)
        np.testing.assert_array_equal(framed, expected)
    # A source with keypoints and a photo alone mix; None stands for "detect it".
    name = setup["sources"][0]
    mixed = model.generate([setup["images"] / name, photos["sources"][1]], [setup["annotations"][name], None],
                           target, detector=detector)  # fmt: skip
    np.testing.assert_array_equal(mixed.sources[0], load(setup["images"] / name))
    np.testing.assert_array_equal(mixed.sources[1], result.sources[1])
    with pytest.raises(ValueError, match="target_keypoints is required"):
        model.generate(photos["sources"], detector=detector)


def test_cli_generates_from_photos_alone(setup: dict, photos: dict, monkeypatch) -> None:
    import msgen.pose.detector as detector_module

    monkeypatch.setattr(detector_module, "_DEFAULT", photos["detector"])
    out = run_cli(setup, "--target-pose", str(photos["target"]), "--figure-scale", "1",
                  sources=[str(p) for p in photos["sources"]])  # fmt: skip
    model = MultiSourceGenerator.from_checkpoint(setup["checkpoint"])
    detector = photos["detector"]
    expected = model.generate(photos["sources"], target_keypoints=model.pose_of(photos["target"], detector=detector),
                              detector=detector)  # fmt: skip
    np.testing.assert_array_equal(load(out / "generated.png"), expected.image)
    figure, layout = load(out / "figure.png"), figure_layout(3, SIZE)
    for i, framed in enumerate(expected.sources):
        np.testing.assert_array_equal(panel(figure, layout, f"source {i + 1}", SIZE), framed)


def test_cli_photo_errors_name_the_file(setup: dict, photos: dict, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    import msgen.pose.detector as detector_module

    blank = photos["dir"] / "blank.png"
    Image.new("RGB", (200, 300), (90, 90, 90)).save(blank)
    source, target = photos["sources"][0], photos["target"]
    people = photos["detector"].people
    kp = people[load(source).tobytes()][0]
    monkeypatch.setattr(detector_module, "_DEFAULT", photos["detector"])
    err = cli_error(setup, capsys, ["--sources", str(blank), "--target-pose", str(target)])
    assert f"--sources {blank}: no person found" in err
    err = cli_error(setup, capsys, ["--sources", str(source), "--target-pose", str(blank)])
    assert f"--target-pose {blank}: no person found" in err
    people[load(source).tobytes()] = [kp, kp]
    assert f"--sources {source}: 2 people found" in cli_error(setup, capsys, ["--sources", str(source), "--target-pose", str(target)])
    no_hip = kp.copy()
    no_hip[11] = -1
    people[load(source).tobytes()] = [no_hip]
    err = cli_error(setup, capsys, ["--sources", str(source), "--target-pose", str(target)])
    assert f"--sources {source}: the person found lacks the torso point(s) Lhip" in err


def test_figure_labels_fit_their_panels() -> None:
    """Labels were cut at the panel's width ("salienc", "target p"); now a shorter form is used."""
    from msgen.figures import LABEL_HEIGHT, panel_label

    for size, scale, expected in (((64, 32), 1, ("src 1", "sal. 1", "pose")), ((64, 32), 2, ("source 1", "saliency 1", "target pose"))):
        rng = np.random.default_rng(0)
        figure = tuple_figure([rng.integers(0, 255, (*size, 3), dtype=np.uint8)], np.full((18, 2), -1.0),
                              rng.integers(0, 255, (*size, 3), dtype=np.uint8), np.ones((1, *size)), scale=scale)  # fmt: skip
        layout = figure_layout(1, (size[0] * scale, size[1] * scale))
        width = size[1] * scale
        assert tuple(panel_label(n, width) for n in ("source 1", "saliency 1", "pose")) == expected
        for name in ("source 1", "saliency 1", "pose", "result"):
            top, left = layout[name]
            band = figure[top - LABEL_HEIGHT : top, left : left + width]
            inked = np.flatnonzero((band < 128).all(-1).any(0))
            assert inked.size and inked.max() < width - 1, name  # text ends inside the band


@pytest.mark.data
def test_cli_generates_from_real_photos_alone(setup: dict, shared_data: Path, mediapipe_detector, monkeypatch) -> None:
    """Real Market crops as photos, no keypoint file: MediaPipe finds each person and each is framed."""
    import msgen.pose.detector as detector_module
    from msgen.errors import UsageError
    from msgen.pose.detector import detect_person
    from msgen.pose.framing import SHOULDER_Y, REFERENCE_SIZE

    folder = shared_data / "market-real" / "images"
    usable = []
    for path in sorted(folder.glob("*.png"))[:40]:
        try:
            detect_person(path, str(path), mediapipe_detector)
        except UsageError:
            continue
        usable.append(path)
        if len(usable) == 3:
            break
    assert len(usable) == 3
    monkeypatch.setattr(detector_module, "_DEFAULT", mediapipe_detector)
    out = run_cli(setup, "--target-pose", str(usable[2]), sources=[str(p) for p in usable[:2]])
    assert load(out / "generated.png").shape == (*SIZE, 3)
    assert load(out / "figure.png").shape == (*figure_layout(2, (SIZE[0] * 2, SIZE[1] * 2))["figure"], 3)
    model = MultiSourceGenerator.from_checkpoint(setup["checkpoint"])
    target = model.pose_of(usable[2], detector=mediapipe_detector)
    shoulder_y = (target[2, 0] + target[5, 0]) / 2
    assert abs(shoulder_y - ((SHOULDER_Y + 0.5) / REFERENCE_SIZE[0] * SIZE[0] - 0.5)) < 0.51


def test_cli_reads_phone_photos_upright(setup: dict, photos: dict, monkeypatch) -> None:
    """A photo stored sideways with an EXIF orientation tag (as phones save portraits) is used upright."""
    import msgen.pose.detector as detector_module

    monkeypatch.setattr(detector_module, "_DEFAULT", photos["detector"])
    argv = ["--target-pose", str(photos["target"]), "--figure-scale", "1"]
    upright = load(run_cli(setup, *argv, sources=[str(p) for p in photos["sources"]]) / "generated.png")
    sideways = photos["dir"] / "sideways.png"
    image = Image.open(photos["sources"][0]).transpose(Image.Transpose.ROTATE_90)  # stored turned left
    exif = image.getexif()
    exif[0x0112] = 6  # "turn right to view"
    image.save(sideways, exif=exif)
    again = run_cli(setup, *argv, sources=[str(sideways), *(str(p) for p in photos["sources"][1:])])
    np.testing.assert_array_equal(load(again / "generated.png"), upright)


# --- framing: --keypoints photos, target poses of other sizes, poses without legs -------------------


def _shape(kp: np.ndarray) -> float:
    """Shoulder width over torso length: what a squeeze changes and framing keeps."""
    shoulders, hips = kp[[2, 5]], kp[[8, 11]]
    return float(np.linalg.norm(shoulders[0] - shoulders[1]) / (hips[:, 0].mean() - shoulders[:, 0].mean()))


def test_keypoint_photos_and_target_poses_of_other_sizes_are_framed_not_squeezed(setup: dict, tmp_path: Path) -> None:
    from msgen.pose.framing import frame_keypoints, frame_person

    model = MultiSourceGenerator.from_checkpoint(setup["checkpoint"])
    name = setup["sources"][0]
    # The person on a wide photo (another aspect ratio than the model's 2:1) with its keypoints.
    photo, photo_kp = as_photo(load(setup["images"] / name), setup["annotations"][name], tmp_path / "wide.png", scale=2)
    assert abs((photo.shape[0] / photo.shape[1]) / (SIZE[0] / SIZE[1]) - 1) > 0.05
    target = setup["annotations"][setup["target"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no squeeze, no warning
        result = model.generate([photo], [photo_kp], target)
    expected, expected_kp = frame_person(photo, photo_kp, SIZE, model.framing)
    np.testing.assert_array_equal(result.sources[0], expected)
    assert abs(_shape(expected_kp) / _shape(photo_kp) - 1) < 0.02
    # A target pose of a 300x300 image: framed (its shape kept), not rescaled to 64x32.
    square = np.where(target >= 0, target * 4 + 20, -1).astype(np.float32)
    framed_target = model.generate([photo], [photo_kp], square, target_size=(300, 300)).target_keypoints
    np.testing.assert_allclose(framed_target, frame_keypoints(square, SIZE, model.framing), atol=1e-5)
    assert abs(_shape(framed_target) / _shape(target) - 1) < 0.02
    # The command line frames the --keypoints row of a photo of another size the same way.
    write_annotations(tmp_path / "photo.csv", {"wide.png": photo_kp, setup["target"]: target})
    out = run_cli(setup, "--keypoints", str(tmp_path / "photo.csv"), "--target-pose", setup["target"],
                  sources=[str(tmp_path / "wide.png")])  # fmt: skip
    np.testing.assert_array_equal(load(out / "generated.png"), result.image)


def test_a_model_frames_photos_as_its_training_data_were(setup: dict) -> None:
    from types import SimpleNamespace

    from msgen.pose.framing import FULL_BODY, MARKET

    model = MultiSourceGenerator.from_checkpoint(setup["checkpoint"])
    assert model.framing is MARKET  # its configuration records no framing: Market's, as before
    generator = model.generator
    full_body = MultiSourceGenerator(generator, config=SimpleNamespace(data=SimpleNamespace(framing="full-body")))
    assert full_body.framing is FULL_BODY
    assert MultiSourceGenerator(generator, config=model.config, framing="full-body").framing is FULL_BODY


def test_a_target_pose_without_legs_says_so(setup: dict, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    model = MultiSourceGenerator.from_checkpoint(setup["checkpoint"])
    name = setup["sources"][0]
    target = setup["annotations"][setup["target"]].copy()
    legless = target.copy()
    legless[[9, 10, 12, 13]] = -1  # knees and ankles
    with pytest.warns(UserWarning, match="target_keypoints has no knees or ankles: it is placed at the scale of its torso"):
        result = model.generate([setup["images"] / name], [setup["annotations"][name]], legless)
    np.testing.assert_array_equal(result.target_keypoints, legless)  # at the model's size: as given
    # A legless pose of another size is placed by its torso: shoulders and hips where the dataset
    # puts them, not stretched so that the hips reach the bottom.
    big = np.where(legless >= 0, legless * 3, -1).astype(np.float32)
    with pytest.warns(UserWarning, match="no knees or ankles"):
        framed = model.generate([setup["images"] / name], [setup["annotations"][name]], big,
                                target_size=(SIZE[0] * 3, SIZE[1] * 3)).target_keypoints  # fmt: skip
    hips = framed[[8, 11], 0].mean()
    assert abs(hips - model.framing.row("hip", SIZE[0])) < 0.51
    assert abs(_shape(framed) / _shape(legless) - 1) < 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate([setup["images"] / name], [setup["annotations"][name]], target)  # with legs: no warning
    # The command line says it as a warning line.
    as_json = tmp_path / "legless.json"
    as_json.write_text(json.dumps({"keypoints": legless.tolist()}))
    run_cli(setup, "--keypoints", str(setup["csv"]), "--target-pose", str(as_json))
    err = capsys.readouterr().err
    assert f"{generate.PROG}: warning: --target-pose {as_json} has no knees or ankles" in err
