"""Tests of msgen.models: the generator, its ablations, the op switch and the discriminator.

Models are tiny (32x16 images, 4 levels, width 1/16: filters 4, 8, 16, 32) so the suite runs on a
2-core CPU; the batch follows msgen.data's contract with random affines and soft part masks.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from msgen.models import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    NearestNeighbourLoss,
    OpsConfig,
    discriminator_loss,
    generator_loss,
    preset,
    set_ops_impl,
)
from msgen.models.config import VARIANTS
from msgen.models.generator import warp_source_pixels
from msgen.pose import NUM_PARTS
from msgen.pose.parts import NULL_THETA
from msgen.ops import AttentionFusion, backends

TINY = GeneratorConfig(image_size=(32, 16), levels=4, width=1 / 16)
TINY_D = DiscriminatorConfig(width=1 / 16)
# Every fusion the decoder can build: the four variants, the two attention variants fed the
# coarser level's saliency (the published code's variant), and outputs that copy warped pixels.
FUSIONS = [replace(TINY, variant=v) for v in VARIANTS] + [
    replace(TINY, variant=v, coarse_attention=True) for v in ("full", "att2d")
] + [replace(TINY, coarse_attention=True, copy_pixels=True), replace(TINY, variant="avg", copy_pixels=True)]
FUSION_IDS = list(VARIANTS) + ["full-coarse", "att2d-coarse", "full-coarse-copy", "avg-copy"]


def random_affines(
    B: int, M: int, P: int, H: int, W: int, generator: torch.Generator
) -> torch.Tensor:
    """Backward affines (B, M, P, 2, 3): a rotation of up to 0.3 rad, scale 0.8-1.2 and a shift of
    up to a quarter of the image, about the image centre."""
    angle = (torch.rand(B, M, P, generator=generator) - 0.5) * 0.6
    scale = 0.8 + 0.4 * torch.rand(B, M, P, generator=generator)
    linear = torch.stack(
        [
            torch.stack([scale * angle.cos(), -scale * angle.sin()], dim=-1),
            torch.stack([scale * angle.sin(), scale * angle.cos()], dim=-1),
        ],
        dim=-2,
    )
    centre = torch.tensor([(W - 1) / 2, (H - 1) / 2])
    shift = (torch.rand(B, M, P, 2, generator=generator) - 0.5) * torch.tensor([W, H]) / 2
    translation = centre - linear @ centre + shift
    return torch.cat([linear, translation[..., None]], dim=-1)


def make_batch(
    B: int, M: int, H: int = 32, W: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {
        "sources": torch.rand(B, M, 3, H, W, generator=g) * 2 - 1,
        "source_heatmaps": torch.rand(B, M, 18, H, W, generator=g),
        "target": torch.rand(B, 3, H, W, generator=g) * 2 - 1,
        "target_heatmap": torch.rand(B, 18, H, W, generator=g),
        "theta": random_affines(B, M, 10, H, W, g),
        "part_masks": torch.rand(B, M, 10, H, W, generator=g),
        "valid": torch.ones(B, M, dtype=torch.bool),
    }
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}


def take_sources(
    batch: dict[str, torch.Tensor], index: torch.Tensor | slice
) -> dict[str, torch.Tensor]:
    """The batch with its sources (and everything per source) reordered or cut by index."""
    out = dict(batch)
    for key in ("sources", "source_heatmaps", "theta", "part_masks", "valid"):
        out[key] = batch[key][:, index]
    return out


def build(
    config: GeneratorConfig = TINY, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Generator:
    torch.manual_seed(seed)
    return Generator(config).to(dtype)


@pytest.mark.parametrize("M", [1, 2, 5])
def test_forward_shapes_for_any_number_of_sources(M: int) -> None:
    G = build()
    batch = make_batch(B=2, M=M, seed=M)
    out = G.forward_batch(batch)
    assert out.image.shape == (2, 3, 32, 16)
    assert out.saliency.shape == (2, M, 32, 16)
    assert out.image.abs().max() <= 1
    # Att is normalised over the sources (Eq. 4), so is its channel mean.
    torch.testing.assert_close(out.saliency.sum(dim=1), torch.ones(2, 32, 16))


def test_one_model_serves_every_number_of_sources() -> None:
    G = build()
    images = [G.forward_batch(make_batch(B=1, M=M, seed=M)).image for M in (1, 2, 5)]
    assert all(torch.isfinite(image).all() for image in images)
    assert not torch.allclose(images[0], images[2])


@pytest.mark.parametrize("config", FUSIONS, ids=FUSION_IDS)
def test_output_does_not_depend_on_source_order(config: GeneratorConfig) -> None:
    G = build(config, dtype=torch.float64)
    batch = make_batch(B=2, M=4, seed=3, dtype=torch.float64)
    permutation = torch.tensor([2, 0, 3, 1])
    out = G.forward_batch(batch)
    permuted = G.forward_batch(take_sources(batch, permutation))
    torch.testing.assert_close(permuted.image, out.image, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(
        permuted.saliency, out.saliency[:, permutation], rtol=1e-9, atol=1e-11
    )


@pytest.mark.parametrize("config", FUSIONS, ids=FUSION_IDS)
def test_padded_batch_gives_each_sample_its_own_result(config: GeneratorConfig) -> None:
    G = build(config, dtype=torch.float64)
    first = make_batch(B=1, M=3, seed=5, dtype=torch.float64)
    second = make_batch(B=1, M=1, seed=6, dtype=torch.float64)
    padded = {}
    for key, value in second.items():
        if key in ("sources", "source_heatmaps", "theta", "part_masks", "valid"):
            filler = torch.zeros_like(value[:, :1]).expand_as(first[key][:, 1:])
            value = torch.cat([value, filler], dim=1)  # padded sources: zeros, zero masks
        padded[key] = torch.cat([first[key], value], dim=0)
    out = G.forward_batch(padded)
    for row, alone in enumerate((first, second)):
        expected = G.forward_batch(alone)
        torch.testing.assert_close(out.image[row], expected.image[0], rtol=1e-9, atol=1e-11)
        M = alone["sources"].shape[1]
        torch.testing.assert_close(
            out.saliency[row, :M], expected.saliency[0], rtol=1e-9, atol=1e-11
        )
        assert (out.saliency[row, M:] == 0).all()


def test_padded_sources_may_hold_anything() -> None:
    G = build(dtype=torch.float64)
    batch = make_batch(B=2, M=3, seed=7, dtype=torch.float64)
    batch["valid"][0, 2] = batch["valid"][1, 1:] = False
    out = G.forward_batch(batch)
    noisy = dict(batch)
    noisy["sources"] = torch.where(batch["valid"][:, :, None, None, None], batch["sources"], 7.0)
    torch.testing.assert_close(G.forward_batch(noisy).image, out.image, rtol=1e-9, atol=1e-11)


def assert_gradients_everywhere(module: torch.nn.Module) -> None:
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
        assert parameter.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("config", FUSIONS, ids=FUSION_IDS)
def test_gradients_reach_every_parameter(config: GeneratorConfig) -> None:
    # Width 1/4: with TINY's 3 hidden units of the channel gate, all of them can be dead ReLUs,
    # and then f is the same for every source and cancels in Eq. 4 (an exact zero gradient).
    G = build(replace(config, width=1 / 4))
    torch.manual_seed(1)
    D = Discriminator(TINY_D)
    with pytest.warns(UserWarning, match="pixels"):
        reconstruction = NearestNeighbourLoss("pixel")
    batch = make_batch(B=2, M=3, seed=8)
    batch["valid"][1, 2] = False
    out = G.forward_batch(batch)
    args = (batch["target_heatmap"], batch["sources"], batch["source_heatmaps"])
    fake = D(out.image, *args)
    losses = generator_loss(fake, out.image, batch["target"], reconstruction, batch["valid"])
    losses.total.backward()
    assert_gradients_everywhere(G)
    assert len(list(G.parameters())) > 0

    D.zero_grad()
    d_loss = discriminator_loss(
        D(batch["target"], *args), D(out.image.detach(), *args), batch["valid"]
    )
    d_loss.backward()
    assert_gradients_everywhere(D)


def test_each_variant_has_its_parameters() -> None:
    counts = {
        v: sum(p.numel() for p in build(replace(TINY, variant=v)).parameters()) for v in VARIANTS
    }
    assert counts["avg"] == counts["avg-nod"] < counts["att2d"] < counts["full"]
    paper = build(replace(TINY, fc_hidden="paper")).decoder.fusion[0]
    code = build(replace(TINY, fc_hidden="code")).decoder.fusion[0]
    Cd, Ce = TINY.decoder_filters[0], TINY.skip_channels[0]
    assert paper.fc1.out_features == (Cd + Ce) // 4
    assert code.fc1.out_features == Ce // 4


def test_avg_nod_ignores_the_affines_and_avg_uses_them() -> None:
    batch = make_batch(B=1, M=2, seed=9)
    moved = dict(batch, theta=random_affines(1, 2, 10, 32, 16, torch.Generator().manual_seed(1)))
    for variant, changes in (("avg-nod", False), ("avg", True)):
        G = build(replace(TINY, variant=variant))
        difference = (G.forward_batch(batch).image - G.forward_batch(moved).image).abs().max()
        assert (difference > 1e-4) == changes, (variant, difference)


def test_identity_warp_equals_no_warp() -> None:
    # Every part the identity with a full mask: the max over parts is the feature map itself.
    batch = make_batch(B=2, M=2, seed=10, dtype=torch.float64)
    batch["theta"] = torch.eye(2, 3, dtype=torch.float64).expand(2, 2, 10, 2, 3).clone()
    batch["part_masks"] = torch.ones(2, 2, 10, 32, 16, dtype=torch.float64)
    warped = build(replace(TINY, variant="avg"), dtype=torch.float64)
    unwarped = build(replace(TINY, variant="avg-nod"), dtype=torch.float64)
    unwarped.load_state_dict(warped.state_dict())
    torch.testing.assert_close(
        warped.forward_batch(batch).image,
        unwarped.forward_batch(batch).image,
        rtol=1e-9,
        atol=1e-11,
    )


def _trust(G: Generator, logit: float) -> Generator:
    """G with the copy mask's logit held at ``logit`` everywhere (its output channel's weights 0)."""
    with torch.no_grad():
        conv = G.decoder.to_image[1]
        conv.weight[3:].zero_()
        conv.bias[3:].fill_(logit)
    return G


@pytest.mark.parametrize("variant", ["full", "att2d", "avg"])
def test_copy_pixels_blends_the_attention_weighted_warped_sources(variant: str) -> None:
    config = replace(TINY, variant=variant, coarse_attention=True, copy_pixels=True)
    batch = make_batch(B=2, M=3, seed=15, dtype=torch.float64)
    batch["valid"][1, 2] = False
    G = build(config, dtype=torch.float64)
    # Trusted everywhere, with every part the identity and a full mask (coverage 1): the output is
    # the sources' pixels weighted by the finest attention, whatever the decoder drew.
    identity = dict(batch, theta=torch.eye(2, 3, dtype=torch.float64).expand(2, 3, 10, 2, 3).clone(),
                    part_masks=torch.ones(2, 3, 10, 32, 16, dtype=torch.float64))
    out = _trust(G, 60.0).forward_batch(identity)
    sources = torch.where(batch["valid"][:, :, None, None, None], batch["sources"], 0)
    torch.testing.assert_close(out.image, (out.saliency[:, :, None] * sources).sum(1), rtol=1e-9, atol=1e-11)
    # Never trusted: the decoder's image, exactly what the model without the copy draws.
    plain = build(replace(config, copy_pixels=False), dtype=torch.float64)
    state = {k: (v[:3] if k.startswith("decoder.to_image.1.") else v) for k, v in G.state_dict().items()}
    plain.load_state_dict(state)
    torch.testing.assert_close(_trust(G, -60.0).forward_batch(batch).image, plain.forward_batch(batch).image,
                               rtol=1e-9, atol=1e-11)
    # In between, with real warps: the copy is weighted by how much of the pixel the warps cover.
    half = _trust(G, 0.0).forward_batch(batch)
    copied = G.copy_sources(batch["sources"], batch["theta"], batch["part_masks"], half.saliency, batch["valid"])
    colour, coverage = copied[:, :3], copied[:, 3:]
    assert (coverage >= 0).all() and (coverage <= 1 + 1e-12).all() and (coverage < 0.999).any()
    decoded = plain.forward_batch(batch).image
    torch.testing.assert_close(half.image, 0.5 * colour + (1 - 0.5 * coverage) * decoded, rtol=1e-9, atol=1e-11)
    assert half.image.abs().max() <= 1


def test_copy_pixels_keeps_dark_colours() -> None:
    # part_warp keeps the max over parts, 0 where a part's mask is 0: the copy warps pixels in
    # [0, 1], so a black source is copied black, not mid-grey.
    G = _trust(build(replace(TINY, variant="avg", copy_pixels=True), dtype=torch.float64), 60.0)
    batch = make_batch(B=1, M=2, seed=16, dtype=torch.float64)
    batch["sources"] = torch.full_like(batch["sources"], -1.0)
    batch["theta"] = torch.eye(2, 3, dtype=torch.float64).expand(1, 2, 10, 2, 3).clone()
    masks = torch.zeros(1, 2, 10, 32, 16, dtype=torch.float64)
    masks[:, :, 0] = 1  # one part covers everything, the nine others nothing
    out = G.forward_batch(dict(batch, part_masks=masks))
    torch.testing.assert_close(out.image, torch.full_like(out.image, -1.0))


def test_att2d_attention_is_spatial_only() -> None:
    G = build(replace(TINY, variant="att2d"), dtype=torch.float64)
    batch = make_batch(B=1, M=3, seed=11, dtype=torch.float64)
    skips = G.encoder(
        batch["sources"],
        batch["source_heatmaps"],
        batch["target_heatmap"],
        batch["theta"],
        batch["part_masks"],
    )
    fusion = G.decoder.fusion[0]
    psi = torch.randn(1, TINY.decoder_filters[0], 32, 16, dtype=torch.float64)
    out, saliency = fusion(psi, skips[0], return_saliency=True)
    # Att_i = g_i / sum_j g_j, the same for every channel.
    Cd = psi.shape[1]
    w = fusion.gate.weight.view(-1)
    z = torch.cat([psi[:, None].expand(-1, 3, -1, -1, -1), skips[0]], dim=2)
    g = torch.sigmoid(torch.einsum("c,bmchw->bmhw", w, z) + fusion.gate.bias)
    att = g / g.sum(dim=1, keepdim=True)
    torch.testing.assert_close(saliency, att)
    torch.testing.assert_close(out[:, Cd:], (att[:, :, None] * skips[0]).sum(dim=1))


def test_coarse_attention_feeds_each_level_the_coarser_share() -> None:
    # Level r's skips gain one channel: M_valid times level r + 1's saliency, upsampled x2 (all
    # ones at the deepest fused level). Captured at the fusions' inputs, compared with their outputs.
    config = replace(TINY, coarse_attention=True)
    G = build(config, dtype=torch.float64)
    batch = make_batch(B=2, M=3, seed=13, dtype=torch.float64)
    batch["valid"][1, 2] = False
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for r, fusion in enumerate(G.decoder.fusion):
        assert fusion.xi_channels == config.skip_channels[r] + 1
        def capture(module, args, output, r=r):
            seen[r] = (args[1][:, :, -1], output[1])  # the share channel, the saliency
        fusion.register_forward_hook(capture)
    out = G.forward_batch(batch)
    deepest = len(G.decoder.fusion) - 1
    valid = batch["valid"][:, :, None, None].to(torch.float64)
    torch.testing.assert_close(seen[deepest][0], valid.expand_as(seen[deepest][0]))
    count = batch["valid"].sum(dim=1).to(torch.float64)[:, None, None, None]
    for r in range(deepest):
        coarser = seen[r + 1][1].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        torch.testing.assert_close(seen[r][0], coarser * count)
    torch.testing.assert_close(out.saliency, seen[0][1])
    # The finest level's gates can follow the coarser choice: weight only the share channel.
    with torch.no_grad():
        gate = G.decoder.fusion[0].gate
        gate.weight.zero_()
        gate.weight[0, -1] = 40.0
        gate.bias.fill_(-40.0)
        for fc in (G.decoder.fusion[0].fc1, G.decoder.fusion[0].fc2):
            fc.weight.zero_()
    followed = G.forward_batch(batch).saliency
    coarser = seen[1][1].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    clear = (coarser.topk(2, dim=1).values.diff(dim=1).abs() > 0.05)[:, 0]
    assert clear.any()
    chosen, expected = followed.argmax(dim=1), coarser.argmax(dim=1)
    assert (chosen[clear] == expected[clear]).all()


def test_coarse_attention_changes_nothing_for_the_averaging_variants() -> None:
    batch = make_batch(B=2, M=3, seed=14, dtype=torch.float64)
    for variant in ("avg", "avg-nod"):
        plain = build(replace(TINY, variant=variant), dtype=torch.float64)
        fed = build(replace(TINY, variant=variant, coarse_attention=True), dtype=torch.float64)
        fed.load_state_dict(plain.state_dict())  # the same parameters, strictly
        torch.testing.assert_close(fed.forward_batch(batch).image, plain.forward_batch(batch).image)


def test_copy_pixels_changes_nothing_without_warping() -> None:
    # avg-nod warps nothing, so there is nothing to copy: the same model, strictly.
    batch = make_batch(B=2, M=3, seed=17, dtype=torch.float64)
    plain = build(replace(TINY, variant="avg-nod"), dtype=torch.float64)
    copying = build(replace(TINY, variant="avg-nod", copy_pixels=True), dtype=torch.float64)
    copying.load_state_dict(plain.state_dict())
    torch.testing.assert_close(copying.forward_batch(batch).image, plain.forward_batch(batch).image)


def test_saliency_of_averaging_variants_is_uniform_over_valid_sources() -> None:
    G = build(replace(TINY, variant="avg"))
    batch = make_batch(B=2, M=4, seed=12)
    batch["valid"][1, 1:] = False
    saliency = G.forward_batch(batch).saliency
    torch.testing.assert_close(saliency[0], torch.full((4, 32, 16), 0.25))
    torch.testing.assert_close(saliency[1, 0], torch.ones(32, 16))
    assert (saliency[1, 1:] == 0).all()


def test_set_ops_impl_switches_every_op_call() -> None:
    G = build(replace(TINY, ops="fast"))
    assert G.encoder.warp_impl == "auto"
    explicit = OpsConfig(part_warp="extension", fused_attention="triton")
    set_ops_impl(G, explicit)
    fusions = [m for m in G.modules() if isinstance(m, AttentionFusion)]
    assert len(fusions) == TINY.levels - 1
    assert all(m.impl == "triton" for m in fusions)
    assert G.encoder.warp_impl == "extension" and G.config.ops == explicit
    set_ops_impl(G, "reference")
    assert all(m.impl == "reference" for m in fusions) and G.encoder.warp_impl == "reference"
    with pytest.raises(ValueError, match="ops must be one of"):
        set_ops_impl(G, "fastest")
    with pytest.raises(ValueError, match="part_warp must be one of"):
        OpsConfig(part_warp="triton")


def explicit_fast_ops_on_cpu() -> list[OpsConfig]:
    """The explicit fast implementations that run on CPU tensors here: the C++ warp when built,
    the Triton fusion under TRITON_INTERPRET=1. An explicit impl never falls back silently."""
    usable = backends()
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    ops = OpsConfig(
        part_warp="extension" if usable["cpu_extension"] else "reference",
        fused_attention="triton" if usable["triton"] and interpreted else "reference",
    )
    return [ops] if ops != OpsConfig() else []


FAST_CASES = [
    pytest.param(OpsConfig(part_warp="auto", fused_attention="auto"), "cpu", id="auto-cpu"),
    *(pytest.param(ops, "cpu", id="explicit-cpu") for ops in explicit_fast_ops_on_cpu()),
    pytest.param(
        OpsConfig("extension", "triton"), "cuda", id="explicit-cuda", marks=pytest.mark.cuda
    ),
]


@pytest.mark.parametrize("config", [TINY, replace(TINY, coarse_attention=True, copy_pixels=True)],
                         ids=["paper", "coarse-copy"])
@pytest.mark.parametrize("ops, device", FAST_CASES)
def test_reference_and_fast_ops_agree_forward_and_backward(ops: OpsConfig, device: str,
                                                          config: GeneratorConfig) -> None:
    reference = build(replace(config, ops="reference")).to(device)
    fast = build(replace(config, ops=ops)).to(device)
    fast.load_state_dict(reference.state_dict())
    batch = {key: value.to(device) for key, value in make_batch(B=2, M=3, seed=13).items()}
    batch["valid"][1, 2] = False
    grad = torch.randn(2, 3, 32, 16, generator=torch.Generator().manual_seed(0)).to(device)
    results = []
    for G in (reference, fast):
        inputs = dict(batch, sources=batch["sources"].clone().requires_grad_())
        out = G.forward_batch(inputs)
        ((out.image * grad).sum() + out.saliency.square().sum()).backward()
        results.append((out, inputs["sources"].grad, {n: p.grad for n, p in G.named_parameters()}))
    (out_r, dsrc_r, grads_r), (out_f, dsrc_f, grads_f) = results
    torch.testing.assert_close(out_f.image, out_r.image, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_f.saliency, out_r.saliency, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dsrc_f, dsrc_r, rtol=1e-3, atol=1e-5)
    for name, expected in grads_r.items():
        # Absolute tolerance: some gradients are rounding noise around an exact 0 (e.g. the
        # channel gate's when its few hidden units are all inactive), where rtol cannot hold; it
        # scales with the largest gradient of the tensor (float32 sums of terms up to ~25).
        atol = 1e-5 * max(1.0, expected.abs().max().item())
        torch.testing.assert_close(grads_f[name], expected, rtol=1e-3, atol=atol, msg=name)


def run_with_gradient(
    G: torch.nn.Module, batch: dict[str, torch.Tensor], valid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """G's image and the gradient of its sum with respect to the sources."""
    sources = batch["sources"].clone().requires_grad_()
    keys = ("source_heatmaps", "target_heatmap", "theta", "part_masks")
    out = G(sources, *(batch[key] for key in keys), valid)
    out.image.sum().backward()
    return out.image.detach(), sources.grad


