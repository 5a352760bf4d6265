"""msgen.ops.fused_attention: the reference against a loop oracle, the Triton kernels against the
float64 reference (forward, saliency and all eight gradients), dispatch and errors, and the
torch.library registration (opcheck, torch.compile fullgraph).

On CPU the kernels run through Triton's interpreter (TRITON_INTERPRET=1, set by conftest.py) at
small shapes; the tests parametrised with "cuda" repeat them on a GPU at larger shapes.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass

import pytest
import torch
from torch._inductor.utils import fresh_inductor_cache

from msgen.ops import AttentionFusion, byte_model, fused_attention, fused_attention_reference
from msgen.models.decoder import SpatialAttentionFusion

from triton_bytes import count_bytes

# The module itself: ``msgen.ops.fused_attention`` names the function once msgen.ops is imported.
fa = importlib.import_module("msgen.ops.fused_attention")

GRAD_NAMES = ("psi", "xi", "g_weight", "g_bias", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")


@dataclass(frozen=True)
class Case:
    B: int
    M: int
    Cd: int
    Ce: int
    H: int
    W: int
    hidden: int = 3

    def __str__(self) -> str:
        return f"B{self.B}-M{self.M}-Cd{self.Cd}-Ce{self.Ce}-{self.H}x{self.W}"


# Awkward on purpose: M in {1, 2, 3, 7}, B in {1, 3}, channel counts that are not powers of two,
# odd H and W, and more pixels than one block on the GPU.
CPU_CASES = [
    Case(B=1, M=1, Cd=3, Ce=5, H=5, W=7),
    Case(B=3, M=2, Cd=6, Ce=3, H=3, W=9),
    Case(B=3, M=3, Cd=5, Ce=7, H=7, W=5, hidden=2),
    Case(B=1, M=7, Cd=2, Ce=9, H=9, W=3),
]
CUDA_CASES = [
    Case(B=1, M=1, Cd=24, Ce=40, H=33, W=17, hidden=16),
    Case(B=3, M=2, Cd=33, Ce=65, H=31, W=23, hidden=24),
    Case(B=3, M=3, Cd=64, Ce=128, H=64, W=32, hidden=48),
    Case(B=3, M=7, Cd=17, Ce=96, H=45, W=29, hidden=28),
]
DEVICE_CASES = [pytest.param("cpu", case, id=f"cpu-{case}") for case in CPU_CASES] + [
    pytest.param("cuda", case, id=f"cuda-{case}", marks=pytest.mark.cuda) for case in CUDA_CASES
]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def make_inputs(case: Case, dtype: torch.dtype = torch.float32, device: str = "cpu") -> list[torch.Tensor]:
    """Fresh random psi, xi and weights; the weights are scaled so gates spread over (0, 1)."""
    z = case.Cd + case.Ce

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(shape, device=device) * scale).to(dtype)

    return [
        randn(case.B, case.Cd, case.H, case.W),
        randn(case.B, case.M, case.Ce, case.H, case.W),
        randn(z, scale=2 / math.sqrt(z)),
        randn(),
        randn(case.hidden, z, scale=3 / math.sqrt(z)),
        randn(case.hidden),
        randn(case.Ce, case.hidden, scale=2 / math.sqrt(case.hidden)),
        randn(case.Ce),
    ]


def make_valid(B: int, M: int, device: str = "cpu") -> torch.Tensor:
    """Random (B, M) mask with a valid source in each sample and, for M > 1, an invalid one."""
    valid = torch.rand(B, M) < 0.6
    valid[torch.arange(B), torch.randint(M, (B,))] = True
    if M > 1:
        valid[0, 0], valid[0, M - 1] = False, True
    return valid.to(device)


def pad_invalid(xi: torch.Tensor, valid: torch.Tensor | None, value: float) -> torch.Tensor:
    """xi with the invalid sources overwritten (padding that must never reach any result)."""
    if valid is None:
        return xi
    return torch.where(valid[:, :, None, None, None], xi, torch.full_like(xi, value))


def run(
    inputs: list[torch.Tensor],
    *,
    impl: str,
    valid: torch.Tensor | None,
    upstream: tuple[torch.Tensor, torch.Tensor | None],
    eps: float = 1e-7,
) -> list[torch.Tensor]:
    """[out, saliency or None, and the eight gradients] for loss = <out, G> (+ <saliency, Gs>)."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    grad_out, grad_sal = upstream
    result = fused_attention(*leaves, valid=valid, eps=eps, return_saliency=grad_sal is not None, impl=impl)
    out, sal = result if grad_sal is not None else (result, None)
    loss = (out * grad_out.to(out.dtype)).sum()
    if sal is not None:
        loss = loss + (sal * grad_sal.to(sal.dtype)).sum()
    grads = torch.autograd.grad(loss, leaves)
    return [out.detach(), None if sal is None else sal.detach(), *grads]


def random_upstream(case: Case, dtype: torch.dtype, device: str, saliency: bool = True):
    grad_out = torch.randn(case.B, case.Cd + case.Ce, case.H, case.W, dtype=dtype, device=device)
    grad_sal = torch.randn(case.B, case.M, case.H, case.W, dtype=dtype, device=device) if saliency else None
    return grad_out, grad_sal


