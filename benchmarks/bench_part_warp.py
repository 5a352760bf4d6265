"""Part warp: the compiled op against the plain-PyTorch reference (PERFORMANCE.md, "part warp").

CPU: extension vs reference at a Market-sized shape (N=10, C=64, 128x64, P=10), forward (F) and
forward+backward w.r.t. feat (F+B); target >= 3x on CI's 2 cores.
GPU: extension vs eager reference vs torch.compile(reference) at the warp shapes of PERFORMANCE.md,
fp32 and bf16; target F+B >= 20x faster than eager, within 3x of the floor, peak extra memory no
larger than the output.

extra_info: impl, floor_bytes (inputs read once + output written once; F+B counts twice the
forward's bytes, the convention of PERFORMANCE.md's table), peak_extra_bytes (GPU: the
max_memory_allocated rise over the inputs; CPU: the sum of the tensors allocated, an upper bound).
Under --benchmark-disable every body runs once at a tiny shape.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from msgen.ops.part_warp import extension_runs_on, part_warp, part_warp_reference

from conftest import device_name, smoke_run, synchronized

CPU_SHAPE = (10, 64, 128, 64, 10)  # (N, C, H, W, P); feat has the output's size, as in the model
GPU_CASES = [  # PERFORMANCE.md's warp rows
    ((160, 64, 128, 64, 10), torch.float32),
    ((160, 64, 128, 64, 10), torch.bfloat16),
    ((160, 128, 64, 32, 10), torch.float32),
    ((40, 64, 256, 256, 10), torch.float32),
]
SMOKE_SHAPE = (2, 3, 9, 7, 4)


def make_inputs(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, grad: bool):
    """Features, affines of the scale of real part transforms (some points outside the map), and
    part masks: part 0 (the torso) covers everything, the others random rectangles."""
    N, C, H, W, P = shape
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(N, C, H, W, generator=g)
    theta = torch.eye(2, 3).repeat(N, P, 1, 1) + 0.1 * torch.randn(N, P, 2, 3, generator=g)
    theta[..., 2] += torch.randn(N, P, 2, generator=g) * 0.1 * torch.tensor([W, H])
    ys, xs = torch.arange(H)[:, None], torch.arange(W)[None, :]
    corner = torch.rand(N, P, 2, generator=g) * torch.tensor([H, W]) * 0.7
    top, left = corner[..., 0, None, None], corner[..., 1, None, None]
    inside = (ys >= top) & (ys < top + H // 4) & (xs >= left) & (xs < left + W // 3)
    mask = inside.float() * (0.5 + 0.5 * torch.rand(N, P, 1, 1, generator=g))
    mask[:, 0] = 1
    feat = feat.to(device, dtype).requires_grad_(grad)
    return feat, theta.to(device), mask.to(device, dtype)


def case_name(shape: tuple[int, ...], dtype: torch.dtype, backward: bool) -> str:
    """E.g. "(160,64,128,64,10) fp32 F+B" in PERFORMANCE.md's (N, C, H, W, P) order."""
    dtype_name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    return f"({','.join(map(str, shape))}) {dtype_name} {'F+B' if backward else 'F'}"


def output_bytes(feat: torch.Tensor, mask: torch.Tensor) -> int:
    return feat.shape[0] * feat.shape[1] * mask.shape[2] * mask.shape[3] * feat.element_size()


def floor_bytes(feat: torch.Tensor, theta: torch.Tensor, mask: torch.Tensor, backward: bool) -> int:
    forward = feat.nbytes + theta.nbytes + mask.nbytes + output_bytes(feat, mask)
    return 2 * forward if backward else forward


def step(impl: str, feat, theta, mask, backward: bool) -> Callable[[], object]:
    warp = {
        "extension": lambda f, t, m: part_warp(f, t, m, impl="extension"),
        "reference": part_warp_reference,
        "compiled reference": torch.compile(part_warp_reference),
    }[impl]
    if not backward:
        return lambda: warp(feat, theta, mask)
    grad_out = torch.ones(feat.shape[0], feat.shape[1], *mask.shape[2:], device=feat.device, dtype=feat.dtype)

    def forward_backward() -> object:
        feat.grad = None
        out = warp(feat, theta, mask)
        out.backward(grad_out)
        return feat.grad

    return forward_backward


def cpu_allocated_bytes(fn: Callable[[], object]) -> int:
    """Sum of the tensors allocated while fn runs (an upper bound of its peak extra memory)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(max(0, event.self_cpu_memory_usage) for event in prof.events())


def gpu_peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


@pytest.mark.parametrize("backward", [False, True], ids=["F", "F+B"])
@pytest.mark.parametrize("impl", ["extension", "reference"])
def test_part_warp_cpu(benchmark, request, impl: str, backward: bool) -> None:
    cpu = torch.device("cpu")
    if impl == "extension" and not extension_runs_on(cpu):
        pytest.skip("msgen._C is not built")
    shape = SMOKE_SHAPE if smoke_run(request.config) else CPU_SHAPE
    feat, theta, mask = make_inputs(shape, torch.float32, cpu, grad=backward)
    fn = step(impl, feat, theta, mask, backward)
    fn()  # warm-up (allocator, thread pool)
    benchmark.group = f"part_warp CPU {case_name(shape, torch.float32, backward)}"
    benchmark.extra_info.update(
        impl=impl,
        device=device_name(cpu),
        floor_bytes=floor_bytes(feat, theta, mask, backward),
        peak_extra_bytes=cpu_allocated_bytes(fn),
        output_bytes=output_bytes(feat, mask),
    )
    benchmark.pedantic(fn, rounds=5, iterations=1)


@pytest.mark.parametrize("backward", [False, True], ids=["F", "F+B"])
@pytest.mark.parametrize("impl", ["extension", "reference", "compiled reference"])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: case_name(c[0], c[1], False)[:-2])
def test_part_warp_gpu(benchmark, request, case, impl: str, backward: bool) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    device = torch.device("cuda")
    if impl == "extension" and not extension_runs_on(device):
        pytest.fail("msgen._C has no CUDA kernels: build with FORCE_CUDA=1")
    shape, dtype = (SMOKE_SHAPE, case[1]) if smoke_run(request.config) else case
    feat, theta, mask = make_inputs(shape, dtype, device, grad=backward)
    fn = synchronized(step(impl, feat, theta, mask, backward), device)
    for _ in range(3):  # warm-up, and compilation for the compiled reference
        fn()
    peak = gpu_peak_extra_bytes(fn, device)
    benchmark.group = f"part_warp GPU {case_name(shape, dtype, backward)}"
    benchmark.extra_info.update(
        impl=impl,
        device=device_name(device),
        floor_bytes=floor_bytes(feat, theta, mask, backward),
        peak_extra_bytes=peak,
        output_bytes=output_bytes(feat, mask),
    )
    benchmark.pedantic(fn, rounds=20, iterations=1)
