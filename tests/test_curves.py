"""Tests of docs/experiments/training_curves.py: log series, smoothing, the PNG and the CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import training_curves as curves  # docs/experiments/, on pytest's path


def write_log(folder: Path, losses: list[float], evals: list[float]) -> Path:
    folder.mkdir(parents=True)
    lines = [{"kind": "train", "step": 10 * (i + 1), "loss_nn": v} for i, v in enumerate(losses)]
    lines += [{"kind": "eval", "step": 100 * (i + 1), "mask_ssim": v} for i, v in enumerate(evals)]
    (folder / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def test_series_averages_windows_and_skips_other_kinds(tmp_path: Path) -> None:
    lines = curves.read_log(write_log(tmp_path / "run", [4.0, 2.0, 3.0, 1.0, 9.0], [0.5, 0.6]))
    steps, values = curves.series(lines, "train", "loss_nn", smooth=2)
    np.testing.assert_array_equal(steps, [20, 40])  # the fifth line is an incomplete window
    np.testing.assert_array_equal(values, [3.0, 2.0])
    steps, values = curves.series(lines, "eval", "mask_ssim")
    np.testing.assert_array_equal(steps, [100, 200])
    np.testing.assert_array_equal(values, [0.5, 0.6])


def test_cli_draws_one_panel_per_quantity_with_each_run_in_its_colour(tmp_path: Path) -> None:
    a = write_log(tmp_path / "a", [1.0, 0.9, 0.8, 0.7], [0.50, 0.55])
    b = write_log(tmp_path / "b", [1.2, 1.0, 0.9, 0.85], [0.52, 0.58])
    out = tmp_path / "curves.png"
    assert curves.main(["--run", f"full={a}", "--run", f"avg={b}", "--smooth", "1", "--out", str(out)]) == 0
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (curves.PANEL_SIZE[1], 2 * curves.PANEL_SIZE[0], 3)
    colours = {tuple(p) for p in image.reshape(-1, 3)}
    assert curves.COLOURS[0] in colours and curves.COLOURS[1] in colours


@pytest.mark.parametrize("args, message", [
    (["--run", "nolabel"], "--run must be LABEL=DIR"),
    (["--run", "x=/does/not/exist"], "no log.jsonl"),
    (["--run", "x=RUN", "--panel", "loss_nn"], "--panel must be"),
    (["--run", "x=RUN", "--smooth", "0"], "--smooth must be"),
])
def test_cli_errors_name_the_option(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    run = write_log(tmp_path / "run", [1.0], [0.5])
    args = [a.replace("RUN", str(run)) for a in args]
    assert curves.main([*args, "--out", str(tmp_path / "x.png")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