def assert_results_close(actual: list, expected: list, *, rtol: float, atol: float) -> None:
    names = ("out", "saliency", *(f"grad {name}" for name in GRAD_NAMES))
    for name, a, e in zip(names, actual, expected):
        if e is None:
            assert a is None, name
            continue
        assert a.shape == e.shape and a.dtype == e.dtype, name
        scale = e.abs().max().item()
        torch.testing.assert_close(
            a, e, rtol=rtol, atol=atol * max(scale, 1.0), msg=lambda m, name=name: f"{name}: {m}"
        )


def to_float64(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().double() for t in inputs]


# --- the reference ------------------------------------------------------------------------------


def loop_oracle(psi, xi, g_weight, g_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, valid, eps):
    """METHOD.md Eq. 2-5 one scalar at a time, in Python floats (tiny shapes only)."""
    B, Cd, H, W = psi.shape
    M, Ce = xi.shape[1:3]
    out = torch.zeros(B, Cd + Ce, H, W, dtype=torch.float64)
    saliency = torch.zeros(B, M, H, W, dtype=torch.float64)
    sigmoid = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    for b in range(B):
        sources = [m for m in range(M) if valid[b, m]]
        A = {}
        for m in sources:
            z = [psi[b, c] for c in range(Cd)] + [xi[b, m, c] for c in range(Ce)]
            pooled = [float(zc.mean()) for zc in z]
            hidden = [
                max(
                    0.0, sum(float(fc1_weight[k, c]) * pooled[c] for c in range(Cd + Ce)) + float(fc1_bias[k])
                )
                for k in range(fc1_weight.shape[0])
            ]
            f = [
                sigmoid(
                    sum(float(fc2_weight[c, k]) * hidden[k] for k in range(len(hidden))) + float(fc2_bias[c])
                )
                for c in range(Ce)
            ]
            for h in range(H):
                for w in range(W):
                    g = sigmoid(
                        sum(float(g_weight[c]) * float(z[c][h, w]) for c in range(Cd + Ce)) + float(g_bias)
                    )
                    for c in range(Ce):
                        A[m, c, h, w] = max(g * f[c], eps)
        for h in range(H):
            for w in range(W):
                out[b, :Cd, h, w] = psi[b, :, h, w]
                for c in range(Ce):
                    total = sum(A[m, c, h, w] for m in sources)
                    out[b, Cd + c, h, w] = sum(
                        A[m, c, h, w] / total * float(xi[b, m, c, h, w]) for m in sources
                    )
                    for m in sources:
                        saliency[b, m, h, w] += A[m, c, h, w] / total / Ce
    return out, saliency


