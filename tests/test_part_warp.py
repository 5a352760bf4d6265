"""msgen.ops.part_warp: the reference's convention, and the compiled op against the reference.

Tests marked ``extension`` need msgen._C: they FAIL when it is missing, so a broken build never
hides behind skips, unless MSGEN_NO_EXT=1 says the install is deliberately pure Python.
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import warnings

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from msgen.ops import _extension, byte_model
from msgen.ops.part_warp import part_warp, part_warp_reference

# The module itself (msgen.ops.part_warp the attribute is the function of the same name).
pw = importlib.import_module("msgen.ops.part_warp")

IMPLS = ("reference", "extension")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _extension_or_fail(request: pytest.FixtureRequest) -> None:
    uses_extension = request.node.get_closest_marker("extension") is not None
    callspec = getattr(request.node, "callspec", None)
    uses_extension |= callspec is not None and callspec.params.get("impl") == "extension"
    if not uses_extension or pw.extension_runs_on(CPU):
        return
    if os.environ.get("MSGEN_NO_EXT") == "1":
        pytest.skip("MSGEN_NO_EXT=1: the compiled extension is deliberately not built")
    pytest.fail(f"the compiled extension is unavailable: {_extension.missing_reason()}")


def make_inputs(
    N: int, C: int, Hin: int, Win: int, P: int, H: int, W: int, *,
    dtype: torch.dtype = torch.float64, device: torch.device = CPU, seed: int = 0,
    empty_part: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random features, affines that land partly inside and partly outside feat, masks in [0, 1]
    with exact zeros (and one empty part when P > 1)."""
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(N, C, Hin, Win, generator=g, dtype=torch.float64)
    scale = torch.tensor([Win / W, Hin / H], dtype=torch.float64)
    jitter = 0.25 * torch.randn(N, P, 2, 2, generator=g, dtype=torch.float64)
    linear = torch.diag_embed(scale.expand(N, P, 2)) + jitter
    shift = (torch.rand(N, P, 2, generator=g, dtype=torch.float64) - 0.4) * torch.tensor([Win, Hin]) * 0.5
    theta = torch.cat([linear, shift[..., None]], dim=-1)
    mask = torch.rand(N, P, H, W, generator=g, dtype=torch.float64)
    mask[mask < 0.3] = 0
    if empty_part and P > 1:
        mask[:, 1] = 0
    return feat.to(device, dtype), theta.to(device), mask.to(device, dtype)


def translation(N: int, P: int, tx: float, ty: float, dtype=torch.float64) -> torch.Tensor:
    theta = torch.zeros(N, P, 2, 3, dtype=dtype)
    theta[..., 0, 0] = theta[..., 1, 1] = 1
    theta[..., 0, 2], theta[..., 1, 2] = tx, ty
    return theta


def grads(out: torch.Tensor, inputs: tuple[torch.Tensor, ...], seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(out.device)
    return torch.autograd.grad(out, inputs, g)


# --- the convention, for both implementations ------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_identity_returns_masked_input(impl: str, mode: str) -> None:
    feat, _, mask = make_inputs(2, 3, 5, 7, 3, 5, 7, empty_part=False)
    theta = translation(2, 3, 0, 0)
    out = part_warp(feat, theta[:, :1], mask[:, :1], mode=mode, impl=impl)
    torch.testing.assert_close(out, mask[:, :1] * feat)
    # With several identical parts the max picks, per element, the best-scaled copy.
    out = part_warp(feat, theta, mask, mode=mode, impl=impl)
    torch.testing.assert_close(out, (mask[:, :, None] * feat[:, None]).amax(dim=1))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("tx, ty", [(2, 1), (-3, 2), (0, -4)])
def test_integer_translation_shifts_exactly(impl: str, mode: str, tx: int, ty: int) -> None:
    feat, _, _ = make_inputs(2, 3, 9, 11, 1, 9, 11)
    ones = torch.ones(2, 1, 9, 11, dtype=feat.dtype)
    out = part_warp(feat, translation(2, 1, tx, ty), ones, mode=mode, impl=impl)
    expected = torch.zeros_like(feat)
    ys, xs = slice(max(0, -ty), min(9, 9 - ty)), slice(max(0, -tx), min(11, 11 - tx))
    expected[:, :, ys, xs] = feat[:, :, ys.start + ty : ys.stop + ty, xs.start + tx : xs.stop + tx]
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_mask_gives_zeros(impl: str) -> None:
    feat, theta, mask = make_inputs(2, 4, 6, 5, 3, 7, 4)
    feat.requires_grad_()
    out = part_warp(feat, theta, torch.zeros_like(mask), impl=impl)
    assert torch.equal(out, torch.zeros_like(out))
    (grad_feat,) = grads(out, (feat,))
    assert torch.equal(grad_feat, torch.zeros_like(feat))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_samples_outside_the_map_are_zero(impl: str, mode: str) -> None:
    feat, _, mask = make_inputs(1, 2, 6, 5, 2, 6, 5)
    feat = feat.abs() + 1  # positive, so any leaked sample would show
    # Each source point at least one pixel past a border (or exactly on the -1 / size lines,
    # where the only tap inside has weight 0; the reference's normalised round trip leaves ~1e-16).
    for tx, ty in [(100, 0), (0, -100), (5, 6), (-5, 0), (0, -6)]:
        out = part_warp(feat, translation(1, 2, tx, ty), mask, mode=mode, impl=impl)
        torch.testing.assert_close(out, torch.zeros_like(out), rtol=0, atol=1e-12, msg=f"{(tx, ty)}")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 1e30, -1e30])
