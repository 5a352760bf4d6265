"""Tests of msgen.models.losses: the multi-source GAN losses, the nearest-neighbour loss, the VGG-19
relu1_2 loader and its documented substitutes."""

from __future__ import annotations

import csv
import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from msgen.models import (
    FeatureSpaceWarning,
    NearestNeighbourLoss,
    VGG19Features,
    VGGWeightsNotFound,
    discriminator_loss,
    generator_adversarial_loss,
    generator_loss,
    nearest_neighbour_loss,
)
from msgen.models.config import LossConfig
from msgen.models.losses import (
    CAFFE_MEAN_BGR,
    SHIPPED_VGG19,
    SHIPPED_VGG19_SHA256,
    TORCHVISION_VGG19_FILE,
    WEIGHTS_ENV,
    person_weight_map,
)
from msgen.pose import body_part_affines, is_usable, person_mask, read_annotations


def naive_nearest_neighbour(
    generated: torch.Tensor, target: torch.Tensor, k: int, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Location by location: min over the in-image k x k neighbours of sum_c |g - t| (times
    weight[b, 0, y, x] when given), then mean."""
    B, _, H, W = generated.shape
    r = k // 2
    per_location = []
    for b in range(B):
        for y in range(H):
            for x in range(W):
                distances = [
                    (generated[b, :, y, x] - target[b, :, v, u]).abs().sum()
                    for v in range(max(0, y - r), min(H, y + r + 1))
                    for u in range(max(0, x - r), min(W, x + r + 1))
                ]
                scale = 1 if weight is None else weight[b, 0, y, x]
                per_location.append(scale * torch.stack(distances).min())
    return torch.stack(per_location).mean()


@pytest.mark.parametrize("k, shape", [(1, (1, 2, 3, 4)), (3, (2, 3, 7, 5)), (5, (1, 4, 6, 3))])
def test_nearest_neighbour_loss_matches_a_naive_loop(k: int, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(k)
    generated = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    loss = nearest_neighbour_loss(generated, target, neighbourhood=k)
    expected = naive_nearest_neighbour(generated, target, k)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(loss, (generated, target))
    expected_grads = torch.autograd.grad(expected, (generated, target))
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_nearest_neighbour_loss_applies_the_feature_extractor() -> None:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)

    def features(images: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(images, weight, padding=1))

    generated = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64)
    loss = nearest_neighbour_loss(generated, target, features, neighbourhood=3)
    expected = naive_nearest_neighbour(features(generated), features(target), 3)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(loss, generated)
    (expected_grad,) = torch.autograd.grad(expected, generated)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_nearest_neighbour_loss_is_zero_for_identical_images() -> None:
    image = torch.rand(2, 3, 9, 7) * 2 - 1
    assert nearest_neighbour_loss(image, image.clone(), neighbourhood=3) == 0


def test_nearest_neighbour_loss_tolerates_shifts_within_its_neighbourhood() -> None:
    # Content inside a 2-pixel zero border, so a shift of up to 2 pixels loses nothing at the edges.
    target = F.pad(torch.rand(1, 3, 8, 6) + 0.5, (2, 2, 2, 2))
    by_one = torch.roll(target, shifts=(1, -1), dims=(2, 3))
    by_two = torch.roll(target, shifts=(2, 0), dims=(2, 3))
    assert nearest_neighbour_loss(by_one, target, neighbourhood=1) > 0
    assert nearest_neighbour_loss(by_one, target, neighbourhood=3) == 0
    assert nearest_neighbour_loss(by_two, target, neighbourhood=3) > 0
    assert nearest_neighbour_loss(by_two, target, neighbourhood=5) == 0


def test_nearest_neighbour_loss_rejects_bad_arguments() -> None:
    image = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="neighbourhood"):
        nearest_neighbour_loss(image, image, neighbourhood=2)
    with pytest.raises(ValueError, match="generated and target"):
        nearest_neighbour_loss(image, image[..., :3])


def random_logits(B: int, M: int, seed: int) -> torch.Tensor:
    return torch.randn(
        B, M, 1, 3, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def test_gan_losses_are_the_non_saturating_bce_summed_over_valid_sources() -> None:
    real, fake = random_logits(3, 4, 0), random_logits(3, 4, 1)
    valid = torch.tensor(
        [[True, True, True, True], [True, False, True, False], [False, False, True, False]]
    )
    keep = valid[:, :, None, None, None].double()
    # -log sigmoid(real) - log(1 - sigmoid(fake)), patch mean per source, summed over sources.
    d_expected = (
        ((-F.logsigmoid(real) - F.logsigmoid(-fake)) * keep).mean(dim=(2, 3, 4)).sum(1).mean()
    )
    g_expected = ((-F.logsigmoid(fake)) * keep).mean(dim=(2, 3, 4)).sum(1).mean()
    torch.testing.assert_close(discriminator_loss(real, fake, valid), d_expected)
    torch.testing.assert_close(generator_adversarial_loss(fake, valid), g_expected)


def test_gan_losses_ignore_padded_sources_and_add_up_over_sources() -> None:
    real, fake = random_logits(2, 3, 2), random_logits(2, 3, 3)
    valid = torch.tensor([[True, True, False], [True, False, False]])
    noisy = torch.where(valid[:, :, None, None, None], fake, torch.full_like(fake, float("nan")))
    torch.testing.assert_close(
        generator_adversarial_loss(noisy, valid), generator_adversarial_loss(fake, valid)
    )
    doubled = torch.cat([fake[:, :1], fake[:, :1]], dim=1)
    torch.testing.assert_close(
        generator_adversarial_loss(doubled), 2 * generator_adversarial_loss(fake[:, :1])
    )
    torch.testing.assert_close(
        discriminator_loss(real, fake),
        sum(discriminator_loss(real[:, i : i + 1], fake[:, i : i + 1]) for i in range(3)),
    )
    with pytest.raises(ValueError, match="valid"):
        generator_adversarial_loss(fake, valid[:, :2])
    with pytest.raises(ValueError, match="real_logits"):
        discriminator_loss(real, fake[:, :2])


def test_generator_loss_adds_lambda_times_the_reconstruction() -> None:
    fake = random_logits(2, 2, 4)
    generated, target = (
        torch.rand(2, 3, 8, 4, dtype=torch.float64),
        torch.rand(2, 3, 8, 4, dtype=torch.float64),
    )
    with pytest.warns(FeatureSpaceWarning):
        reconstruction = NearestNeighbourLoss("pixel")
    losses = generator_loss(fake, generated, target, reconstruction, lambda_nn=0.01)
    torch.testing.assert_close(losses.adversarial, generator_adversarial_loss(fake))
    torch.testing.assert_close(losses.reconstruction, nearest_neighbour_loss(generated, target))
    torch.testing.assert_close(losses.total, losses.adversarial + 0.01 * losses.reconstruction)


def test_weighted_nearest_neighbour_matches_a_loop() -> None:
    g = torch.Generator().manual_seed(3)
    generated, target = (torch.rand(2, 3, 7, 5, generator=g, dtype=torch.float64) for _ in range(2))
    weight = 1 + 3 * (torch.rand(2, 1, 7, 5, generator=g, dtype=torch.float64) > 0.5)
    got = nearest_neighbour_loss(generated, target, neighbourhood=3, weight=weight)
    torch.testing.assert_close(got, naive_nearest_neighbour(generated, target, 3, weight))
    # Unit weights are the unweighted loss; a wrong shape is refused by name.
    torch.testing.assert_close(nearest_neighbour_loss(generated, target, weight=torch.ones_like(weight)),
                               nearest_neighbour_loss(generated, target))
    with pytest.raises(ValueError, match="weight must be"):
        nearest_neighbour_loss(generated, target, weight=weight[:1])


def test_person_weight_map_is_one_plus_w_on_head_limbs_and_torso_area() -> None:
    masks = torch.zeros(2, 3, 10, 12, 8)
    masks[:, :, 0] = 1.0           # the torso's mask is the whole image, as body_part_affines gives
    masks[0, 0, 2, 1, 1] = 1.0     # source 0, part 2
    masks[0, 2, 7, 4, 3] = 0.5     # soft edge of another source's part
    masks[1, 1, 1, :, 0] = 1.0     # the head
    kp = torch.full((2, 18, 2), -1.0)
    kp[0, [2, 5, 11, 8]] = torch.tensor([[6.0, 2.0], [6.0, 6.0], [10.0, 6.0], [10.0, 2.0]])  # Rsho Lsho Lhip Rhip
    weight = person_weight_map(masks, kp, 4.0)
    expected = torch.ones(2, 1, 12, 8)
    expected[0, 0, 6:11, 2:7] = 5.0  # inside the torso points, edges included
    expected[0, 0, 1, 1] = 5.0
    expected[0, 0, 4, 3] = 3.0
    expected[1, 0, :, 0] = 5.0       # sample 1 has no torso points: its torso area is empty
    torch.testing.assert_close(weight, expected)


def test_person_weight_map_of_real_poses_weighs_the_body_not_the_frame(shared_data) -> None:
    """On real Market pose pairs the map is 1 + w on the body and 1 on the background: the
    torso's whole-image mask must not make it a uniform 1 + w (a constant factor Adam ignores)."""
    folder = shared_data / "market-real"
    poses = read_annotations(folder / "annotation.csv")
    with open(folder / "pairs.csv", newline="") as handle:
        pairs = [row for row in list(csv.reader(handle))[1:] if is_usable(poses[row[0]]) and is_usable(poses[row[1]])][:20]
    assert len(pairs) == 20
    s_kp = torch.from_numpy(np.stack([poses[a] for a, _ in pairs]))
    t_kp = torch.from_numpy(np.stack([poses[b] for _, b in pairs]))
    _, masks = body_part_affines(s_kp, t_kp, (128, 64))
    weight = person_weight_map(masks[:, None], t_kp, 4.0)[:, 0]
    person = torch.from_numpy(np.stack([person_mask(k, (128, 64)) for k in t_kp.numpy()])) > 0
    on_skeleton = []
    for w, inside in zip(weight, person):
        share_weighted = (w > 1).double().mean()
        assert 0.1 < share_weighted < 0.7, "the body is a part of the frame, not all or none of it"
        assert w.min() == 1.0 and w.max() == 5.0
        on_skeleton.append((w[inside] > 1).double().mean())
    # The skeleton lies on weighted pixels (a limb that no source shows has an empty mask).
    assert min(on_skeleton) > 0.75 and sum(on_skeleton) / len(on_skeleton) > 0.9


def test_generator_loss_weighs_the_adversarial_term_and_the_locations() -> None:
    fake = random_logits(2, 2, 4)
    generated, target = (torch.rand(2, 3, 8, 4, dtype=torch.float64) for _ in range(2))
    weight = 1 + torch.rand(2, 1, 8, 4, dtype=torch.float64)
    with pytest.warns(FeatureSpaceWarning):
        reconstruction = NearestNeighbourLoss("pixel")
    losses = generator_loss(fake, generated, target, reconstruction, lambda_nn=2.0, adversarial_weight=0.25, weight=weight)
    torch.testing.assert_close(losses.adversarial, generator_adversarial_loss(fake))
    torch.testing.assert_close(losses.reconstruction, nearest_neighbour_loss(generated, target, weight=weight))
    torch.testing.assert_close(losses.total, 0.25 * losses.adversarial + 2.0 * losses.reconstruction)


def vgg19_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with torchvision's VGG-19 names for the first block and a few others."""
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "features.0.weight": (64, 3, 3, 3),
        "features.0.bias": (64,),
        "features.2.weight": (64, 64, 3, 3),
        "features.2.bias": (64,),
        "features.5.weight": (128, 64, 3, 3),
        "features.5.bias": (128,),
        "classifier.6.bias": (1000,),
    }
    return {name: torch.randn(*shape, generator=g) * 0.1 for name, shape in shapes.items()}