@pytest.mark.parametrize("eps", [1e-7, 0.2], ids=["eps-tiny", "eps-clamps"])
def test_reference_matches_loop_oracle(eps):
    case = Case(B=2, M=3, Cd=2, Ce=3, H=2, W=3, hidden=2)
    inputs = to_float64(make_inputs(case))
    valid = torch.tensor([[True, False, True], [True, True, True]])
    out, saliency = fused_attention_reference(*inputs, valid=valid, eps=eps, return_saliency=True)
    expected_out, expected_saliency = loop_oracle(*inputs, valid, eps)
    torch.testing.assert_close(out, expected_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(saliency, expected_saliency, rtol=1e-12, atol=1e-12)


def test_reference_gradcheck():
    case = Case(B=2, M=3, Cd=2, Ce=3, H=2, W=3, hidden=2)
    inputs = [t.requires_grad_() for t in to_float64(make_inputs(case))]
    valid = torch.tensor([[True, False, True], [True, True, True]])

    def fn(*args):
        return fused_attention_reference(*args, valid=valid, return_saliency=True)

    assert torch.autograd.gradcheck(fn, inputs)


def test_reference_ignores_nan_padding():
    case = Case(B=2, M=3, Cd=2, Ce=3, H=3, W=3)
    inputs = to_float64(make_inputs(case))
    valid = torch.tensor([[True, False, True], [False, True, False]])
    upstream = random_upstream(case, torch.float64, "cpu")
    clean = run(inputs, impl="reference", valid=valid, upstream=upstream)
    inputs[1] = pad_invalid(inputs[1], valid, float("nan"))
    padded = run(inputs, impl="reference", valid=valid, upstream=upstream)
    assert_results_close(padded, clean, rtol=0, atol=0)
    assert (padded[3][~valid] == 0).all()  # grad xi of the padding


# --- the Triton kernels against the float64 reference -------------------------------------------


@pytest.mark.parametrize("with_valid", [False, True], ids=["all-valid", "valid-mask"])
@pytest.mark.parametrize("device, case", DEVICE_CASES)
def test_triton_matches_reference(device, case, with_valid):
    inputs = make_inputs(case, device=device)
    valid = make_valid(case.B, case.M, device) if with_valid else None
    upstream = random_upstream(case, torch.float32, device)
    # Invalid sources hold NaN for the kernels (never read) and zeros for the reference.
    expected = run(to_float64(inputs), impl="reference", valid=valid, upstream=upstream)
    inputs[1] = pad_invalid(inputs[1], valid, float("nan"))
    actual = run(inputs, impl="triton", valid=valid, upstream=upstream)
    assert_results_close(actual, [None if t is None else t.float() for t in expected], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_triton_non_contiguous_inputs(device):
    """xi with transposed H and W (general strides), psi channels-last, strided weight views."""
    case = Case(B=3, M=3, Cd=5, Ce=6, H=5, W=7) if device == "cpu" else Case(3, 5, 40, 72, 33, 47, 28)
    inputs = make_inputs(case, device=device)
    valid = make_valid(case.B, case.M, device)
    upstream = random_upstream(case, torch.float32, device)
    expected = run(to_float64(inputs), impl="reference", valid=valid, upstream=upstream)

    psi, xi, g_weight, g_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias = inputs
    strided = [
        psi.to(memory_format=torch.channels_last),
        xi.permute(0, 2, 1, 4, 3).contiguous().permute(0, 2, 1, 4, 3),
        torch.stack([g_weight, torch.zeros_like(g_weight)], dim=1)[:, 0],
        g_bias,
        fc1_weight.t().contiguous().t(),
        fc1_bias,
        fc2_weight.t().contiguous().t(),
        fc2_bias,
    ]
    assert not strided[0].is_contiguous() and not strided[1].is_contiguous()
    assert not strided[2].is_contiguous() and not strided[4].is_contiguous()
    actual = run(strided, impl="triton", valid=valid, upstream=upstream)
    assert_results_close(actual, [None if t is None else t.float() for t in expected], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_triton_sum_loss_without_saliency(device):
    """loss = out.sum() hands the backward an expanded (stride 0) gradient; no saliency term."""
    case = Case(B=3, M=3, Cd=4, Ce=5, H=3, W=5) if device == "cpu" else Case(3, 3, 48, 80, 40, 24, 32)
    inputs = make_inputs(case, device=device)
    valid = make_valid(case.B, case.M, device)
    ones = torch.ones(case.B, case.Cd + case.Ce, case.H, case.W, device=device)
    expected = run(to_float64(inputs), impl="reference", valid=valid, upstream=(ones, None))
    leaves = [t.detach().requires_grad_() for t in inputs]
    out = fused_attention(*leaves, valid=valid, impl="triton")
    out.sum().backward()
    actual = [out.detach(), None, *(t.grad for t in leaves)]
    assert_results_close(actual, [None if t is None else t.float() for t in expected], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_triton_saliency_alone_in_loss(device):
    """Only the saliency reaches the loss: the backward gets no gradient for out."""
    case = Case(B=1, M=3, Cd=3, Ce=5, H=5, W=3) if device == "cpu" else Case(2, 3, 32, 64, 32, 16, 24)
    inputs = make_inputs(case, device=device)
    grad_sal = torch.randn(case.B, case.M, case.H, case.W, device=device)
    results = {}
    for impl, args in (("reference", to_float64(inputs)), ("triton", inputs)):
        leaves = [t.detach().requires_grad_() for t in args]
        _, saliency = fused_attention(*leaves, return_saliency=True, impl=impl)
        grads = torch.autograd.grad((saliency * grad_sal.to(saliency.dtype)).sum(), leaves)
        results[impl] = [None, None, *(g.float() for g in grads)]
    assert_results_close(results["triton"], results["reference"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "case", [Case(1, 1, 1, 1, 1, 1, 1), Case(2, 3, 4, 3, 9, 1, 2), Case(2, 20, 3, 2, 1, 3, 2)], ids=str
)
def test_triton_degenerate_shapes(case):
    """One pixel, one-pixel-wide images, single channels, and more sources than a tile row."""
    inputs = make_inputs(case)
    valid = make_valid(case.B, case.M)
    upstream = random_upstream(case, torch.float32, "cpu")
    expected = run(to_float64(inputs), impl="reference", valid=valid, upstream=upstream)
    actual = run(inputs, impl="triton", valid=valid, upstream=upstream)
    assert_results_close(actual, [None if t is None else t.float() for t in expected], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_triton_clamp_at_eps(device):
    """A large eps clamps many A = g f, which then pass no gradient to g and f."""
    case = Case(B=3, M=3, Cd=3, Ce=5, H=3, W=5) if device == "cpu" else Case(3, 3, 24, 40, 24, 24, 16)
    inputs = make_inputs(case, device=device)
    upstream = random_upstream(case, torch.float32, device)
    expected = run(to_float64(inputs), impl="reference", valid=None, upstream=upstream, eps=0.25)
    actual = run(inputs, impl="triton", valid=None, upstream=upstream, eps=0.25)
    assert_results_close(actual, [None if t is None else t.float() for t in expected], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("budget_samples", [1, 2], ids=["chunks-of-1", "chunks-of-2"])
def test_triton_in_chunks_matches_reference(monkeypatch, budget_samples):
    """The batch in several launches (L2_CHUNK_BYTES made small: chunks of 1 or 2 samples, the last
    one shorter), with a valid mask, NaN padding and the saliency, against the float64 reference."""
    from msgen.kernels import fused_attention as kernels

    case = Case(B=5, M=3, Cd=4, Ce=5, H=3, W=7)
    monkeypatch.setattr(kernels, "L2_CHUNK_BYTES", budget_samples * case.M * case.Ce * case.H * case.W * 4)
    plan = kernels.plan(case.B, case.M, case.Cd, case.Ce, case.H * case.W, case.hidden, 4)
    assert len(plan.chunks) == -(-case.B // budget_samples)
    inputs = make_inputs(case)
    valid = make_valid(case.B, case.M)
    upstream = random_upstream(case, torch.float32, "cpu")
    expected = run(to_float64(inputs), impl="reference", valid=valid, upstream=upstream)
    inputs[1] = pad_invalid(inputs[1], valid, float("nan"))
    actual = run(inputs, impl="triton", valid=valid, upstream=upstream)
    assert_results_close(actual, [None if t is None else t.float() for t in expected], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["reference", "triton"])
@pytest.mark.parametrize("where", ["xi", "psi"])
def test_nan_in_one_pixel_poisons_the_fused_half_of_its_sample_only(impl, where):
    """The documented rule (module docstring): the channel gate pools every pixel, so one NaN pixel
    of a valid source (or of psi) makes out[b, Cd:] and the saliency of that sample NaN everywhere;
    out[b, :Cd] stays psi and the other samples are what they were."""
    case = Case(B=3, M=2, Cd=3, Ce=4, H=4, W=5)
    inputs = make_inputs(case)
    clean, clean_saliency = fused_attention(*inputs, return_saliency=True, impl=impl)
    if where == "xi":
        inputs[1][1, 0, 2, 1, 3] = float("nan")
    else:
        inputs[0][1, 2, 1, 3] = float("nan")
    out, saliency = fused_attention(*inputs, return_saliency=True, impl=impl)
    assert out[1, case.Cd:].isnan().all() and saliency[1].isnan().all()
    torch.testing.assert_close(out[1, : case.Cd], inputs[0][1], rtol=0, atol=0, equal_nan=True)
    others = [0, 2]
    torch.testing.assert_close(out[others], clean[others], rtol=0, atol=0)
    torch.testing.assert_close(saliency[others], clean_saliency[others], rtol=0, atol=0)


def test_module_weights_are_one_fusion_weights_the_op_takes():
    case = CPU_CASES[2]
    module = AttentionFusion(case.Cd, case.Ce, impl="reference")
    weights = module.weights()
    assert isinstance(weights, fa.FusionWeights)
    assert [tuple(w.shape) for w in weights] == [
        (case.Cd + case.Ce,), (), (module.fc1.out_features, case.Cd + case.Ce),
        (module.fc1.out_features,), (case.Ce, module.fc1.out_features), (case.Ce,),
    ]
    psi, xi = make_inputs(case)[:2]
    torch.testing.assert_close(fused_attention(psi, xi, *weights, impl="reference"), module(psi, xi), rtol=0, atol=0)


@pytest.mark.parametrize("impl", ["reference", "triton"])
def test_spatial_attention_fusion_is_attention_with_a_fixed_channel_gate(impl):
    """att2d: only g is learned (its state keeps the buffers' names), and Att_i = g_i / sum_j g_j."""
    case = Case(B=2, M=3, Cd=3, Ce=4, H=3, W=5)
    module = SpatialAttentionFusion(case.Cd, case.Ce, impl=impl)
    assert set(module.state_dict()) == {"gate.weight", "gate.bias", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"}
    assert {name for name, _ in module.named_parameters()} == {"gate.weight", "gate.bias"}
    psi, xi = make_inputs(case)[:2]
    valid = make_valid(case.B, case.M)
    out = module(psi, xi, valid)
    w = module.gate.weight.view(-1).detach()
    g = torch.sigmoid(
        torch.einsum("c,bchw->bhw", w[: case.Cd], psi)[:, None]
        + torch.einsum("c,bmchw->bmhw", w[case.Cd:], xi) + module.gate.bias.detach()
    ) * valid[:, :, None, None]
    fused = (g[:, :, None] * xi).sum(dim=1) / g.sum(dim=1)[:, None]
    torch.testing.assert_close(out, torch.cat([psi, fused], dim=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("module_type", [AttentionFusion, SpatialAttentionFusion])
def test_channel_mismatch_names_the_modules_channels(module_type):
    module = module_type(8, 12, impl="reference")
    psi, xi = torch.randn(2, 8, 3, 3), torch.randn(2, 2, 10, 3, 3)
    pattern = rf"{module_type.__name__}\(psi_channels=8, xi_channels=12\).*\(2, 2, 10, 3, 3\)"
    with pytest.raises(ValueError, match=pattern):
        module(psi, xi)
    with pytest.raises(ValueError, match=r"psi_channels=8"):
        module(torch.randn(2, 9, 3, 3), torch.randn(2, 2, 12, 3, 3))


@pytest.mark.parametrize(
    "dtype_name, chunked, saliency",
    [("fp32", False, False), ("fp32", True, True), ("bf16", True, False), ("bf16", False, True)],
)
def test_kernel_bytes_are_the_byte_model(monkeypatch, dtype_name, chunked, saliency):
    """Every byte the two kernels load, store and update atomically, counted under the interpreter
    by kernel and argument, and the distinct bytes each touches, equal msgen.ops.byte_model's."""
    from msgen.kernels import fused_attention as kernels

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    case = Case(B=3, M=3, Cd=5, Ce=6, H=5, W=7, hidden=2)
    if chunked:  # two samples, then one
        monkeypatch.setattr(kernels, "L2_CHUNK_BYTES", 2 * case.M * case.Ce * case.H * case.W * dtype.itemsize)
    inputs = make_inputs(case, dtype)
    upstream = random_upstream(case, dtype, "cpu", saliency=saliency)
    with count_bytes() as counted:
        run(inputs, impl="triton", valid=None, upstream=upstream)
    shape = (case.B, case.M, case.Ce, case.Cd, case.H, case.W)
    model = byte_model.fusion_traffic(shape, dtype_name, hidden=case.hidden, saliency=saliency)
    assert set(counted.launches) == set(model)
    for kernel, expected in model.items():
        assert counted.launches[kernel] == len(expected["chunks"]) == (2 if chunked else 1), kernel
        traffic = {name: kinds for name, kinds in expected["traffic"].items() if any(kinds.values())}
        assert counted.plain()[kernel] == traffic, kernel
        assert counted.distinct[kernel] == expected["distinct"], kernel


def test_triton_float64_gradcheck():
    """The backward kernels against finite differences of the forward kernels, in float64."""
    case = Case(B=2, M=2, Cd=2, Ce=3, H=2, W=3, hidden=2)
    inputs = [t.requires_grad_() for t in to_float64(make_inputs(case))]
    valid = torch.tensor([[True, True], [False, True]])

    def fn(*args):
        return fused_attention(*args, valid=valid, return_saliency=True, impl="triton")

    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("device", DEVICES)
def test_triton_low_precision_error_budget(device, dtype):
    """At most twice PyTorch's own low-precision error against a float64 oracle, plus one ulp."""
    case = Case(B=3, M=3, Cd=5, Ce=6, H=5, W=7) if device == "cpu" else Case(3, 5, 64, 128, 32, 16, 48)
    inputs = make_inputs(case, dtype, device)
    valid = make_valid(case.B, case.M, device)
    upstream = random_upstream(case, dtype, device)
    oracle = run(to_float64(inputs), impl="reference", valid=valid, upstream=upstream)
    torch_low = run(inputs, impl="reference", valid=valid, upstream=upstream)
    kernel = run(inputs, impl="triton", valid=valid, upstream=upstream)
    names = ("out", "saliency", *(f"grad {name}" for name in GRAD_NAMES))
    for name, o, t, k in zip(names, oracle, torch_low, kernel):
        assert k.dtype == dtype, name
        torch_error = (t.double() - o).abs().max().item()
        kernel_error = (k.double() - o).abs().max().item()
        atol = torch.finfo(dtype).eps * max(o.abs().max().item(), 1.0)
        assert kernel_error <= 2 * torch_error + atol, f"{name}: {kernel_error} vs torch {torch_error}"


# --- dispatch and errors ------------------------------------------------------------------------


def test_auto_picks_reference_on_cpu_and_triton_is_the_custom_op():
    case = CPU_CASES[2]
    leaves = [t.requires_grad_() for t in make_inputs(case)]
    assert "msgen_fused_attention" not in fused_attention(*leaves).grad_fn.name()
    assert "msgen_fused_attention" in fused_attention(*leaves, impl="triton").grad_fn.name()


def test_auto_warns_once_when_falling_back_on_cuda(monkeypatch):
    """_resolve_impl is pure (torch.compile keeps its result as a constant); the warning is apart."""
    monkeypatch.setattr(fa, "triton_importable", lambda: False)
    monkeypatch.setattr(fa, "_warned_fallback", set())
    cuda = torch.device("cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fa._resolve_impl("auto", cuda, torch.float32) == "reference"
    with pytest.warns(UserWarning, match="triton is not installed"):
        fa._warn_auto_fallback(cuda, torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fa._warn_auto_fallback(cuda, torch.float32)  # warned once only
    with pytest.raises(RuntimeError, match="impl='triton' cannot run on cuda.*not installed"):
        fa._resolve_impl("triton", cuda, torch.float32)


def test_triton_without_interpreter_on_cpu_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    inputs = make_inputs(CPU_CASES[1])
    with pytest.raises(RuntimeError, match="impl='triton' cannot run on cpu.*TRITON_INTERPRET=1"):
        fused_attention(*inputs, impl="triton")
    fused_attention(*inputs, impl="auto")  # auto still runs: the reference


def test_triton_unsupported_dtype_raises():
    inputs = [t.to(torch.complex64) if i < 2 else t for i, t in enumerate(make_inputs(CPU_CASES[1]))]
    with pytest.raises(RuntimeError, match="impl='triton'.*complex64"):
        fused_attention(*inputs, impl="triton")


@pytest.mark.parametrize("impl", ["reference", "triton"])
def test_sample_without_valid_source_raises(impl):
    case = CPU_CASES[2]
    valid = torch.tensor([[True, False, True], [False, False, False], [False, True, False]])
    with pytest.raises(ValueError, match=r"valid marks no source for batch samples \[1\]"):
        fused_attention(*make_inputs(case), valid=valid, impl=impl)


def test_triton_op_itself_rejects_sample_without_valid_source():
    """The registered op checks valid at run time, so a compiled graph cannot skip the check."""
    case = CPU_CASES[1]
    valid = torch.tensor([[True, False], [False, False], [True, True]])
    with pytest.raises(ValueError, match="valid marks no source"):
        psi, xi, *weights = make_inputs(case)
        torch.ops.msgen.fused_attention(psi, xi, weights, valid, 1e-7, False)


def _bad(index: int, tensor_fn):
    def make(inputs):
        inputs = list(inputs)
        inputs[index] = tensor_fn(inputs[index])
        return inputs

    return make


BAD_INPUTS = [
    ("psi", _bad(0, lambda t: t[0])),
    ("xi", _bad(1, lambda t: t[:, :, :, :-1])),
    ("xi", _bad(1, lambda t: t.double())),
    ("g_weight", _bad(2, lambda t: t[:-1])),
    ("g_bias", _bad(3, lambda t: t[None])),
    ("fc1_weight", _bad(4, lambda t: t[:, 1:])),
    ("fc1_bias", _bad(5, lambda t: t[1:])),
    ("fc2_weight", _bad(6, lambda t: t[1:])),
    ("fc2_bias", _bad(7, lambda t: t.long())),
]


@pytest.mark.parametrize("impl", ["reference", "triton"])
@pytest.mark.parametrize("name, corrupt", BAD_INPUTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_INPUTS)])
def test_wrong_inputs_raise_naming_the_argument(impl, name, corrupt):
    inputs = corrupt(make_inputs(CPU_CASES[2]))
    with pytest.raises(ValueError, match=name):
        fused_attention(*inputs, impl=impl)


@pytest.mark.parametrize("impl", ["reference", "triton"])
def test_bad_valid_and_impl_raise(impl):
    case = CPU_CASES[2]
    inputs = make_inputs(case)
    with pytest.raises(ValueError, match="valid"):
        fused_attention(*inputs, valid=torch.ones(case.B, case.M + 1, dtype=torch.bool), impl=impl)
    with pytest.raises(ValueError, match="valid"):
        fused_attention(*inputs, valid=torch.ones(case.B, case.M), impl=impl)
    with pytest.raises(ValueError, match="impl"):
        fused_attention(*inputs, impl="cuda")


def test_double_backward_through_triton_raises():
    leaves = [t.requires_grad_() for t in make_inputs(CPU_CASES[1])]
    out = fused_attention(*leaves, impl="triton")
    (grad_xi,) = torch.autograd.grad(out.square().sum(), leaves[1], create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad_xi.sum().backward()


# --- torch.library registration -----------------------------------------------------------------


@pytest.mark.parametrize("with_valid, return_saliency", [(False, False), (True, True)])
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device, with_valid, return_saliency):
    case = Case(B=2, M=3, Cd=3, Ce=5, H=3, W=5) if device == "cpu" else Case(2, 3, 24, 40, 17, 9, 16)
    inputs = [t.requires_grad_() for t in make_inputs(case, device=device)]
    valid = make_valid(case.B, case.M, device) if with_valid else None
    psi, xi, *weights = inputs
    torch.library.opcheck(torch.ops.msgen.fused_attention.default, (psi, xi, weights, valid, 1e-7, return_saliency))


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_attention_fusion(device):
    case = Case(B=3, M=3, Cd=4, Ce=5, H=5, W=3) if device == "cpu" else Case(3, 5, 64, 128, 32, 16, 48)
    module = AttentionFusion(case.Cd, case.Ce, impl="triton").to(device)
    psi, xi = make_inputs(case, device=device)[:2]
    valid = make_valid(case.B, case.M, device)
    compiled = torch.compile(module, fullgraph=True)
    # A fresh Inductor cache: a graph cached on disk by an older version of the op (another
    # schema) would otherwise be replayed, since the cache key does not cover custom op schemas.
    with fresh_inductor_cache():
        out, saliency = compiled(psi, xi, valid, return_saliency=True)
        (out.square().sum() + saliency.sum()).backward()
    compiled_grads = [p.grad.clone() for p in module.parameters()]

    module.zero_grad()
    module.impl = "reference"
    expected_out, expected_saliency = module(psi, xi, valid, return_saliency=True)
    (expected_out.square().sum() + expected_saliency.sum()).backward()
    torch.testing.assert_close(out, expected_out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(saliency, expected_saliency, rtol=1e-4, atol=1e-5)
    for actual, param in zip(compiled_grads, module.parameters()):
        torch.testing.assert_close(actual, param.grad, rtol=1e-3, atol=1e-4)


# --- GPU only -----------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_auto_picks_triton():
    leaves = [t.requires_grad_() for t in make_inputs(CUDA_CASES[1], device="cuda")]
    assert "msgen_fused_attention" in fused_attention(*leaves).grad_fn.name()


@pytest.mark.cuda
@pytest.mark.slow
def test_cuda_int64_indexing():
    """xi of more than 2**31 elements: the last sample, past the int32 range, against the reference."""
    case = Case(B=17, M=8, Cd=8, Ce=64, H=512, W=512, hidden=16)
    assert case.B * case.M * case.Ce * case.H * case.W > 2**31
    inputs = make_inputs(case, torch.bfloat16, "cuda")
    last = [inputs[0][-1:], inputs[1][-1:], *inputs[2:]]
    grad_out = torch.randn(1, case.Cd + case.Ce, case.H, case.W, device="cuda", dtype=torch.bfloat16)
    leaves = [t.detach().requires_grad_() for t in inputs[:2]]
    out = fused_attention(*leaves, *inputs[2:], impl="triton")
    (grad_psi, grad_xi) = torch.autograd.grad(out[-1:], leaves, grad_out)
    expected = run([t.float() for t in last], impl="reference", valid=None, upstream=(grad_out.float(), None))
    torch.testing.assert_close(out[-1:].float(), expected[0], rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(grad_xi[-1:].float(), expected[3], rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(grad_psi[-1:].float(), expected[2], rtol=2e-2, atol=2e-2)


# --- GPU code generation, checked without a GPU -------------------------------------------------
# The interpreter never compiles the kernels. These helpers compile them for an H100 (sm_90) and run
# ptxas on the result, which needs no GPU. They run in a subprocess: triton.jit picks the
# interpreter when it decorates, and this process imported triton under TRITON_INTERPRET=1.

FusionShapeArgs = tuple[int, int, int, int, int, int]  # (B, M, Ce, Cd, H, W) as in PERFORMANCE.md
_PTR_TYPES = {
    torch.float32: "*fp32",
    torch.bfloat16: "*bf16",
    torch.float16: "*fp16",
    torch.float64: "*fp64",
    torch.int8: "*i8",
    torch.int32: "*i32",
}
_KERNEL_NAMES = ("_forward_kernel", "_backward_kernel")


def _capture_launches(kernels, shape: FusionShapeArgs, dtype: torch.dtype) -> dict:
    """Run the two launchers on meta tensors, recording each kernel's first launch's arguments
    instead of launching (hidden = (Cd + Ce) // 4, as the benchmarks' weights)."""
    calls = {}

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: calls.setdefault(self.name, (args, kwargs))

    jit_functions = {name: getattr(kernels, name) for name in _KERNEL_NAMES}
    for name in _KERNEL_NAMES:
        setattr(kernels, name, Recorder(name))
    B, M, Ce, Cd, H, W = shape
    hidden = (Cd + Ce) // 4
    acc = fa.acc_dtype(dtype)

    def empty(*size: int, dtype: torch.dtype = dtype) -> torch.Tensor:
        return torch.empty(size, dtype=dtype, device="meta")

    try:
        psi, xi, out = empty(B, Cd, H, W), empty(B, M, Ce, H, W), empty(B, Cd + Ce, H, W)
        weights = fa.FusionWeights(
            empty(Cd + Ce, dtype=acc), empty(dtype=acc), empty(hidden, Cd + Ce, dtype=acc),
            empty(hidden, dtype=acc), empty(Ce, hidden, dtype=acc), empty(Ce, dtype=acc),
        )
        valid = empty(B, M, dtype=torch.int8)
        gate, _, hidden_units, f = kernels.forward(psi, xi, weights, valid, 1e-7, out, empty(B, M, H, W))
        kernels.backward(psi, xi, weights, valid, 1e-7, out, empty(B, M, H, W), gate, hidden_units, f)
    finally:
        for name, kernel in jit_functions.items():
            setattr(kernels, name, kernel)
    return {name: (jit_functions[name], *calls[name]) for name in _KERNEL_NAMES}


def _tuned_launches(kernels, shape: FusionShapeArgs, dtype: torch.dtype, first_only: bool = False) -> dict:
    """{"kernel config": (jit function, args, kwargs)} for every autotune configuration of each
    kernel's launch at shape, or the first only (run without the interpreter, which keeps only the
    first)."""
    result = {}
    for name, (tuned, args, kwargs) in _capture_launches(kernels, shape, dtype).items():
        named = dict(zip(tuned.fn.arg_names, args))
        configs = kernels.tuning_configs(named["M"], named["Cd"], named["Ce"], kwargs["BLOCK_M"], kwargs["BLOCK_HW"])
        for config in configs[:1] if first_only else configs:
            label = ",".join(f"{k}={v}" for k, v in config.kwargs.items())
            result[f"{name} {label}"] = (tuned.fn, args, {**kwargs, **config.kwargs, "num_warps": config.num_warps})
    return result


def _compile_for_sm90(kernel, args: tuple, kwargs: dict):
    """Compile as the launcher would on an H100 (Triton's argument specialisation mimicked)."""
    import triton
    from triton.backends.compiler import GPUTarget

    signature, constants, attrs = {}, {}, {}
    for index, (name, param) in enumerate(zip(kernel.arg_names, kernel.params)):
        value = kwargs[name] if param.is_constexpr else args[index]
        if param.is_constexpr or (type(value) is int and value == 1):
            signature[name], constants[name] = "constexpr", value
            continue
        if isinstance(value, torch.Tensor):
            signature[name] = _PTR_TYPES[value.dtype]
        elif isinstance(value, float):
            signature[name] = "fp32"
        else:
            signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
        if isinstance(value, torch.Tensor) or (isinstance(value, int) and value % 16 == 0):
            attrs[(index,)] = [["tt.divisibility", 16]]
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attrs)
    target = GPUTarget("cuda", 90, 64)
    options = triton.compiler.make_backend(target).parse_options({"num_warps": kwargs["num_warps"]})
    return triton.compile(source, target=target, options=options.__dict__)


def triton_ptxas(arch: int) -> str:
    """The ptxas that Triton itself runs for sm_<arch>, so it accepts the PTX version Triton emits.

    Triton sets the PTX ``.version`` from the ptxas it compiles with, and picks that ptxas per
    architecture (and honours TRITON_PTXAS_PATH / TRITON_PTXAS_BLACKWELL_PATH): triton 3.6-3.8 use
    bin/ptxas (CUDA 12.8/12.9) for sm_90, triton 3.9 uses bin/ptxas-blackwell (CUDA 13.4) for every
    arch >= 90 and emits PTX 9.4, which the CUDA 12.9 bin/ptxas rejects ("Unsupported .version").
    """
    from triton.backends.nvidia import compiler

    return compiler.get_ptxas(arch).path


def sm90_reports(shape: FusionShapeArgs, dtypes: list[str], workdir: str) -> dict[str, dict[str, str]]:
    """{dtype: {kernel: ptxas -v report, with a line "cp.async: N" added}}; run without the interpreter."""
    from msgen.kernels import fused_attention as kernels

    ptxas = triton_ptxas(90)
    reports = {}
    for dtype_name in dtypes:
        reports[dtype_name] = {}
        launches = _tuned_launches(kernels, shape, getattr(torch, dtype_name), first_only=True)
        for name, (kernel, args, kwargs) in launches.items():
            ptx = _compile_for_sm90(kernel, args, kwargs).asm["ptx"]
            path = os.path.join(workdir, f"{name}_{dtype_name}.ptx".replace(" ", "_").replace(",", "_"))
            with open(path, "w") as f:
                f.write(ptx)
            result = subprocess.run(
                [ptxas, "-arch=sm_90a", "-v", path, "-o", path + ".o"],
                capture_output=True,
                text=True,
                check=True,
            )
            reports[dtype_name][name] = result.stderr + f"cp.async: {ptx.count('cp.async')}\n"
    return reports


def test_kernels_compile_for_hopper_without_spills(tmp_path):
    """At the first PERFORMANCE.md fusion shape, fp32 and bf16, the first autotune configuration:
    the kernels compile for sm_90, spill no registers, and their channel loops' loads are
    pipelined (cp.async). tests/test_kernel_static.py checks every configuration at every shape."""
    pytest.importorskip("triton.backends.nvidia")
    try:
        triton_ptxas(90)
    except RuntimeError as error:  # triton's "Cannot find ptxas": a triton wheel without its tools
        pytest.skip(f"triton ships no ptxas for sm_90 here: {error}")
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    code = (
        f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
        "from test_fused_attention import sm90_reports; "
        "print(json.dumps(sm90_reports((32, 5, 128, 64, 128, 64), ['float32', 'bfloat16'], "
        f"{str(tmp_path)!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = json.loads(result.stdout.strip().splitlines()[-1])
    for dtype_name, kernels in reports.items():
        assert {name.split()[0] for name in kernels} == set(_KERNEL_NAMES)
        for name, report in kernels.items():
            assert "0 bytes spill stores" in report, f"{name} {dtype_name} spills registers:\n{report}"
            assert "cp.async: 0" not in report, f"{name} {dtype_name}: the channel loop is not pipelined"


@pytest.mark.cuda
def test_cuda_batch_beyond_one_grid_axis():
    """B > 65,535 samples: the kernels' flat grid has no 65,535 limit on the batch."""
    case = Case(B=65_535 + 5, M=2, Cd=2, Ce=3, H=2, W=3, hidden=2)
    inputs = make_inputs(case, device="cuda")
    upstream = random_upstream(case, torch.float32, "cuda")
    expected = run(inputs, impl="reference", valid=None, upstream=upstream)
    actual = run(inputs, impl="triton", valid=None, upstream=upstream)
    assert_results_close(actual, expected, rtol=1e-4, atol=1e-5)