def assert_compiled_matches_eager(
    ops: str | OpsConfig, valid: bool, backend: str = "aot_eager", device: str = "cpu"
) -> None:
    torch._dynamo.reset()
    G = build(replace(TINY, ops=ops)).to(device)
    batch = {key: value.to(device) for key, value in make_batch(B=2, M=3, seed=14).items()}
    mask = None
    if valid:
        mask = batch["valid"].clone()
        mask[1, 1:] = False
    expected_image, expected_grad = run_with_gradient(G, batch, mask)
    compiled = torch.compile(G, fullgraph=True, backend=backend)
    image, grad = run_with_gradient(compiled, batch, mask)
    torch.testing.assert_close(image, expected_image, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(
    "ops, device", [pytest.param("reference", "cpu", id="reference-cpu"), *FAST_CASES]
)
def test_generator_compiles_in_one_graph(ops: str | OpsConfig, device: str) -> None:
    # aot_eager traces forward and backward (fake kernels included) without Inductor's slow codegen.
    assert_compiled_matches_eager(ops, valid=False, device=device)


def test_generator_with_valid_mask_compiles_in_one_graph() -> None:
    assert_compiled_matches_eager("reference", valid=True)


@pytest.mark.slow
def test_generator_compiles_with_inductor() -> None:
    assert_compiled_matches_eager("fast", valid=False, backend="inductor")


def test_discriminator_scores_each_source_with_shared_weights() -> None:
    torch.manual_seed(2)
    D = Discriminator(TINY_D).double()
    batch = make_batch(B=2, M=3, seed=15, dtype=torch.float64)
    logits = D(batch["target"], batch["target_heatmap"], batch["sources"], batch["source_heatmaps"])
    assert logits.shape == (2, 3, 1, 2, 1)  # 32x16 / 16
    for i in range(3):
        alone = D(
            batch["target"],
            batch["target_heatmap"],
            batch["sources"][:, i : i + 1],
            batch["source_heatmaps"][:, i : i + 1],
        )
        torch.testing.assert_close(logits[:, i : i + 1], alone, rtol=1e-9, atol=1e-12)
    assert D.net[0].in_channels == 42
    assert [m.out_channels for m in D.modules() if isinstance(m, torch.nn.Conv2d)] == [
        4,
        8,
        16,
        32,
        1,
    ]


def test_bad_inputs_raise_errors_naming_the_argument() -> None:
    G = build()
    batch = make_batch(B=2, M=2, seed=16)
    with pytest.raises(ValueError, match="theta"):
        G.forward_batch(dict(batch, theta=batch["theta"][:, :, :9]))
    with pytest.raises(ValueError, match="part_masks"):
        G.forward_batch(dict(batch, part_masks=batch["part_masks"][..., :8, :]))
    with pytest.raises(ValueError, match="target_heatmap"):
        G.forward_batch(dict(batch, target_heatmap=batch["target_heatmap"][:1]))
    with pytest.raises(ValueError, match="valid"):
        G.forward_batch(dict(batch, valid=batch["valid"].float()))
    with pytest.raises(ValueError, match="no source for batch samples \\[1\\]"):
        G.forward_batch(dict(batch, valid=torch.tensor([[True, False], [False, False]])))
    with pytest.raises(ValueError, match="generator was built for"):
        G.forward_batch(make_batch(B=1, M=1, H=64, W=32))


def test_configuration_is_validated() -> None:
    with pytest.raises(ValueError, match="variant"):
        GeneratorConfig(variant="attention")
    with pytest.raises(ValueError, match="divisible"):
        GeneratorConfig(image_size=(100, 64))
    with pytest.raises(ValueError, match="fc_hidden"):
        GeneratorConfig(fc_hidden="keras")
    with pytest.raises(ValueError, match="ops"):
        GeneratorConfig(ops="quick")


def test_presets_follow_the_method() -> None:
    market, fashion, small = (
        preset(n).generator for n in ("market", "deepfashion", "synthetic-small")
    )
    assert market.encoder_filters == (64, 128, 256, 512, 512, 512)
    assert fashion.encoder_filters == (64, 128, 256, 512, 512, 512, 512)
    assert small.encoder_filters == (8, 16, 32, 64, 64, 64)
    assert preset("deepfashion").loss.neighbourhood == 5
    assert preset("market").with_ops("fast").generator.ops == "fast"
    assert preset("market", variant="avg").generator.variant == "avg"
    G = Generator(market)
    # The decoder mirrors the encoder: psi_r has the per-stream filters of level r.
    decoder = [m.out_channels for m in G.decoder.up.modules() if isinstance(m, torch.nn.Conv2d)]
    assert decoder == [64, 128, 256, 512, 512]


def test_copied_pixels_come_whole_from_one_part() -> None:
    """A limb over a brighter background: the copied pixel is the limb's colour in every channel,
    not the channel-wise maximum of the limb and the torso's background (which mixes colours)."""
    H, W = 4, 6
    source = torch.empty(1, 1, 3, H, W)
    source[..., :3] = torch.tensor([1.0, -1.0, -1.0])[:, None, None]    # left: bright red background
    source[..., 3:] = torch.tensor([-0.6, 0.8, -1.0])[:, None, None]    # right: a dark green limb
    theta = torch.tensor(NULL_THETA, dtype=torch.float32).expand(1, 1, NUM_PARTS, 2, 3).clone()
    theta[0, 0, 0] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # torso: identity
    theta[0, 0, 2] = torch.tensor([[1.0, 0.0, 3.0], [0.0, 1.0, 0.0]])  # a limb sampling 3 px right
    masks = torch.zeros(1, 1, NUM_PARTS, H, W)
    masks[0, 0, 0] = 1.0
    masks[0, 0, 2, :, :3] = 1.0
    warped = warp_source_pixels(source, theta, masks, impl="reference")
    limb = (torch.tensor([-0.6, 0.8, -1.0]) + 1) / 2
    torch.testing.assert_close(warped[0, 0, :3, :, :3], limb[:, None, None].expand(3, H, 3))
    torch.testing.assert_close(warped[0, 0, 3], torch.ones(H, W))  # fully covered
    torch.testing.assert_close(warped[0, 0, :3, :, 3:], (source[0, 0, :, :, 3:] + 1) / 2)