def test_non_finite_or_huge_affines_sample_nothing(impl: str, bad: float) -> None:
    """A part that cannot be estimated may carry such a transform; it must never produce NaN."""
    feat, theta, mask = make_inputs(1, 2, 6, 5, 2, 6, 5)
    theta[:, 0] = bad
    out = part_warp(feat, theta, mask, impl=impl)
    assert torch.isfinite(out).all()
    # Part 0 now contributes only zeros, so the result is max(0, part 1).
    part_1 = part_warp(feat, theta[:, 1:], mask[:, 1:], impl=impl)
    torch.testing.assert_close(out, part_1.clamp(min=0))


def rule_oracle(feat: torch.Tensor, theta: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The module's rule written out pixel by pixel in Python floats: an absent part (mask 0) gives
    exactly 0; a non-finite source point samples 0; taps inside feat are multiplied by their weight
    even when it is 0; the max over parts in order lets NaN win and keeps the first of equals."""
    N, C, Hin, Win = feat.shape
    P, H, W = mask.shape[1:]
    f, t, m = feat.double().tolist(), theta.double().tolist(), mask.double().tolist()

    def tap(n: int, c: int, yi: int, xi: int, weight: float) -> float:
        return weight * f[n][c][yi][xi] if 0 <= yi < Hin and 0 <= xi < Win else 0.0

    def sample(n: int, c: int, x_in: float, y_in: float) -> float:
        if not (math.isfinite(x_in) and math.isfinite(y_in)):
            return 0.0
        if mode == "nearest":
            return tap(n, c, round(y_in), round(x_in), 1.0)  # round() ties to even
        x0, y0 = math.floor(x_in), math.floor(y_in)
        fx, fy = x_in - x0, y_in - y0
        return (((tap(n, c, y0, x0, (1 - fx) * (1 - fy)) + tap(n, c, y0, x0 + 1, fx * (1 - fy)))
                 + tap(n, c, y0 + 1, x0, (1 - fx) * fy)) + tap(n, c, y0 + 1, x0 + 1, fx * fy))

    out = torch.empty(N, C, H, W, dtype=torch.float64)
    for n, c, y, x in itertools.product(range(N), range(C), range(H), range(W)):
        best = None
        for p in range(P):
            (a, b, e), (d, g, h) = t[n][p]
            mv = m[n][p][y][x]
            v = 0.0 if mv == 0 else mv * sample(n, c, a * x + b * y + e, d * x + g * y + h)
            if best is None or v > best or (math.isnan(v) and not math.isnan(best)):
                best = v
        out[n, c, y, x] = best
    return out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_non_finite_inputs_follow_one_rule_in_both_impls(impl: str, mode: str) -> None:
    """NaN and inf in feat, mask and theta: both implementations give the module's rule exactly."""
    feat, theta, mask = make_inputs(2, 3, 7, 6, 4, 6, 5, seed=41)
    feat[0, 1, 2, 3] = float("nan")
    feat[1, 0, 4, 2] = float("inf")
    feat[1, 2, 0:3, 1] = float("-inf")
    mask[0, 2, 1, 1] = float("nan")
    mask[1, 3, 2, 2] = float("inf")
    mask[1, 0, 3, :] = 0  # where part 0 is absent, its inf/NaN samples must not reach the output
    theta[1, 0, 0, 2] = float("nan")
    theta[0, 3, 1] = float("inf")
    out = part_warp(feat, theta, mask, mode=mode, impl=impl)
    want = rule_oracle(feat, theta, mask, mode)
    assert 0 < want.isnan().sum() < want.numel() and want.isinf().any(), "the case must exercise the rule"
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("impl", IMPLS)
def test_absent_parts_hide_non_finite_features(impl: str) -> None:
    """A feat full of NaN, seen only through parts whose masks are 0, gives exactly 0."""
    feat, theta, mask = make_inputs(1, 2, 5, 5, 3, 5, 5, seed=42)
    out = part_warp(torch.full_like(feat, float("nan")), theta, torch.zeros_like(mask), impl=impl)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("impl", IMPLS)
def test_one_part_equals_plain_masking(impl: str) -> None:
    feat, _, mask = make_inputs(2, 3, 6, 9, 1, 6, 9)
    flip_x = torch.tensor([[-1.0, 0, 8], [0, 1, 0]], dtype=torch.float64).expand(2, 1, 2, 3)
    out = part_warp(feat, flip_x, mask, mode="nearest", impl=impl)
    torch.testing.assert_close(out, mask * feat.flip(-1))


@pytest.mark.parametrize("impl", IMPLS)
def test_ties_go_to_the_lowest_part_which_alone_gets_the_gradient(impl: str) -> None:
    feat = -1 - torch.rand(1, 2, 4, 6, dtype=torch.float64)  # every sample negative: zeros win
    theta = translation(1, 3, 0, 0)
    mask = torch.full((1, 3, 4, 6), 0.5, dtype=torch.float64)
    mask[:, 0, :, :3] = 0  # left: parts 0 and 1 give 0, part 2 is negative -> part 0
    mask[:, 1] = 0  # an empty part
    mask[:, 2, :, 3:] = 0  # right: part 0 is negative, parts 1 and 2 give 0 -> part 1
    mask.requires_grad_()
    out = part_warp(feat, theta, mask, impl=impl)
    assert torch.equal(out, torch.zeros_like(out))
    (grad_mask,) = torch.autograd.grad(out, mask, torch.ones_like(out))
    expected = torch.zeros_like(mask)
    expected[:, 0, :, :3] = feat.sum(1)[:, :, :3]  # d(m * s)/dm = s, summed over channels
    expected[:, 1, :, 3:] = feat.sum(1)[:, :, 3:]
    torch.testing.assert_close(grad_mask, expected)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_grad_feat_at_ties_with_a_part_that_is_zero_there(impl: str, mode: str) -> None:
    """A pixel whose one nonzero part samples exactly 0 ties with the part that is 0 there: the lower
    of the two takes the gradient (the zero part passes none to feat); a NaN sample wins from either
    side. Rows 0-3: one nonzero part (part 1 left of column 3 with part 0 zero, part 0 from column 3
    with part 1 zero); row 4: two nonzero parts and a zero one. (NaN only in nearest mode: at the
    identity's integer source points the bilinear kernels also read a tap of weight 0, which
    grid_sample's normalised coordinates may or may not touch.)"""
    g = torch.Generator().manual_seed(7)
    feat = torch.randn(1, 3, 5, 6, generator=g, dtype=torch.float64)
    feat[:, 0] = 0  # channel 0 samples exactly 0 everywhere: the ties
    nan_at = ((1, 1, 0.5), (2, 4, 0.7)) if mode == "nearest" else ()  # (y, x, the mask there)
    for y, x, _ in nan_at:
        feat[:, 1, y, x] = float("nan")
    theta = translation(1, 3, 0, 0)  # the identity: pixel (x, y) samples feat[..., y, x] alone
    mask = torch.zeros(1, 3, 5, 6, dtype=torch.float64)
    mask[:, 1, :4, :3] = 0.5  # part 0 is 0 here and lower: it wins the ties
    mask[:, 0, :4, 3:] = 0.7  # part 1 is 0 here and higher: part 0 wins the ties
    mask[:, 0, 4], mask[:, 1, 4] = 0.7, 0.5  # part 2 is 0 here
    feat.requires_grad_()
    out = part_warp(feat, theta, mask, mode=mode, impl=impl)
    grad_out = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (grad_feat,) = torch.autograd.grad(out, feat, grad_out)
    assert torch.equal(grad_feat[0, 0, :4, :3], torch.zeros(4, 3))
    torch.testing.assert_close(grad_feat[0, 0, :4, 3:], 0.7 * grad_out[0, 0, :4, 3:])
    torch.testing.assert_close(grad_feat[0, 0, 4], 0.7 * grad_out[0, 0, 4])
    for y, x, m in nan_at:  # NaN wins over the zero part on either side
        torch.testing.assert_close(grad_feat[0, 1, y, x], m * grad_out[0, 1, y, x])
    if impl == "extension":
        (want,) = torch.autograd.grad(part_warp_reference(feat, theta, mask, mode=mode), feat, grad_out)
        torch.testing.assert_close(grad_feat, want, rtol=1e-12, atol=1e-12)


# --- the extension against the reference (CPU, float64) ---------------------------------------

SHAPES = [  # (N, C, Hin, Win, P, H, W)
    (1, 1, 5, 4, 1, 5, 4),
    (2, 3, 7, 9, 3, 7, 9),
    (2, 5, 13, 6, 10, 7, 11),  # output larger and smaller than feat per axis
    (3, 2, 8, 8, 10, 4, 4),
]


@pytest.mark.extension
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_extension_matches_reference_forward_and_gradients(mode: str, shape: tuple[int, ...]) -> None:
    feat, theta, mask = make_inputs(*shape, seed=sum(shape))
    inputs = tuple(t.requires_grad_() for t in (feat, theta, mask))
    out = part_warp(*inputs, mode=mode, impl="extension")
    ref = part_warp_reference(*inputs, mode=mode)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, want, name in zip(grads(out, inputs), grads(ref, inputs), ("feat", "theta", "mask")):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.extension
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_fp32_channel_and_width_counts_that_are_no_multiple_of_four(mode: str) -> None:
    """fp32 copies feat, grad_out and grad_feat to and from channels last 4 x 4 through vector
    registers: 7 channels and widths 11 and 13 leave remainders on both axes; grad_out contiguous
    and transposed (strided along W). Against the float64 reference."""
    feat, theta, mask = make_inputs(2, 7, 9, 11, 4, 10, 13, seed=5, dtype=torch.float32)
    feat.requires_grad_()
    out = part_warp(feat, theta, mask, mode=mode, impl="extension")
    f64 = feat.detach().double().requires_grad_()
    ref = part_warp_reference(f64, theta, mask.double(), mode=mode)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    g = torch.randn(2, 7, 13, 10, generator=torch.Generator().manual_seed(6)).transpose(2, 3)
    for grad_out in (g.contiguous(), g):
        (got,) = torch.autograd.grad(out, feat, grad_out, retain_graph=True)
        (want,) = torch.autograd.grad(ref, f64, grad_out.double(), retain_graph=True)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.extension
def test_extension_reads_non_contiguous_inputs_in_place() -> None:
    feat, theta, mask = make_inputs(2, 6, 9, 7, 3, 8, 5)
    feat_nc = feat.to(memory_format=torch.channels_last)[:, ::2]  # strided channels, NHWC layout
    mask_nc = mask.transpose(2, 3).contiguous().transpose(2, 3)
    theta_nc = theta.transpose(2, 3).contiguous().transpose(2, 3)
    assert not (feat_nc.is_contiguous() or mask_nc.is_contiguous() or theta_nc.is_contiguous())
    inputs = tuple(t.requires_grad_() for t in (feat_nc, theta_nc, mask_nc))
    out = part_warp(*inputs, impl="extension")
    ref = part_warp_reference(*inputs)
    torch.testing.assert_close(out, ref)
    # An expanded (stride-0) upstream gradient, as out.sum().backward() produces.
    g = torch.randn(1, 3, 1, 5, dtype=out.dtype).expand(out.shape)
    got = torch.autograd.grad(out, inputs, g)
    want = torch.autograd.grad(ref, inputs, g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.extension
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_low_precision_within_twice_pytorchs_own_error(dtype: torch.dtype, mode: str) -> None:
    """Against a float64 oracle on the same (rounded) inputs, the kernel may be at most twice as
    wrong as the plain-PyTorch reference run in that dtype, plus a small absolute tolerance."""
    feat, theta, mask = make_inputs(2, 4, 11, 9, 10, 9, 7, dtype=dtype, seed=3)
    theta = theta.float()
    oracle_inputs = (feat.double().requires_grad_(), theta.double(), mask.double())
    oracle = part_warp_reference(*oracle_inputs, mode=mode)
    (oracle_grad,) = grads(oracle, oracle_inputs[:1])
    atol = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
    errors = {}
    for impl in IMPLS:
        x = feat.clone().requires_grad_()
        out = part_warp(x, theta, mask, mode=mode, impl=impl)
        assert out.dtype == dtype
        (grad_feat,) = grads(out, (x,))
        errors[impl] = (
            (out.double() - oracle).abs().max().item(),
            (grad_feat.double() - oracle_grad).abs().max().item(),
        )
    for ext_error, ref_error in zip(errors["extension"], errors["reference"]):
        assert ext_error <= 2 * ref_error + atol, errors


@pytest.mark.extension
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_gradcheck_float64(mode: str) -> None:
    feat, theta, mask = make_inputs(1, 2, 5, 6, 3, 4, 5, seed=7, empty_part=False)
    mask = 0.05 + 0.9 * mask.clamp(min=0.01)  # no exact ties between zero-valued parts
    # Nearest sampling is piecewise constant in theta: check feat and mask only.
    theta.requires_grad_(mode == "bilinear")
    feat.requires_grad_()
    mask.requires_grad_()
    def warp(f: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return part_warp(f, t, m, mode=mode, impl="extension")

    assert torch.autograd.gradcheck(warp, (feat, theta, mask))


@pytest.mark.extension
def test_nearest_theta_gradient_is_zero() -> None:
    feat, theta, mask = make_inputs(2, 3, 6, 6, 3, 6, 6)
    theta.requires_grad_()
    (grad_theta,) = grads(part_warp(feat, theta, mask, mode="nearest", impl="extension"), (theta,))
    assert torch.equal(grad_theta, torch.zeros_like(theta))


@pytest.mark.extension
def test_double_backward_raises_clearly() -> None:
    feat, theta, mask = make_inputs(1, 2, 5, 5, 2, 5, 5)
    feat.requires_grad_()
    out = part_warp(feat, theta, mask, impl="extension")
    (grad_feat,) = torch.autograd.grad(out.square().sum(), feat, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad_feat.sum().backward()


@pytest.mark.extension
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_opcheck(mode: str) -> None:
    feat, theta, mask = make_inputs(2, 3, 6, 5, 3, 4, 7, dtype=torch.float32)
    args = (feat.requires_grad_(), theta.float().requires_grad_(), mask.requires_grad_(), mode)
    torch.library.opcheck(torch.ops.msgen.part_warp.default, args)
    grad_out = torch.randn(2, 3, 4, 7)
    plain = (grad_out, feat.detach(), theta.detach(), mask.detach(), mode)
    torch.library.opcheck(torch.ops.msgen.part_warp_backward_feat.default, plain)
    torch.library.opcheck(torch.ops.msgen.part_warp_backward_params.default, plain)


@pytest.mark.extension
def test_torch_compile_fullgraph_forward_and_backward() -> None:
    def step(f: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return part_warp(f * 2, t, m, impl="auto").relu().sum()

    feat, theta, mask = make_inputs(2, 3, 7, 6, 3, 5, 4, dtype=torch.float32)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    inputs = tuple(t.float().requires_grad_() for t in (feat, theta, mask))
    got = compiled(*inputs)
    want = step(*inputs)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, inputs), torch.autograd.grad(want, inputs)):
        torch.testing.assert_close(a, b)


@pytest.mark.extension
def test_extension_allocates_no_more_than_its_output() -> None:
    """Every tensor the forward allocates, summed (an upper bound of its peak): the output plus
    theta in float32; the backward: grad_feat only. (Per-thread row buffers, O(P * W), are not
    tensors and are not counted.) The reference needs P copies of the output."""
    feat, theta, mask = make_inputs(2, 16, 24, 16, 10, 24, 16, dtype=torch.float32)
    feat.requires_grad_()

    def allocated_bytes(fn) -> int:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        return sum(max(0, e.self_cpu_memory_usage) for e in prof.events())

    out_bytes = 2 * 16 * 24 * 16 * 4
    theta_bytes = theta.numel() * 4
    out = part_warp(feat, theta, mask, impl="extension")
    assert allocated_bytes(lambda: part_warp(feat, theta, mask, impl="extension")) <= out_bytes + theta_bytes
    grad_out = torch.ones_like(out)
    backward_bytes = allocated_bytes(lambda: torch.autograd.grad(out, feat, grad_out, retain_graph=True))
    assert backward_bytes <= feat.numel() * 4 + theta_bytes
    assert allocated_bytes(lambda: part_warp_reference(feat, theta, mask)) > 5 * out_bytes


# --- dispatch and errors ------------------------------------------------------------------------


@pytest.mark.extension
def test_auto_uses_the_extension_on_cpu() -> None:
    assert pw._resolve_impl("auto", CPU) == "extension"


def test_auto_warns_once_when_cuda_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pw, "_KERNEL_DEVICES", frozenset({"cpu"}))
    monkeypatch.setattr(pw, "_warned_fallback", set())
    with pytest.warns(UserWarning, match="falls back to the slow reference on CUDA"):
        assert pw._resolve_impl("auto", torch.device("cuda")) == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pw._resolve_impl("auto", torch.device("cuda")) == "reference"


def test_extension_impl_never_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    feat, theta, mask = make_inputs(1, 2, 4, 4, 2, 4, 4)
    monkeypatch.setattr(_extension, "_load", lambda: (None, "msgen._C is not built (test)"))
    with pytest.raises(RuntimeError, match=r"impl='extension'.*not built \(test\)"):
        part_warp(feat, theta, mask, impl="extension")
    monkeypatch.undo()
    if pw.extension_runs_on(CPU):
        monkeypatch.setattr(pw, "_KERNEL_DEVICES", frozenset())
        with pytest.raises(RuntimeError, match="has no cpu kernel"):
            part_warp(feat, theta, mask, impl="extension")


@pytest.mark.parametrize("impl", ["auto", *IMPLS])
def test_bad_arguments_are_named(impl: str) -> None:
    feat, theta, mask = make_inputs(2, 3, 5, 5, 3, 4, 4)
    cases = [
        ({"feat": feat[0]}, "feat"),
        ({"feat": feat.long()}, "feat"),
        ({"theta": theta[:, :, :, :2]}, "theta"),
        ({"theta": theta[:1]}, "theta"),
        ({"mask": mask[:, :2]}, "mask"),
        ({"mask": mask[0]}, "mask"),
        ({"theta": theta.to("meta")}, "theta"),
        ({"theta": theta[:, :0], "mask": mask[:, :0]}, "P >= 1"),
    ]
    for override, name in cases:
        args = {"feat": feat, "theta": theta, "mask": mask} | override
        with pytest.raises(ValueError, match=name):
            part_warp(args["feat"], args["theta"], args["mask"], impl=impl)
    with pytest.raises(ValueError, match="mode"):
        part_warp(feat, theta, mask, mode="bicubic", impl=impl)
    with pytest.raises(ValueError, match="impl"):
        part_warp(feat, theta, mask, impl="triton")


@pytest.mark.extension
def test_compiled_op_checks_its_own_arguments() -> None:
    feat, theta, mask = make_inputs(2, 3, 5, 5, 3, 4, 4)
    op = torch.ops.msgen.part_warp
    with pytest.raises(ValueError, match="mode"):
        op(feat, theta, mask, "cubic")
    with pytest.raises(ValueError, match="mask must have feat's dtype"):
        op(feat, theta, mask.float(), "bilinear")
    with pytest.raises(ValueError, match="theta must be"):
        op(feat, theta[:, :, :1], mask, "bilinear")
    with pytest.raises(ValueError, match="grad_out"):
        torch.ops.msgen.part_warp_backward_feat(feat, feat, theta, mask, "bilinear")


# --- CUDA ---------------------------------------------------------------------------------------

CUDA = torch.device("cuda")


@pytest.mark.cuda
@pytest.mark.extension
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize(
    "shape", [(4, 16, 64, 32, 10, 64, 32), (3, 7, 37, 29, 10, 41, 23), (2, 3, 9, 8, 20, 7, 9)]
)
def test_cuda_matches_reference(mode: str, shape: tuple[int, ...]) -> None:
    assert pw.extension_runs_on(CUDA), _extension.missing_reason() or "msgen._C lacks its CUDA kernels"
    feat, theta, mask = make_inputs(*shape, device=CUDA, seed=11)
    inputs = tuple(t.requires_grad_() for t in (feat, theta, mask))
    out = part_warp(*inputs, mode=mode, impl="extension")
    ref = part_warp_reference(*inputs, mode=mode)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads(out, inputs), grads(ref, inputs)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.cuda
@pytest.mark.extension
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_low_precision_matches_cpu_kernel(dtype: torch.dtype) -> None:
    feat, theta, mask = make_inputs(4, 32, 64, 32, 10, 64, 32, dtype=dtype, seed=5)
    cpu = part_warp(feat, theta, mask, impl="extension")
    gpu = part_warp(feat.to(CUDA), theta.to(CUDA), mask.to(CUDA), impl="extension")
    atol = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=atol, atol=atol)


@pytest.mark.cuda
@pytest.mark.extension
def test_cuda_gradcheck_and_opcheck() -> None:
    feat, theta, mask = make_inputs(1, 2, 5, 6, 3, 4, 5, device=CUDA, seed=7, empty_part=False)
    mask = 0.05 + 0.9 * mask.clamp(min=0.01)
    inputs = tuple(t.requires_grad_() for t in (feat, theta, mask))
    assert torch.autograd.gradcheck(lambda f, t, m: part_warp(f, t, m, impl="extension"), inputs)
    torch.library.opcheck(torch.ops.msgen.part_warp.default, (*(t.float() for t in inputs), "bilinear"))


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.extension
def test_cuda_int64_offsets() -> None:
    """A 2^31-element fp16 feature map (4.3 GB): taps beyond int32 offsets must be read right."""
    Hin, Win = 1 << 16, (1 << 15) + 8
    feat = torch.empty(1, 1, Hin, Win, dtype=torch.float16, device=CUDA)
    rows = torch.arange(Hin, device=CUDA, dtype=torch.float32)
    feat[0, 0] = (rows[:, None] % 1000).half()  # each row holds its index modulo 1000
    ty = Hin - 8  # the last rows sit past offset 2^31
    ones = torch.ones(1, 1, 8, 8, device=CUDA, dtype=torch.float16)
    out = part_warp(feat, translation(1, 1, 3, ty).to(CUDA), ones, impl="extension")
    expected = ((torch.arange(8, device=CUDA) + ty) % 1000).half()[:, None].expand(8, 8)
    torch.testing.assert_close(out[0, 0], expected)


# --- the CUDA kernels' per-thread code, run on the CPU ------------------------------------------
# msgen._C_testing (csrc/testing/part_warp_emulation.cpp, a test-only module built beside msgen._C)
# calls, for every (sample, channel tile, pixel) in turn, the forward_tile / backward_tile functions
# of csrc/part_warp.h that each CUDA thread runs, and runs the CUDA backward's host chunk loop, so
# the GPU's code path is checked without a GPU.


def emulation():
    """The test-only module, or a failure naming why it is missing (it is built with msgen._C)."""
    try:
        return importlib.import_module("msgen._C_testing")
    except ImportError as error:
        pytest.fail(f"msgen._C_testing (built with msgen._C by setup.py) does not load: {error}")


EMULATION_SHAPES = SHAPES + [(2, 17, 9, 7, 4, 6, 8), (1, 9, 6, 6, 12, 6, 6)]  # C past one tile


def emulated(feat, theta, mask, mode, grad_out):
    module = emulation()
    out = module.part_warp(feat, theta, mask, mode)
    grad_feat, grad_theta, grad_mask = module.part_warp_backward(grad_out, feat, theta, mask, mode, True, True)
    return out, grad_feat, grad_theta, grad_mask


@pytest.mark.extension
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("shape", EMULATION_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cuda_thread_code_matches_reference(mode: str, shape: tuple[int, ...]) -> None:
    feat, theta, mask = make_inputs(*shape, seed=sum(shape) + 1)
    inputs = tuple(t.requires_grad_() for t in (feat, theta, mask))
    ref = part_warp_reference(*inputs, mode=mode)
    grad_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2), dtype=ref.dtype)
    grad_out[0, 0, 0] = 0  # a zero upstream gradient takes the skip path
    want = (ref, *torch.autograd.grad(ref, inputs, grad_out))
    got = emulated(*(t.detach() for t in inputs), mode, grad_out)
    for name, a, b in zip(("out", "grad feat", "grad theta", "grad mask"), got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.extension
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("impl", ["extension", "cuda emulation"])
def test_low_precision_backward_against_float64_oracle(impl: str, dtype: torch.dtype) -> None:
    """grad_feat, grad_mask and grad_theta in bf16/fp16: sums in float, rounded once, so each is
    within a few units of the dtype's rounding of the fp64 oracle on the same rounded inputs
    (contributions rounded to the dtype before being added would be off by far more)."""
    feat, theta, mask = make_inputs(2, 12, 24, 20, 10, 24, 20, dtype=dtype, seed=9)
    # Contractions (scale 1/2): about 4 output pixels add into each grad_feat element.
    theta[..., :2] *= 0.5
    theta = theta.float()
    grad_out = torch.randn(2, 12, 24, 20, generator=torch.Generator().manual_seed(4)).to(dtype)
    oracle_inputs = tuple(t.double().requires_grad_() for t in (feat, theta, mask))
    oracle = part_warp_reference(*oracle_inputs)
    want = torch.autograd.grad(oracle, oracle_inputs, grad_out.double())
    if impl == "extension":
        inputs = tuple(t.clone().requires_grad_() for t in (feat, theta, mask))
        got = torch.autograd.grad(part_warp(*inputs, impl="extension"), inputs, grad_out)
    else:
        got = emulated(feat, theta, mask, "bilinear", grad_out)[1:]
    eps = torch.finfo(dtype).eps
    for name, a, b in zip(("feat", "theta", "mask"), got, want):
        assert a.dtype == (torch.float32 if name == "theta" else dtype), name
        error = (a.double() - b).abs()
        bound = 2 * eps * b.abs() + 4 * eps * b.abs().max() * (1e-2 if name != "theta" else 1)
        assert (error <= bound).all(), f"grad {name}: max error {error.max().item()}, scale {b.abs().max().item()}"


@pytest.mark.extension
def test_all_three_gradients_in_one_backward_op() -> None:
    feat, theta, mask = make_inputs(2, 5, 8, 7, 4, 6, 9)
    grad_out = torch.randn(2, 5, 6, 9, dtype=feat.dtype)
    args = (grad_out, feat, theta, mask, "bilinear")
    grad_feat, grad_theta, grad_mask = torch.ops.msgen.part_warp_backward(*args)
    torch.testing.assert_close(grad_feat, torch.ops.msgen.part_warp_backward_feat(*args))
    want_theta, want_mask = torch.ops.msgen.part_warp_backward_params(*args)
    torch.testing.assert_close(grad_theta, want_theta)
    torch.testing.assert_close(grad_mask, want_mask)
    torch.library.opcheck(torch.ops.msgen.part_warp_backward.default, args)


@pytest.mark.extension
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_fp32_backward_at_a_realistic_size(device: str) -> None:
    """A Market-sized level (C = 64, 128x64, P = 10) in fp32 against the float64 reference: the
    sums over many contributions must stay at fp32 accuracy."""
    feat, theta, mask = make_inputs(2, 64, 128, 64, 10, 128, 64, dtype=torch.float32, seed=21)
    feat, theta, mask = (t.to(device) for t in (feat, theta, mask))
    inputs = tuple(t.clone().requires_grad_() for t in (feat, theta, mask))
    out = part_warp(*inputs, impl="extension")
    oracle_inputs = tuple(t.double().requires_grad_() for t in (feat, theta, mask))
    ref = part_warp_reference(*oracle_inputs)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(3)).to(device)
    got = torch.autograd.grad(out, inputs, grad_out)
    want = torch.autograd.grad(ref, oracle_inputs, grad_out.double())
    # Source points in fp32 are off by ~1e-5 pixels at x ~ 100: values by ~1e-4, and a near-tie
    # between two parts may flip its winner. So: tight for all but 0.1% of the elements.
    for name, a, b in zip(("out", "grad feat", "grad theta", "grad mask"), (out, *got), (ref, *want)):
        error = (a.double() - b).abs()
        scale = b.abs().max().item()
        if name == "grad theta":  # sums over a whole part: a few flipped pixels move them little
            assert error.max().item() <= 1e-3 * scale, f"{name}: {error.max().item()} of {scale}"
            continue
        off = (error > 3e-4 * max(scale, 1.0)).double().mean().item()
        assert off <= 1e-3, f"{name}: {off:.2%} of the elements off, worst {error.max().item()}"


