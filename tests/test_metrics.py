"""msgen.evaluation's SSIM and Inception Score against direct, hand-written computations (float64
oracles, fresh random inputs)."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch

from msgen.evaluation import (
    InceptionScorer,
    InceptionUnavailable,
    apply_mask,
    inception_score_from_probabilities,
    load_inception,
    mask_ssim,
    ssim,
    to_uint8,
)
from msgen.pose.person_mask import person_mask


def direct_ssim(x: np.ndarray, y: np.ndarray, data_range: float, sigma: float = 1.5, radius: int = 5) -> float:
    """Wang et al.'s SSIM written out: at every pixel at least ``radius`` from the border, Gaussian-
    weighted means, population variances and covariance over the (2r+1)^2 window; mean over pixels
    and channels."""
    offsets = np.arange(-radius, radius + 1)
    w = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    H, W, C = x.shape
    values = []
    for c in range(C):
        a, b = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
        for i in range(radius, H - radius):
            for j in range(radius, W - radius):
                pa = a[i - radius : i + radius + 1, j - radius : j + radius + 1]
                pb = b[i - radius : i + radius + 1, j - radius : j + radius + 1]
                ma, mb = (w * pa).sum(), (w * pb).sum()
                va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
                cov = (w * (pa - ma) * (pb - mb)).sum()
                values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def random_image(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)


def random_pose(rng: np.random.Generator, size: tuple[int, int], missing: int = 3) -> np.ndarray:
    H, W = size
    kp = np.stack([rng.uniform(0, H - 1, 18), rng.uniform(0, W - 1, 18)], axis=-1).astype(np.float32)
    kp[rng.choice(18, size=missing, replace=False)] = -1
    return kp


def test_ssim_of_identical_images_is_one() -> None:
    rng = np.random.default_rng()
    image = random_image(rng, (17, 13))
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    assert ssim(image, image, data_range="minmax") == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(11, 11), (19, 14), (23, 16)])
def test_ssim_matches_direct_formula(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng()
    target = random_image(rng, shape)
    # A correlated, not identical, generated image: SSIM strictly between 0 and 1.
    noise = rng.integers(-60, 61, size=target.shape)
    generated = np.clip(target.astype(int) // 2 + 40 + noise, 0, 255).astype(np.uint8)
    expected = direct_ssim(generated, target, 255.0)
    assert ssim(generated, target) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert 0.0 < expected < 1.0


def test_minmax_range_is_the_generated_image_range() -> None:
    rng = np.random.default_rng()
    target = random_image(rng, (16, 12))
    generated = rng.integers(30, 181, size=target.shape).astype(np.uint8)
    span = float(int(generated.max()) - int(generated.min()))
    got = ssim(generated, target, data_range="minmax")
    assert got == pytest.approx(direct_ssim(generated, target, span), rel=1e-9, abs=1e-12)
    assert got != pytest.approx(ssim(generated, target, data_range="255"), rel=1e-6)


def test_minmax_of_constant_image_uses_range_one() -> None:
    rng = np.random.default_rng()
    target = random_image(rng, (12, 12))
    generated = np.full_like(target, 77)
    got = ssim(generated, target, data_range="minmax")
    assert math.isfinite(got)
    assert got == pytest.approx(direct_ssim(generated, target, 1.0), rel=1e-9, abs=1e-12)


def test_mask_ssim_is_ssim_of_images_masked_by_the_target_pose() -> None:
    rng = np.random.default_rng()
    size = (32, 21)
    target, generated = random_image(rng, size), random_image(rng, size)
    target_kp, other_kp = random_pose(rng, size), random_pose(rng, size)
    keep = person_mask(target_kp, size)[..., None]
    expected = direct_ssim(generated * keep, target * keep, 255.0)
    assert mask_ssim(generated, target, target_kp) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # A different pose's mask gives a different score: the mask is the target's.
    assert mask_ssim(generated, target, other_kp) != pytest.approx(expected, rel=1e-6)


def test_apply_mask_zeroes_outside() -> None:
    rng = np.random.default_rng()
    image = random_image(rng, (5, 7))
    mask = rng.random((5, 7)) < 0.5
    out = apply_mask(image, mask)
    np.testing.assert_array_equal(out[mask], image[mask])
    assert (out[~mask] == 0).all()


def test_to_uint8_inverts_the_pixel_scaling() -> None:
    rng = np.random.default_rng()
    values = rng.integers(0, 256, size=(2, 3, 5, 4))
    images = torch.from_numpy(values / 127.5 - 1.0).float()
    out = to_uint8(images)
    assert out.dtype == np.uint8 and out.shape == (2, 5, 4, 3)
    np.testing.assert_array_equal(out, np.moveaxis(values, 1, -1))
    clipped = to_uint8(torch.tensor([-3.0, 2.0, 0.0]).view(3, 1, 1))
    assert clipped.ravel().tolist() == [0, 255, 128]


def test_ssim_rejects_bad_input() -> None:
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="generated must be a uint8 RGB"):
        ssim(image.astype(np.float32), image)
    with pytest.raises(ValueError, match="differ in size"):
        ssim(image, np.zeros((16, 15, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(image[:10], image[:10])
    with pytest.raises(ValueError, match="data_range must be one of"):
        ssim(image, image, data_range="1")


def direct_inception_score(p: np.ndarray, splits: int) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) per split, written with scalar loops."""
    n, k = p.shape
    scores = []
    for s in range(splits):
        rows = list(range(s * n // splits, (s + 1) * n // splits))
        marginal = [sum(p[i, c] for i in rows) / len(rows) for c in range(k)]
        kl = [sum(p[i, c] * math.log(p[i, c] / marginal[c]) for c in range(k) if p[i, c] > 0) for i in rows]
        scores.append(math.exp(sum(kl) / len(rows)))
    mean = sum(scores) / splits
    return mean, math.sqrt(sum((s - mean) ** 2 for s in scores) / splits)


@pytest.mark.parametrize("n,splits", [(40, 10), (23, 10), (7, 3), (5, 1)])
def test_inception_score_matches_direct_formula(n: int, splits: int) -> None:
    rng = np.random.default_rng()
    p = rng.dirichlet(np.full(6, 0.3), size=n)
    p[0, :] = 0.0
    p[0, 2] = 1.0  # a one-hot row: 0 log 0 terms
    mean, std = inception_score_from_probabilities(p, splits)
    expected_mean, expected_std = direct_inception_score(p, splits)
    assert mean == pytest.approx(expected_mean, rel=1e-10)
    assert std == pytest.approx(expected_std, rel=1e-8, abs=1e-12)


def test_inception_score_of_known_distributions() -> None:
    # Split 1: one-hot over 4 classes, evenly -> IS 4. Split 2: every row the same -> IS 1.
    one_hot = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]
    same = np.tile([0.1, 0.2, 0.3, 0.4], (8, 1))
    mean, std = inception_score_from_probabilities(np.concatenate([one_hot, same]), splits=2)
    assert mean == pytest.approx(2.5, rel=1e-12)
    assert std == pytest.approx(1.5, rel=1e-12)


def test_inception_score_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 10 images"):
        inception_score_from_probabilities(np.full((9, 2), 0.5), splits=10)
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score_from_probabilities(np.full((10, 2), 0.6), splits=2)


def test_scorer_feeds_299_images_in_unit_range_to_the_hook() -> None:
    """A fake classifier whose output is known: p(class 0) = the mean of the red channel in [0, 1]."""
    rng = np.random.default_rng()
    levels = rng.integers(0, 256, size=13)
    images = np.zeros((13, 12, 9, 3), np.uint8)
    images[..., 0] = levels[:, None, None]
    images[..., 1:] = rng.integers(0, 256, size=(13, 12, 9, 2), dtype=np.uint8)
    seen = []

    def fake(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        assert x.min() >= -1.0 and x.max() <= 1.0
        red = (x[:, 0].mean(dim=(1, 2)) + 1) / 2
        return torch.stack([red, 1 - red], dim=1)

    scorer = InceptionScorer(fake, batch_size=5)
    p = scorer.probabilities(images)
    assert seen == [(5, 3, 299, 299), (5, 3, 299, 299), (3, 3, 299, 299)]
    np.testing.assert_allclose(p[:, 0], levels / 255.0, atol=1e-6)  # constant channel survives the resize
    expected = direct_inception_score(np.stack([levels / 255.0, 1 - levels / 255.0], 1), splits=2)
    assert scorer.score(images, splits=2) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_load_inception_without_torchvision_says_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(InceptionUnavailable, match="torchvision cannot be imported"):
        load_inception()


class TinyClassifier(torch.nn.Module):
    """Stands in for torchvision's Inception3: records its constructor's arguments."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)  # where load_inception_model takes the pool features
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(x).flatten(1))


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> list[TinyClassifier]:
    """A torchvision whose inception_v3 builds TinyClassifier; returns the networks it built."""
    built: list[TinyClassifier] = []

    def inception_v3(**kwargs: object) -> TinyClassifier:
        built.append(TinyClassifier(**kwargs))
        return built[-1]

    models = types.ModuleType("torchvision.models")
    models.inception_v3 = inception_v3
    package = types.ModuleType("torchvision")
    package.models = models
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    monkeypatch.delenv("MSGEN_INCEPTION_WEIGHTS", raising=False)
    return built


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_inception_loads_a_local_state_dict(tmp_path, fake_torchvision, monkeypatch, suffix: str) -> None:
    weights = TinyClassifier().state_dict()
    path = tmp_path / f"inception{suffix}"
    if suffix == ".pth":
        torch.save(weights, path)
    else:
        from safetensors.torch import save_file

        save_file(weights, str(path))
    monkeypatch.setenv("MSGEN_INCEPTION_WEIGHTS", str(path))
    model = load_inception()
    net = fake_torchvision[-1]
    assert net.kwargs == {"weights": None, "aux_logits": True, "transform_input": False, "init_weights": False}
    assert not net.training
    x = torch.rand(5, 3, 7, 6) * 2 - 1
    expected = torch.softmax(x.mean(dim=(2, 3)) @ weights["fc.weight"].T + weights["fc.bias"], dim=1)
    torch.testing.assert_close(model(x), expected)


def test_load_inception_finds_torchvisions_cached_file(tmp_path, fake_torchvision, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(InceptionUnavailable, match="no Inception-v3 weights: pass --inception-weights"):
        load_inception()
    (tmp_path / "checkpoints").mkdir()
    torch.save(TinyClassifier().state_dict(), tmp_path / "checkpoints" / "inception_v3_google-0cc3c7bd.pth")
    assert load_inception()(torch.zeros(2, 3, 5, 5)).shape == (2, 4)


def test_load_inception_rejects_missing_or_foreign_weights(tmp_path, fake_torchvision) -> None:
    with pytest.raises(InceptionUnavailable, match="does not exist"):
        load_inception(tmp_path / "nope.pth")
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(InceptionUnavailable, match="not torchvision's Inception-v3 state dict"):
        load_inception(foreign)


def test_load_inception_model_gives_pool_features_and_probabilities(tmp_path, fake_torchvision, monkeypatch) -> None:
    from msgen.evaluation import load_inception_model

    weights = TinyClassifier().state_dict()
    torch.save(weights, tmp_path / "inception.pth")
    model = load_inception_model(tmp_path / "inception.pth")
    x = torch.rand(3, 3, 7, 6) * 2 - 1
    features, probabilities = model(x)
    torch.testing.assert_close(features, x.mean(dim=(2, 3)))  # the avgpool output, the classifier's input
    torch.testing.assert_close(probabilities, torch.softmax(features @ weights["fc.weight"].T + weights["fc.bias"], 1))
