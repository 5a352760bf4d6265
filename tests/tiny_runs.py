"""A tiny synthetic training run for the tests that start `python -m msgen.train`: the data
(6 identities x 4 images at 64x32: 4 training persons, 2 held out) and the options that size the
model and the run to it. A test tool, imported as a sibling module like host_syncs."""

from __future__ import annotations

from pathlib import Path

import pytest

from msgen.data.synthetic import generate_synthetic


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """6 identities x 4 images at 64x32: 4 training persons, 2 held out."""
    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic(root, identities=6, images_per_identity=4, size=(64, 32), seed=1)


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model.generator.image-size", "64,32", "--model.generator.levels", "3",
        "--model.generator.warp-levels", "2",
        "--data.root", str(data), "--data.identities", "6", "--data.images-per-identity", "4",
        "--data.test-fraction", "0.34", "--data.eval-tuples", "2", "--data.sample-tuples", "2",
        "--batch-size", "2", "--data.workers", "0", "--out", str(out), "--device", "cpu", *extra,
    ]