@pytest.mark.cuda
@pytest.mark.extension
def test_cuda_more_samples_than_one_grid_axis_holds() -> None:
    """N > 65,535: the kernels loop over the samples past the grid's z extent."""
    feat, theta, mask = make_inputs(65_535 + 3, 2, 3, 4, 2, 3, 4, dtype=torch.float32, seed=8)
    inputs = tuple(t.to(CUDA).requires_grad_() for t in (feat, theta.float(), mask))
    out = part_warp(*inputs, impl="extension")
    grad_out = torch.randn(out.shape, device=CUDA)
    got = torch.autograd.grad(out, inputs, grad_out)
    cpu_inputs = tuple(t.detach().cpu().requires_grad_() for t in inputs)
    cpu_out = part_warp(*cpu_inputs, impl="extension")
    want = torch.autograd.grad(cpu_out, cpu_inputs, grad_out.cpu())
    torch.testing.assert_close(out.cpu(), cpu_out)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.extension
def test_cuda_int64_offsets_in_the_backward() -> None:
    """grad_feat beyond 2^31 elements: the taps past int32 offsets receive their gradient."""
    Hin, Win = 1 << 16, (1 << 15) + 8
    feat = torch.zeros(1, 1, Hin, Win, dtype=torch.float16, device=CUDA, requires_grad=True)
    ty = Hin - 8
    ones = torch.ones(1, 1, 8, 8, device=CUDA, dtype=torch.float16)
    out = part_warp(feat, translation(1, 1, 3, ty).to(CUDA), ones, impl="extension")
    (grad_feat,) = torch.autograd.grad(out, feat, torch.ones_like(out))
    assert grad_feat[0, 0, ty:, 3:11].eq(1).all()
    assert grad_feat.sum().item() == 64


