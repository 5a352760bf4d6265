"""LPIPS v0.1 alex from the converted networks: the numbers lpips' own test_network.py prints with
the official weights, on lpips' example images (tests/data/lpips, BSD-2-Clause, see its LICENSE)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import weights_or_skip
from msgen.evaluation import MetricUnavailable, load_lpips
from msgen.evaluation.lpips import ALEXNET_ENV, LPIPS_HEADS_ENV

EXAMPLES = Path(__file__).parent / "data" / "lpips"


def example(name: str) -> torch.Tensor:
    """An example image as lpips' im2tensor reads it: (1, 3, H, W) in [-1, 1]."""
    pixels = np.asarray(Image.open(EXAMPLES / f"{name}.png").convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_lpips_alex_gives_the_published_example_distances(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALEXNET_ENV, raising=False)
    monkeypatch.delenv(LPIPS_HEADS_ENV, raising=False)
    try:
        lpips = load_lpips()
    except MetricUnavailable as error:
        weights_or_skip(f"LPIPS networks not converted: {error}")
    reference = example("ex_ref")
    assert round(float(lpips(reference, example("ex_p0"))), 3) == 0.722
    assert round(float(lpips(reference, example("ex_p1"))), 3) == 0.138
    # A distance is 0 from an image to itself and symmetric.
    assert float(lpips(reference, reference)) == 0.0
    torch.testing.assert_close(lpips(example("ex_p1"), reference), lpips(reference, example("ex_p1")))