def expected_relu1_2(state: dict[str, torch.Tensor], images: torch.Tensor, scale: str = "caffe") -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    pixels = (images + 1) * 127.5  # 0-255 RGB
    x = pixels - 255 * mean if scale == "caffe" else (pixels / 255 - mean) / std
    x = F.relu(F.conv2d(x, state["features.0.weight"], state["features.0.bias"], padding=1))
    return F.relu(F.conv2d(x, state["features.2.weight"], state["features.2.bias"], padding=1))


@pytest.fixture
def no_cached_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache and no MSGEN_VGG19_WEIGHTS; returns the hub folder."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    return hub


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_vgg_features_load_a_local_state_dict(
    tmp_path: Path, no_cached_weights: Path, suffix: str
) -> None:
    state = vgg19_state_dict()
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    vgg = VGG19Features(weights=path)
    images = torch.rand(2, 3, 10, 6) * 2 - 1
    torch.testing.assert_close(vgg(images), expected_relu1_2(state, images), rtol=1e-4, atol=1e-3)
    assert vgg.source == str(path)
    assert not any(p.requires_grad for p in vgg.parameters())


def test_caffe_scaled_input_gives_the_published_codes_distance_scale(tmp_path: Path, no_cached_weights: Path) -> None:
    # The published code's VGG took 0-255 inputs minus the mean; torchvision's takes them divided
    # by 255 * std as well. Through the first (linear) layers, with random weights and zero biases
    # (so the scale shows alone), the NN distance grows by 255 * std ~ 57.1-58.4 per channel.
    state = vgg19_state_dict(3)
    state["features.0.bias"].zero_()
    state["features.2.bias"].zero_()
    torch.save(state, tmp_path / "vgg.pth")
    g = torch.Generator().manual_seed(0)
    generated, target = (torch.rand(2, 2, 3, 32, 16, generator=g) * 2 - 1).unbind(0)
    with pytest.warns(FeatureSpaceWarning, match="caffe-scaled"):
        caffe = NearestNeighbourLoss.from_config(LossConfig(vgg_weights=str(tmp_path / "vgg.pth")))
    with pytest.warns(FeatureSpaceWarning, match="torchvision-scaled"):
        normalised = NearestNeighbourLoss("vgg19", weights=tmp_path / "vgg.pth", vgg_input="torchvision")
    ratio = caffe(generated, target) / normalised(generated, target)
    assert 255 * 0.224 <= ratio <= 255 * 0.229
    images = generated[:1]
    torch.testing.assert_close(caffe.vgg(images), expected_relu1_2(state, images, "caffe"), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(normalised.vgg(images), expected_relu1_2(state, images, "torchvision"), rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="vgg_input"):
        LossConfig(vgg_input="bgr")


def test_vgg_weights_from_the_environment_and_from_the_hub_cache(
    tmp_path: Path, no_cached_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torchvision's file in the hub cache is used when asked for by name ("torchvision"); the
    # default is the shipped original VGG-19 (the paper's), which a file in the cache never replaces.
    images = torch.rand(1, 3, 6, 4) * 2 - 1
    from_env, from_hub = vgg19_state_dict(1), vgg19_state_dict(2)
    cached = no_cached_weights / "checkpoints" / TORCHVISION_VGG19_FILE
    cached.parent.mkdir(parents=True)
    torch.save(from_hub, cached)
    torch.testing.assert_close(VGG19Features("torchvision")(images), expected_relu1_2(from_hub, images), rtol=1e-4, atol=1e-3)
    assert VGG19Features().source == str(SHIPPED_VGG19)
    torch.save(from_env, tmp_path / "env.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "env.pth"))
    torch.testing.assert_close(VGG19Features()(images), expected_relu1_2(from_env, images), rtol=1e-4, atol=1e-3)


def test_missing_weights_say_what_was_expected(no_cached_weights: Path) -> None:
    with pytest.raises(VGGWeightsNotFound, match="nowhere.pth"):
        NearestNeighbourLoss("vgg19", weights="nowhere.pth")
    with pytest.raises(VGGWeightsNotFound, match="hub cache"):
        VGG19Features("torchvision")


def published_relu1_2(images: torch.Tensor) -> torch.Tensor:
    """relu1_2 as the published code's Keras VGG19 computes it, straight from the source npz:
    RGB [-1, 1] -> BGR 0-255 minus the Caffe mean, then conv1_1, relu, conv1_2, relu."""
    data = np.load(SOURCE_NPZ)
    bgr = ((images + 1) * 127.5)[:, [2, 1, 0]] - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    weight = {name: torch.from_numpy(data[name]) for name in data.files}
    x = F.relu(F.conv2d(bgr, weight["conv1_1_weight_OIHW_BGR"], weight["conv1_1_bias"], padding=1))
    return F.relu(F.conv2d(x, weight["conv1_2_weight_OIHW_BGR"], weight["conv1_2_bias"], padding=1))


SOURCE_NPZ = Path(__file__).resolve().parents[2] / "shared" / "weights" / "vgg19_caffe_conv1_1_to_conv2_2.npz"


def test_the_shipped_vgg19_is_the_papers_and_runs_without_a_warning(no_cached_weights: Path) -> None:
    assert hashlib.sha256(SHIPPED_VGG19.read_bytes()).hexdigest() == SHIPPED_VGG19_SHA256
    from safetensors import safe_open

    with safe_open(str(SHIPPED_VGG19), "pt") as handle:
        metadata = handle.metadata()
    assert "CC BY 4.0" in metadata["licence"] and "Simonyan" in metadata["licence"]
    assert metadata["channel_order"] == "BGR"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the paper's loss: no FeatureSpaceWarning, no other warning
        loss = NearestNeighbourLoss.from_config(LossConfig())
    assert loss.vgg is not None and loss.vgg.paper and "paper" in loss.feature_space
    with pytest.raises(ValueError, match="caffe"):
        VGG19Features(input_scale="torchvision")
    if not SOURCE_NPZ.is_file():
        pytest.skip(f"the source npz is not here ({SOURCE_NPZ}): the feature check needs it")
    g = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, 9, 7, generator=g) * 2 - 1
    torch.testing.assert_close(loss.vgg(images), published_relu1_2(images), rtol=1e-5, atol=1e-3)


def test_a_damaged_shipped_file_is_refused(tmp_path: Path, no_cached_weights: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import msgen.models.losses as losses

    damaged = tmp_path / SHIPPED_VGG19.name
    data = bytearray(SHIPPED_VGG19.read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(losses, "SHIPPED_VGG19", damaged)
    with pytest.raises(VGGWeightsNotFound, match="damaged"):
        VGG19Features()
    monkeypatch.setattr(losses, "SHIPPED_VGG19", tmp_path / "gone.safetensors")
    with pytest.raises(VGGWeightsNotFound, match="missing"):
        VGG19Features()


def test_a_state_dict_that_is_not_vgg19_is_rejected(
    tmp_path: Path, no_cached_weights: Path
) -> None:
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="features.0.weight"):
        VGG19Features(tmp_path / "other.pth")


def test_the_loss_says_which_features_it_uses(tmp_path: Path, no_cached_weights: Path) -> None:
    torch.save(vgg19_state_dict(), tmp_path / "vgg.pth")
    with pytest.warns(FeatureSpaceWarning, match="VGG-19 relu1_2"):
        vgg_loss = NearestNeighbourLoss.from_config(
            LossConfig(vgg_weights=str(tmp_path / "vgg.pth"))
        )
    assert "VGG-19 relu1_2" in vgg_loss.feature_space and str(tmp_path) in vgg_loss.feature_space
    with pytest.warns(FeatureSpaceWarning, match="substitute"):
        pixel_loss = NearestNeighbourLoss("pixel", neighbourhood=5)
    assert pixel_loss.feature_space.startswith("pixels")
    with pytest.warns(FeatureSpaceWarning, match="1x1"):
        l1_loss = NearestNeighbourLoss("l1")

    g = torch.Generator().manual_seed(3)
    generated, target = (
        torch.rand(2, 3, 8, 4, generator=g) * 2 - 1,
        torch.rand(2, 3, 8, 4, generator=g) * 2 - 1,
    )
    torch.testing.assert_close(l1_loss(generated, target), (generated - target).abs().sum(1).mean())
    torch.testing.assert_close(
        pixel_loss(generated, target), nearest_neighbour_loss(generated, target, None, 5)
    )
    torch.testing.assert_close(
        vgg_loss(generated, target), nearest_neighbour_loss(generated, target, vgg_loss.vgg, 3)
    )
    with warnings.catch_warnings(), pytest.raises(ValueError, match="features"):
        warnings.simplefilter("ignore")
        NearestNeighbourLoss("random")