# --- the CUDA backward's chunk loop (a grad_feat buffer of fewer samples than N) -----------------
# MSGEN_WARP_FEAT_BUFFER_BYTES (read by csrc/part_warp_host.cpp at every backward) caps the buffer,
# so small inputs run the host's chunk loop: zero the buffer, launch, round the chunk into grad_feat.

# (N, C, Hin, Win, P, H, W). feat smaller than the output: the host never makes the buffer larger
# than the output, so with this shape the budget alone sets the chunk (and all 5 samples fit it
# without the hook).
CHUNKED_SHAPE = (5, 10, 7, 6, 4, 8, 6)


def two_sample_buffer(monkeypatch: pytest.MonkeyPatch, feat: torch.Tensor) -> None:
    acc_bytes = 8 if feat.dtype == torch.float64 else 4
    monkeypatch.setenv("MSGEN_WARP_FEAT_BUFFER_BYTES", str(2 * feat[0].numel() * acc_bytes))


def assert_low_precision_grads(got, want, dtype: torch.dtype) -> None:
    """The stated tolerance of a bf16/fp16 gradient summed in float and rounded once: each element
    within 2 units of rounding (eps) of its fp64 value plus 0.04 eps of the largest value (4 eps of it
    for grad_theta, a float32 sum over a whole part). fp32: rtol 1e-4, atol 1e-5."""
    if dtype == torch.float32:  # positions in float32 are off by ~1e-6 pixels: more than 2 eps
        for a, b in zip(got, want):
            assert a.dtype == torch.float32
            torch.testing.assert_close(a.double().cpu(), b, rtol=1e-4, atol=1e-5)
        return
    eps = torch.finfo(dtype).eps
    for name, a, b in zip(("feat", "theta", "mask"), got, want):
        assert a.dtype == (torch.float32 if name == "theta" else dtype), name
        error = (a.double().cpu() - b).abs()
        bound = 2 * eps * b.abs() + 4 * eps * b.abs().max() * (1e-2 if name != "theta" else 1)
        assert (error <= bound).all(), f"grad {name}: max error {error.max().item()}, scale {b.abs().max().item()}"


