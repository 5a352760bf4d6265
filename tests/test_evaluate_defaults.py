"""msgen.evaluate's defaults finish and stay out of the repository: 500 tuples unless --max-tuples
says otherwise ('all' for a whole test set), outputs under runs/ unless --out says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from msgen import evaluate


def test_default_scores_500_tuples_and_all_means_the_whole_test_set():
    assert evaluate.parse_args(["--checkpoint", "x.pt"]).max_tuples == 500
    assert evaluate.parse_args(["--checkpoint", "x.pt", "--max-tuples", "all"]).max_tuples == 12000
    assert evaluate.parse_args(["--checkpoint", "x.pt", "--max-tuples", "40"]).max_tuples == 40


@pytest.mark.parametrize("bad", ["0", "some"])
def test_a_bad_tuple_count_is_one_error_line(bad, capsys):
    with pytest.raises(SystemExit) as stopped:
        evaluate.parse_args(["--max-tuples", bad])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith("error: argument --max-tuples: expected a number >= 1 or 'all'")
    assert err.count("\n") == 1


def test_outputs_go_under_runs_never_beside_the_checkpoint():
    assert evaluate.default_out(Path("docs/models/synthetic-full.safetensors"), Path("data")) == \
        Path("runs/eval-synthetic-full")
    assert evaluate.default_out(Path("runs/long/checkpoints/best.pt"), Path("data")) == Path("runs/eval-long-best")
    assert evaluate.default_out(None, Path("/data/market")) == Path("runs/eval-market")
