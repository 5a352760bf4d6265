"""FID, LPIPS, GFLA's SSIM, the streamed IS and the bootstrap intervals against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import structural_similarity

from msgen.evaluation import (
    ALEXNET_TAPS,
    LPIPS,
    FeatureStats,
    alexnet_features,
    bootstrap_interval,
    frechet_distance,
    inception_score_from_probabilities,
    lpips_heads_file,
    paired_difference,
    ssim_gfla,
)
from msgen.evaluation import StreamingInceptionScore


def _scipy_fid(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_sqrtm_on_known_statistics() -> None:
    rng = np.random.default_rng(0)
    d = 16
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T / d + np.eye(d) * 0.1, b @ b.T / d + np.eye(d) * 0.1
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    x = rng.multivariate_normal(mu1, s1, size=4000)
    y = rng.multivariate_normal(mu2, s2, size=4000)
    stats_x, stats_y = FeatureStats(), FeatureStats()
    for chunk in np.array_split(x, 7):  # streamed in uneven batches
        stats_x.add(chunk)
    stats_y.add(torch.from_numpy(y))
    assert np.allclose(stats_x.covariance(), np.cov(x, rowvar=False)) and np.allclose(stats_x.mean(), x.mean(0))
    ours = stats_x.frechet_distance(stats_y)
    assert ours == pytest.approx(_scipy_fid(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)), rel=1e-6)
    # The population value from the known statistics, which the sample estimate approaches.
    assert ours == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=0.1)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)


def _plain_lpips(features, heads, x0, x1) -> torch.Tensor:
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    out = torch.zeros(x0.shape[0])
    for n in range(x0.shape[0]):
        a, b = (x0[n : n + 1] - shift) / scale, (x1[n : n + 1] - shift) / scale
        taps = 0
        for index, layer in enumerate(features):
            a, b = layer(a), layer(b)
            if index in ALEXNET_TAPS:
                na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                w = heads[taps].view(-1)
                total = 0.0
                for y in range(a.shape[2]):
                    for x in range(a.shape[3]):
                        total += float((w * (na[0, :, y, x] - nb[0, :, y, x]) ** 2).sum())
                out[n] += total / (a.shape[2] * a.shape[3])
                taps += 1
            if taps == len(ALEXNET_TAPS):
                break
    return out


@pytest.mark.parametrize("heads_from", ["lpips package", "random"])
def test_lpips_with_heads_and_random_alexnet_matches_a_plain_loop(heads_from: str) -> None:
    if heads_from == "random":  # runs wherever lpips is not installed
        torch.manual_seed(5)
        heads = [torch.rand(1, c, 1, 1) for c in (64, 192, 384, 256, 256)]
    else:
        try:
            heads_state = torch.load(lpips_heads_file(), map_location="cpu", weights_only=True)
        except Exception as error:  # the lpips package is not installed
            pytest.skip(f"lpips heads unavailable: {error}")
        heads = [heads_state[f"lin{i}.model.1.weight"] for i in range(5)]
    torch.manual_seed(0)
    features = alexnet_features().eval()
    metric = LPIPS(features, heads)
    x0, x1 = torch.rand(2, 3, 64, 48) * 2 - 1, torch.rand(2, 3, 64, 48) * 2 - 1
    with torch.no_grad():
        expected = _plain_lpips(features, heads, x0, x1)
    got = metric(x0, x1)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert torch.allclose(metric(x0, x0), torch.zeros(2), atol=1e-7) and (got > 0).all()


def test_load_lpips_reads_alexnet_and_heads_files(tmp_path, monkeypatch) -> None:
    from msgen.evaluation import MetricUnavailable, load_lpips

    torch.manual_seed(2)
    backbone = alexnet_features()
    torch.save({f"features.{k}": v for k, v in backbone.state_dict().items()} | {"classifier.1.weight": torch.zeros(1)},
               tmp_path / "alexnet.pth")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(heads, tmp_path / "heads.pth")
    metric = load_lpips(tmp_path / "alexnet.pth", tmp_path / "heads.pth")
    x0, x1 = torch.rand(1, 3, 64, 32) * 2 - 1, torch.rand(1, 3, 64, 32) * 2 - 1
    expected = LPIPS(backbone, list(heads.values()))(x0, x1)
    assert torch.allclose(metric(x0, x1), expected)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty"))
    monkeypatch.delenv("MSGEN_ALEXNET_WEIGHTS", raising=False)
    monkeypatch.setenv("MSGEN_CACHE", str(tmp_path / "empty-cache"))  # not the user's fetched networks
    with pytest.raises(MetricUnavailable, match="no AlexNet weights for LPIPS: pass --alexnet-weights"):
        load_lpips(heads=tmp_path / "heads.pth")
    with pytest.raises(MetricUnavailable, match="does not exist"):
        load_lpips(tmp_path / "missing.pth", tmp_path / "heads.pth")


def test_alexnet_features_take_torchvisions_state_dict_keys() -> None:
    try:
        from torchvision.models import alexnet
    except Exception as error:
        pytest.skip(f"torchvision cannot be imported here: {type(error).__name__}")
    reference = alexnet().features.eval()
    ours = alexnet_features().eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(ours(x), reference(x))


def _hand_ssim(a: np.ndarray, b: np.ndarray, win: int, data_range: float) -> float:
    """Uniform-window SSIM with sample covariance, averaged over valid windows and channels."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    n = win * win
    pad = win // 2
    for c in range(a.shape[2]):
        x, y = a[..., c].astype(np.float64), b[..., c].astype(np.float64)
        for i in range(pad, x.shape[0] - pad):
            for j in range(pad, x.shape[1] - pad):
                px, py = x[i - pad : i + pad + 1, j - pad : j + pad + 1], y[i - pad : i + pad + 1, j - pad : j + pad + 1]
                mx, my = px.mean(), py.mean()
                vx, vy = px.var() * n / (n - 1), py.var() * n / (n - 1)
                cov = ((px - mx) * (py - my)).sum() / (n - 1)
                values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_gfla_matches_a_hand_computation() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (53, 54, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    assert ssim_gfla(a, b) == pytest.approx(_hand_ssim(a / 255.0, b / 255.0, 51, 1.0), abs=1e-5)
    with pytest.raises(ValueError, match="51x51"):
        ssim_gfla(a[:50], b[:50])
    # Not the Gaussian SSIM_256: the two conventions give different numbers on the same images.
    assert abs(ssim_gfla(a, b) - structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                                       use_sample_covariance=False, data_range=255)) > 1e-3


