"""What `python -m msgen.train` tells its user is true and quiet: --help shows the defaults in
effect, a run ends with where best.pt is and how to go on, a finished run says so on --resume auto,
no warning noise, no adversarial columns without an adversarial term, one error style."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from msgen.training.cli import build_parser, main
from msgen.training.monitor import RunMonitor
from tiny_runs import tiny_args, tiny_data  # noqa: F401  (tests/tiny_runs.py, a test tool; tiny_data is a fixture)


def _help_of(option: str) -> str:
    action = next(a for a in build_parser()._actions if option in a.option_strings)
    return " ".join(action.help.split())


def test_help_shows_the_presets_defaults_not_the_dataclass_ones():
    # The synthetic preset (the default) decays the lr over the second half; the dataclass says 0.
    assert "(default: 0.5; --preset market and deepfashion: 0.0)" in _help_of("--lr-decay")
    assert "(default: 0.001; --preset market and deepfashion: 0.0002)" in _help_of("--lr")
    assert "(default: 2)" in _help_of("--num-sources")  # the same in every preset: no list


def test_a_run_ends_with_best_pt_its_score_and_how_to_continue(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(tiny_args(tiny_data, out, "--steps", "2", "--eval-every", "2", "--sample-every", "2")) == 0
    # The banner says which space the loss compares; no FeatureSpaceWarning repeats it.
    assert not [w for w in caught if w.category.__name__ == "FeatureSpaceWarning"]
    text = capsys.readouterr().out
    best = out / "checkpoints" / "best.pt"
    assert best.is_file()
    assert "msgen.train: finished steps 0 -> 2 in " in text
    assert f"best model: {best} (validation mask-SSIM 0." in text and "at step 2" in text
    assert f"python -m msgen.train --resume auto --out {out} --steps 4" in text

    # Asked to continue a finished run, it says it is finished and how to go further, and trains nothing.
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert main(["--resume", "auto", *tiny_args(tiny_data, out, "--steps", "2")]) == 0
    captured = capsys.readouterr()
    assert f"the run in {out} is finished" in captured.out and "--steps 4" in captured.out
    assert "steps 2 -> 2" not in captured.out + captured.err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_progress_bar_has_no_adversarial_columns_without_an_adversarial_term(tmp_path):
    losses = {"loss_d": 0.0, "loss_g_adv": 0.0, "loss_nn": 1.5, "loss_g": 150.0}
    for adversarial, expected in ((False, {"nn", "g"}), (True, {"d", "g_adv", "nn", "g"})):
        monitor = RunMonitor(tmp_path / str(adversarial), 10, 0, enabled=True, adversarial=adversarial)
        monitor.start()
        monitor.step(8, losses)
        shown = {item.split("=")[0].strip() for item in monitor.bar.postfix.split(",")}
        monitor.close()
        assert shown - {"img/s"} == expected


def test_a_bad_option_is_one_error_line_with_status_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--no-such-option"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unrecognized arguments: --no-such-option") and err.count("\n") == 1


def test_sample_grids_label_their_rows_and_columns():
    import torch

    from msgen.training.visuals import GAP, LABEL_HEIGHT, row_labels, sample_grid

    B, M, H, W = 3, 2, 64, 32
    g = torch.Generator().manual_seed(0)
    batch = {"sources": torch.rand(B, M, 3, H, W, generator=g) * 2 - 1,
             "target": torch.rand(B, 3, H, W, generator=g) * 2 - 1,
             "target_heatmap": torch.zeros(B, 18, H, W), "target_kp": torch.full((B, 18, 2), -1.0)}
    grid = sample_grid(batch, torch.zeros(B, 3, H, W), torch.full((B, M, H, W), 0.5))
    rows = row_labels(M)
    assert rows == ["source 1", "source 2", "pose", "result", "real", "saliency 1", "saliency 2"]
    left = grid.shape[1] - (B * (W + GAP) - GAP)
    assert grid.shape[0] == LABEL_HEIGHT + len(rows) * (H + GAP) - GAP and left > 0
    dark = grid.min(-1) < 128
    for r in range(len(rows)):  # text in the left band beside every row
        assert dark[LABEL_HEIGHT + r * (H + GAP) : LABEL_HEIGHT + r * (H + GAP) + H, :left].any()
    for b in range(B):  # a number above every column
        assert dark[:LABEL_HEIGHT, left + b * (W + GAP) : left + b * (W + GAP) + W].any()
