"""`python -m msgen.train` on bad input (issue 17, "a bad-input matrix"): each case exits with
status 2 and one line ``error: ...`` that names the argument or file and what was wrong, and
leaves no half-made output folder (no log.jsonl, samples/ or tensorboard/ of a run that never ran).

Dataset folders have the layout of ``--data.root DIR``: DIR/images, DIR/annotation.csv and,
optionally, DIR/split.json (``python -m msgen.data.prepare`` writes it).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from msgen.data.synthetic import generate_synthetic
from msgen.pose import read_annotations, write_annotations
from msgen.training.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::msgen.models.losses.FeatureSpaceWarning")

TINY = ["--model.generator.image-size", "64,32", "--model.generator.levels", "3",
        "--model.generator.warp-levels", "2", "--data.test-fraction", "0.34", "--data.eval-tuples", "2",
        "--data.sample-tuples", "2", "--batch-size", "2", "--data.workers", "0", "--device", "cpu",
        "--steps", "1", "--eval-every", "100", "--sample-every", "100"]


@pytest.fixture(scope="module")
def good_data(tmp_path_factory) -> Path:
    """A dataset folder: 6 persons x 4 images at 64x32 (DIR/images, DIR/annotation.csv)."""
    return generate_synthetic(tmp_path_factory.mktemp("good"), identities=6, images_per_identity=4,
                              size=(64, 32), seed=1)


@pytest.fixture(scope="module")
def good_checkpoint(good_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*TINY, "--data.root", str(good_data), "--out", str(out)]) == 0
    return out / "checkpoints" / "step-00000001.pt"


def _copy(good: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(good, data)
    return data


def _first_image(data: Path) -> str:
    return next(iter(read_annotations(data / "annotation.csv")))


def _rewrite_csv(data: Path, change: Callable[[str, np.ndarray], np.ndarray]) -> None:
    rows = read_annotations(data / "annotation.csv")
    write_annotations(data / "annotation.csv", {name: change(name, kp) for name, kp in rows.items()})


def _replace_line(data: Path, line_no: int, transform: Callable[[str], str]) -> None:
    lines = (data / "annotation.csv").read_text().splitlines()
    lines[line_no - 1] = transform(lines[line_no - 1])
    (data / "annotation.csv").write_text("\n".join(lines) + "\n")


# Each case: (id, prepare(data, tmp_path) -> extra CLI args, substrings the error line must hold).
def missing_image(data, tmp_path):
    name = _first_image(data)
    (data / "images" / name).unlink()
    return [], [name]


def unreadable_image(data, tmp_path):
    name = _first_image(data)
    (data / "images" / name).write_bytes(b"this is not a PNG")
    return [], [name, "cannot read"]


def truncated_images(data, tmp_path):
    # Headers intact (the set-up's check passes), pixel data cut off: found when loading.
    for path in (data / "images").iterdir():
        path.write_bytes(path.read_bytes()[:120])
    return [], ["cannot read image", str(data / "images")]


def wrong_image_size(data, tmp_path):
    # An image stored at half the size its annotation row was made for: its keypoints lie outside it.
    name = _first_image(data)
    from PIL import Image

    with Image.open(data / "images" / name) as image:
        image.resize((16, 32)).save(data / "images" / name)
    return [], [name]


def too_few_keypoints(data, tmp_path):
    _replace_line(data, 2, _drop_last_y)
    return [], ["annotation.csv:2", "keypoints_y has 17 values, expected 18"]


def _drop_last_y(line: str) -> str:
    name, ys, xs = line.split(":")
    values = ys.strip().strip("[]").split(",")[:-1]
    return f"{name}: [{','.join(values)}]:{xs}"


def malformed_row(data, tmp_path):
    _replace_line(data, 3, lambda line: line.replace("[", "(", 1))
    return [], ["annotation.csv:3", "malformed row"]


def not_a_number(data, tmp_path):
    _replace_line(data, 4, lambda line: line.replace(",", ", abc,", 1))
    return [], ["annotation.csv:4", "keypoints_y holds a value that is not a number"]


def no_torso_anywhere(data, tmp_path):
    # A pose without the torso points is not usable; a folder of only such poses has nothing left.
    def drop_hips(name, kp):
        kp = kp.copy()
        kp[[8, 11]] = -1
        return kp

    _rewrite_csv(data, drop_hips)
    return [], [str(data / "images"), "no usable image"]


def all_points_missing(data, tmp_path):
    _rewrite_csv(data, lambda name, kp: np.full_like(kp, -1))
    return [], [str(data / "images"), "no usable image"]


def empty_after_filtering(data, tmp_path):
    # Market's junk rule drops names starting with -1 or 0000: rename every image so.
    rows = read_annotations(data / "annotation.csv")
    renamed = {}
    for name, kp in rows.items():
        (data / "images" / name).rename(data / "images" / f"-1{name}")
        renamed[f"-1{name}"] = kp
    write_annotations(data / "annotation.csv", renamed)
    return [], ["no usable image", "junk"]


def nonexistent_root(data, tmp_path):
    return ["--data.root", str(tmp_path / "nope" / "data")], ["--data.root", str(tmp_path / "nope" / "data")]


def num_sources_zero(data, tmp_path):
    return ["--num-sources", "0"], ["--num-sources", "got 0"]


def num_sources_too_large(data, tmp_path):
    # 4 images per person give tuples of at most 3 sources + 1 target.
    return ["--num-sources", "6"], ["M=6", "sources", "each needs >= 7"]


def truncated_checkpoint(data, tmp_path, checkpoint=None):
    path = tmp_path / "truncated.pt"
    path.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 3])
    return ["--resume", str(path)], ["--resume", str(path), "truncated or corrupt"]


def foreign_checkpoint(data, tmp_path, checkpoint=None):
    path = tmp_path / "foreign.pt"
    torch.save({"format_version": 1, "payload": torch.nn.Linear(2, 2)}, path)
    return ["--resume", str(path)], ["--resume", str(path), "weights_only"]


def empty_checkpoint(data, tmp_path, checkpoint=None):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    return ["--init-from", str(path)], ["--init-from", str(path), "empty"]


def checkpoint_of_another_model(data, tmp_path, checkpoint=None):
    return (["--resume", str(checkpoint), "--model.generator.width", "0.25"],
            [str(checkpoint), "another size than the model", "generator", "--model.* option"])


def missing_checkpoint(data, tmp_path, checkpoint=None):
    return ["--resume", str(tmp_path / "gone.pt")], ["--resume", str(tmp_path / "gone.pt"), "not found"]


def bf16_on_cpu(data, tmp_path):
    return ["--precision", "bf16"], ["--precision bf16", "CUDA"]


def image_size_not_divisible(data, tmp_path):
    return ["--model.generator.image-size", "60,30"], ["image_size", "divisible"]


def bad_test_fraction(data, tmp_path):
    return ["--data.test-fraction", "1.5"], ["test", "fraction", "1.5"]


def unknown_device(data, tmp_path):
    return ["--device", "gpu0"], ["--device", "'gpu0'"]


def not_an_int(data, tmp_path):
    return ["--batch-size", "eight"], ["--batch-size", "eight"]


CASES = [missing_image, unreadable_image, truncated_images, wrong_image_size, too_few_keypoints, malformed_row, not_a_number,
         no_torso_anywhere, all_points_missing, empty_after_filtering, nonexistent_root, num_sources_zero,
         num_sources_too_large, bf16_on_cpu, image_size_not_divisible, bad_test_fraction, unknown_device, not_an_int]
CHECKPOINT_CASES = [truncated_checkpoint, foreign_checkpoint, empty_checkpoint, checkpoint_of_another_model,
                    missing_checkpoint]


def _run(args: list[str], capsys) -> tuple[int, str]:
    try:
        status = main(args)
    except SystemExit as exit:
        status = exit.code
    return status, capsys.readouterr().err


def _check(status: int, err: str, expected: list[str], out: Path) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 2, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert not out.exists(), f"{out} was left behind: {sorted(p.name for p in out.rglob('*'))}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_bad_input_is_one_line_naming_it_and_leaves_no_output(case, good_data, tmp_path, capsys):
    data = _copy(good_data, tmp_path)
    extra, expected = case(data, tmp_path)
    out = tmp_path / "out"
    status, err = _run([*TINY, "--data.root", str(data), "--out", str(out), *extra], capsys)
    _check(status, err, expected, out)
    assert not (tmp_path / "nope").exists()  # a nonexistent --data.root is never created


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=lambda case: case.__name__)
def test_bad_checkpoint_is_one_line_naming_it_and_leaves_no_output(case, good_data, good_checkpoint, tmp_path,
                                                                   capsys):
    extra, expected = case(good_data, tmp_path, checkpoint=good_checkpoint)
    out = tmp_path / "out"
    status, err = _run(["--out", str(out), "--data.root", str(good_data), "--data.workers", "0",
                        "--device", "cpu", *extra], capsys)
    _check(status, err, expected, out)


def test_an_existing_output_folder_is_kept_when_set_up_fails(good_data, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    status, err = _run([*TINY, "--data.root", str(good_data), "--out", str(out), "--precision", "bf16"], capsys)
    assert status == 2 and err.startswith("error: ")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