@pytest.mark.parametrize("n", [10, 37])
def test_streaming_inception_score_equals_the_direct_one(n: int) -> None:
    rng = np.random.default_rng(n)
    p = rng.dirichlet(np.ones(6) * 0.3, size=n)
    p[0, :3] = 0
    p[0] /= p[0].sum()
    stream = StreamingInceptionScore(n)
    for chunk in np.array_split(p, 4):
        stream.add(chunk)
    assert np.allclose(stream.score(), inception_score_from_probabilities(p, 10))


def test_bootstrap_interval_covers_the_true_mean_about_95_percent() -> None:
    rng = np.random.default_rng(2)
    hits = sum(
        low <= 0.5 <= high
        for low, high in (bootstrap_interval(rng.uniform(size=200), resamples=400, seed=k) for k in range(200))
    )
    assert 0.90 <= hits / 200 <= 0.99


def test_paired_interval_is_narrower_than_unpaired_for_correlated_scores() -> None:
    rng = np.random.default_rng(3)
    difficulty = rng.normal(0.5, 0.2, size=500)  # shared by both methods: tuple difficulty
    a = difficulty + 0.01 + rng.normal(0, 0.02, 500)
    b = difficulty + rng.normal(0, 0.02, 500)
    paired = paired_difference(a, b)
    la, ha = bootstrap_interval(a)
    lb, hb = bootstrap_interval(b)
    unpaired_width = np.hypot(ha - la, hb - lb)
    assert paired["high"] - paired["low"] < unpaired_width / 3
    assert paired["low"] > 0  # the 0.01 shift is detected only by pairing
    assert la < hb  # the separate intervals overlap