def oracle_grads(feat, theta, mask, grad_out, mode: str = "bilinear"):
    inputs = tuple(t.detach().cpu().double().requires_grad_() for t in (feat, theta, mask))
    return torch.autograd.grad(part_warp_reference(*inputs, mode=mode), inputs, grad_out.cpu().double())


@pytest.mark.extension
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_backward_chunked_emulation_matches_reference(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """float64, chunks of 2, 2 and 1 samples (not in place): every gradient as the reference's."""
    feat, theta, mask = make_inputs(*CHUNKED_SHAPE, seed=31)
    two_sample_buffer(monkeypatch, feat)
    module = emulation()
    assert module.feat_chunks(feat, theta, mask) == (2, False)
    grad_out = torch.randn(5, 10, 8, 6, generator=torch.Generator().manual_seed(32), dtype=torch.float64)
    want = oracle_grads(feat, theta, mask, grad_out, mode)
    got = module.part_warp_backward(grad_out, feat, theta, mask, mode, True, True)
    for name, a, b in zip(("feat", "theta", "mask"), got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m, name=name: f"grad {name}: {m}")
    grad_feat_only = module.part_warp_backward(grad_out, feat, theta, mask, mode, True, False)[0]
    torch.testing.assert_close(grad_feat_only, want[0], rtol=1e-10, atol=1e-10)
    monkeypatch.delenv("MSGEN_WARP_FEAT_BUFFER_BYTES")
    assert module.feat_chunks(feat, theta, mask) == (5, True)  # the default buffer holds them all


@pytest.mark.extension
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_backward_chunked_low_precision_emulation(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    """fp32/bf16/fp16 in chunks: sums in float, each chunk rounded once (the tolerance stated in
    assert_low_precision_grads)."""
    feat, theta, mask = make_inputs(*CHUNKED_SHAPE, dtype=dtype, seed=33)
    theta = theta.float()
    theta[..., :2] *= 0.5  # contractions: several output pixels add into each grad_feat element
    two_sample_buffer(monkeypatch, feat)
    module = emulation()
    assert module.feat_chunks(feat, theta, mask) == (2, False)
    grad_out = torch.randn(5, 10, 8, 6, generator=torch.Generator().manual_seed(34)).to(dtype)
    got = module.part_warp_backward(grad_out, feat, theta, mask, "bilinear", True, True)
    assert_low_precision_grads(got, oracle_grads(feat, theta, mask, grad_out), dtype)


@pytest.mark.cuda
@pytest.mark.extension
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_backward_chunked_cuda(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    """The CUDA op with a two-sample buffer (the chunk loop for real) against the float64 reference."""
    feat, theta, mask = make_inputs(*CHUNKED_SHAPE, dtype=dtype, seed=35)
    theta = theta.double() if dtype == torch.float64 else theta.float()
    theta[..., :2] *= 0.5
    two_sample_buffer(monkeypatch, feat)
    assert emulation().feat_chunks(feat, theta, mask) == (2, False)  # the same host plan
    grad_out = torch.randn(5, 10, 8, 6, generator=torch.Generator().manual_seed(36)).to(dtype)
    inputs = tuple(t.to(CUDA).requires_grad_() for t in (feat, theta, mask))
    got = torch.autograd.grad(part_warp(*inputs, impl="extension"), inputs, grad_out.to(CUDA))
    want = oracle_grads(feat, theta, mask, grad_out)
    if dtype == torch.float64:
        for a, b in zip(got, want):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-9)
    else:
        assert_low_precision_grads(got, want, dtype)


# --- bytes counted in the emulation against msgen.ops.byte_model -------------------------------


def byte_model_inputs(dtype: torch.dtype):
    """(N, C, H, W, P) = (2, 12, 5, 6, 3) with feat one pixel larger per axis, a translation by
    (0.5, 0.25) so that all four taps of every part lie inside feat, every mask nonzero, and part 0
    winning every channel (mask 1 against 0.01-0.02, features in [1, 2]): the byte model's counts
    are exact for these."""
    g = torch.Generator().manual_seed(51)
    N, C, H, W, P = 2, 12, 5, 6, 3
    feat = (1 + torch.rand(N, C, H + 1, W + 1, generator=g, dtype=torch.float64)).to(dtype)
    theta = translation(N, P, 0.5, 0.25).to(torch.float64 if dtype == torch.float64 else torch.float32)
    mask = 0.01 + 0.01 * torch.rand(N, P, H, W, generator=g, dtype=torch.float64)
    mask[:, 0] = 1
    grad_out = (1 + torch.rand(N, C, H, W, generator=g, dtype=torch.float64)).to(dtype)
    return (N, C, H, W, P), feat, theta, mask.to(dtype), grad_out


DTYPE_NAMES = {torch.float64: "fp64", torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@pytest.mark.extension
@pytest.mark.parametrize("dtype", list(DTYPE_NAMES))
def test_cuda_thread_code_moves_the_byte_models_bytes(dtype: torch.dtype) -> None:
    """Loads, stores and atomics of the CUDA per-thread code, counted in the emulation, equal
    byte_model.warp_requests (every access) and byte_model.warp_bytes (each tensor once)."""
    shape, feat, theta, mask, grad_out = byte_model_inputs(dtype)
    name, feat_hw = DTYPE_NAMES[dtype], tuple(feat.shape[2:])
    module = emulation()
    forward = module.traffic(None, feat, theta, mask, "bilinear")
    backward = module.traffic(grad_out, feat, theta, mask, "bilinear")
    requests = byte_model.warp_requests(shape, name, feat_hw=feat_hw, winners_per_thread=1)
    assert forward["requested"] == {"grad_out": 0, **requests["F"]}
    want_b = {k: v for k, v in requests["B"].items() if k not in ("atomics", "atomic bytes")}
    assert backward["requested"] == {"out": 0, **want_b}
    assert backward["feat_atomics"] == requests["B"]["atomics"] and backward["mask_atomics"] == 0
    # DRAM by design: every tensor touched once; the backward's grad_feat is written once by the
    # host (the in-place zero fill or the chunk copy), outside the per-thread code.
    bytes_ = byte_model.warp_bytes(shape, name, feat_hw=feat_hw)
    assert sum(forward["touched"].values()) == bytes_["design F"]
    grad_feat_bytes = feat.numel() * feat.element_size()
    assert sum(backward["touched"].values()) + grad_feat_bytes == bytes_["design F+B"] - bytes_["design F"]
    assert forward["touched"]["feat"] == grad_feat_bytes  # every element of feat, once


@pytest.mark.extension
@pytest.mark.parametrize("shape", byte_model.WARP_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_byte_model_chunks_are_the_cuda_hosts(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """byte_model.warp_chunks makes the plan that csrc/part_warp_host.cpp makes (at PERFORMANCE.md's
    shapes, on stride-0 tensors that allocate nothing)."""
    N, C, H, W, P = shape
    feat = torch.zeros((), dtype=dtype).expand(N, C, H, W)
    mask = torch.zeros((), dtype=dtype).expand(N, P, H, W)
    samples, in_place = emulation().feat_chunks(feat, torch.zeros(N, P, 2, 3), mask)
    plan = byte_model.warp_chunks(shape, DTYPE_NAMES[dtype])
    assert (samples, int(in_place)) == (plan["samples"], plan["in_place"])
    assert plan["chunks"] == -(-N // samples) > 1  # these shapes do not fit one buffer
