"""The training step body (msgen.training.step): pose built on the device, no host sync per step."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from msgen.data import collate_tuples
from msgen.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, NearestNeighbourLoss
from msgen.pose import with_pose_inputs
from msgen.training.step import LOSS_NAMES, LossWindow, TrainingStep

from host_syncs import count_host_syncs, optimizer_host_tensors  # tests/host_syncs.py, a test tool

SIZE = (32, 16)
BASE = torch.tensor([[4, 8], [7, 8], [7, 5], [11, 4], [15, 4], [7, 11], [11, 12], [15, 12], [16, 6],
                     [22, 6], [28, 6], [16, 10], [22, 10], [28, 10], [3, 9], [3, 7], [4, 10], [4, 6]], dtype=torch.float32)


def _items(ms: tuple[int, ...], seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    items = []
    for m in ms:
        kp = (BASE + torch.randn(m + 1, 18, 2, generator=g)).clamp(min=0).round()
        kp[:, 16] = -1.0  # a missing ear
        items.append({"sources": torch.rand(m, 3, *SIZE, generator=g) * 2 - 1, "source_kp": kp[:m],
                      "target": torch.rand(3, *SIZE, generator=g) * 2 - 1, "target_kp": kp[m], "names": []})
    return items


def _step(ops: str = "fast", **options: float) -> TrainingStep:
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(image_size=SIZE, levels=4, width=1 / 16, ops=ops))
    D = Discriminator(DiscriminatorConfig(width=1 / 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nn_loss = NearestNeighbourLoss("pixel")
    adam = dict(lr=2e-4, betas=(0.5, 0.999))
    return TrainingStep(G, D, nn_loss, torch.optim.Adam(G.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam),
                        image_size=SIZE, lambda_nn=1.0, device=torch.device("cpu"), **options)


@pytest.mark.parametrize("ops, augment", [("reference", {}), ("fast", {}), ("fast", {"flip": 0.5, "color_jitter": 0.2})])
def test_a_step_makes_no_host_sync(ops: str, augment: dict) -> None:
    step = _step(ops, **augment)
    batch = collate_tuples(_items((2, 2, 2)))
    assert batch["valid"] is None
    step(batch)  # first step: Adam's state, the pose geometry's per-device constants
    window = LossWindow(torch.device("cpu"))
    with count_host_syncs(optimizer_host_tensors(step.optim_g, step.optim_d)) as counts:
        for i in range(2):
            window.add(step(batch), i + 1)
    assert dict(counts) == {}
    with count_host_syncs() as counts:
        reading = window.read()
    assert sum(counts.values()) == 1  # the log step's one read
    assert set(reading.means) == set(LOSS_NAMES) and all(math.isfinite(v) for v in reading.means.values())
    assert reading.bad_step is None


def test_the_counter_sees_what_would_sync() -> None:
    x = torch.rand(4, 3)
    with count_host_syncs() as counts:
        bool(x.sum() > 0)
        x.tolist()
        x[x > 0.5]
        x[:, [0, 2]]
        torch.tensor([1.0, 2.0])
        (x > 0.5).nonzero()
    assert counts["aten._local_scalar_dense"] == 1 and counts["Tensor.tolist"] == 1
    assert counts["aten.index (boolean mask)"] == 1 and counts["aten.lift_fresh"] == 2
    assert counts["aten.nonzero"] == 1


def test_the_step_with_padded_sources_runs_and_ignores_the_padding() -> None:
    step = _step()
    batch = collate_tuples(_items((1, 3)))
    assert batch["valid"].tolist() == [[True, False, False], [True, True, True]]
    losses = step(batch)
    assert losses.shape == (4,) and torch.isfinite(losses).all()


def test_without_the_adversarial_term_d_is_neither_run_nor_trained_and_g_follows_the_reconstruction() -> None:
    step = _step(adversarial_weight=0.0)
    reference = _step(adversarial_weight=0.0)
    d_before = [p.detach().clone() for p in step.D.parameters()]
    calls = []
    step.D.register_forward_hook(lambda *_: calls.append(1))
    batch = collate_tuples(_items((2, 2, 2)))
    losses = step(batch)
    assert not calls and all(torch.equal(a, b) for a, b in zip(d_before, step.D.parameters()))
    assert losses[0] == 0 and losses[1] == 0 and losses[3] == losses[2]  # total = lambda (1) * L_NN
    # G took one Adam step on lambda * L_NN alone: the same as stepping a twin on that loss by hand.
    b = with_pose_inputs(batch, SIZE)
    fake = reference.G(b["sources"], b["source_heatmaps"], b["target_heatmap"], b["theta"], b["part_masks"], b["valid"]).image
    reference.optim_g.zero_grad()
    reference.nn_loss(fake, b["target"]).backward()
    reference.optim_g.step()
    for a, b_ in zip(step.G.parameters(), reference.G.parameters()):
        torch.testing.assert_close(a, b_)


def test_loss_window_names_the_first_non_finite_step() -> None:
    window = LossWindow(torch.device("cpu"))
    window.add(torch.tensor([1.0, 2.0, 3.0, 4.0]), 7)
    window.add(torch.tensor([1.0, float("nan"), 3.0, 4.0]), 8)
    window.add(torch.tensor([float("inf"), 2.0, 3.0, 4.0]), 9)
    reading = window.read()
    assert reading.bad_step == 8 and math.isnan(reading.bad_losses["loss_g_adv"])
    assert reading.bad_losses["loss_d"] == 1.0 and math.isnan(reading.means["loss_g_adv"])
    window.reset()
    window.add(torch.tensor([1.0, 2.0, 3.0, 5.0]), 10)
    assert window.read() == ({"loss_d": 1.0, "loss_g_adv": 2.0, "loss_nn": 3.0, "loss_g": 5.0}, None,
                             dict.fromkeys(LOSS_NAMES, 0.0))


def test_paper_presets_warn_about_substitutes() -> None:
    from dataclasses import replace

    from msgen.training.config import train_preset, with_overrides
    from msgen.training.loop import preset_substitutes

    for name in ("market", "deepfashion"):
        config = train_preset(name)
        assert preset_substitutes(config) == []
        pixel = with_overrides(config, {"model.loss.features": "pixel"})
        (text,) = preset_substitutes(pixel)
        assert "'pixel'" in text and "lambda 0.01" in text
        scaled = replace(config, model=replace(config.model, loss=replace(config.model.loss, vgg_input="torchvision")))
        assert "58x" in preset_substitutes(scaled)[0]
        no_gan = with_overrides(config, {"model.loss.adversarial_weight": 0.0, "model.loss.person_weight": 4.0})
        texts = preset_substitutes(no_gan)
        assert len(texts) == 2 and "adversarial term is weighted 0.0" in texts[0] and "1 + 4.0" in texts[1]
    assert preset_substitutes(train_preset("synthetic")) == []
