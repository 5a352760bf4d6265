"""Part warp: the compiled op against the strongest plain-PyTorch peer (PERFORMANCE.md).

The peer is what a competent user writes: ONE grid_sample over the P-times expanded batch, then
`mask * sampled` and `amax` over parts (``strong_peer``). The project's readable reference
(``.max(dim=1)`` with its index tensor) is kept for correctness only: every timed case first checks
the extension against it.

Timing is interleaved (``conftest.interleaved_medians``): the implementations alternate round by
round and medians are compared, so load from other processes on a shared machine hits all alike.
CPU: N=10, C=64, 128x64, P=10, fp32, part-shaped masks; the target is the extension at least 3x
faster than the peer, forward (F) and forward+backward w.r.t. feat (F+B).
GPU: the warp shapes of PERFORMANCE.md, fp32 and bf16: extension, peer eager, torch.compile(peer).
Each case's medians, its floor time and its byte-model ratio (msgen.ops.byte_model) are printed at
the end and appended to MSGEN_BENCH_RESULTS as they are measured.
Under --benchmark-disable every body runs once at a tiny shape.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from msgen.ops import byte_model
from msgen.ops.part_warp import extension_runs_on, part_warp, part_warp_reference, sample_parts

from conftest import (
    copy_bandwidth,
    device_name,
    interleaved_medians,
    record_interleaved,
    smoke_run,
)

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


def strong_peer(feat: torch.Tensor, theta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The fastest plain-PyTorch spelling: one grid_sample on the expanded batch, mask, amax."""
    sampled = sample_parts(feat, theta, mask.shape[2], mask.shape[3])
    return (mask[:, :, None] * sampled).amax(dim=1)


def warp_of(impl: str) -> Callable:
    if impl == "extension":
        return lambda f, t, m: part_warp(f, t, m, impl="extension")
    if impl == "peer":
        return strong_peer
    if impl == "compiled peer":
        torch._dynamo.reset()
        return torch.compile(strong_peer, dynamic=False)
    raise ValueError(impl)


def step(warp: Callable, feat, theta, mask, backward: bool) -> Callable[[], object]:
    if not backward:
        def forward() -> object:
            with torch.no_grad():
                return warp(feat, theta, mask)

        return forward
    grad_out = torch.ones(feat.shape[0], feat.shape[1], *mask.shape[2:], device=feat.device, dtype=feat.dtype)

    def forward_backward() -> object:
        # autograd.grad, not .backward(): no accumulation into .grad
        return torch.autograd.grad(warp(feat, theta, mask), feat, grad_out)

    return forward_backward


def check_against_reference(feat, theta, mask) -> None:
    """The extension must match the readable reference where it is timed (forward)."""
    with torch.no_grad():
        got = part_warp(feat, theta, mask, impl="extension")
        want = part_warp_reference(feat, theta, mask)
    tol = 1e-4 if feat.dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def byte_model_ratio(shape: tuple[int, ...], dtype: torch.dtype, backward: bool) -> str:
    dtype_name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    b = byte_model.warp_bytes(shape, dtype_name)
    direction = "F+B" if backward else "F"
    return f"{b[f'design {direction}'] / b[f'floor {direction}']:.2f}x"


def run_case(shape, dtype, device, backward: bool, impls: list[str], rounds: int, smoke: bool) -> dict:
    feat, theta, mask = make_inputs(shape, dtype, device, grad=backward)
    check_against_reference(feat.detach(), theta, mask)
    fns = {impl: step(warp_of(impl), feat, theta, mask, backward) for impl in impls}
    if smoke:
        for fn in fns.values():
            assert fn() is not None
        return {}
    medians = interleaved_medians(fns, device, rounds=rounds, warmup=2 if device.type == "cuda" else 1)
    floor_s = floor_bytes(feat, theta, mask, backward) / copy_bandwidth(device)
    record_interleaved(
        f"part_warp {device.type.upper()} {case_name(shape, dtype, backward)}",
        medians,
        rounds=rounds,
        floor_s=floor_s,
        byte_model=byte_model_ratio(shape, dtype, backward) if device.type == "cuda" else None,
        device=device_name(device),
        torch=torch.__version__,
    )
    return medians


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


CPU_ROUNDS = int(os.environ.get("MSGEN_BENCH_CPU_ROUNDS", "7"))
GPU_ROUNDS = int(os.environ.get("MSGEN_BENCH_GPU_ROUNDS", "20"))
# torch.compile of the peer costs tens of seconds per case (see benchmarks/run_gpu.sh).
GPU_IMPLS = os.environ.get("MSGEN_BENCH_WARP_IMPLS", "extension,peer,compiled peer").split(",")


@pytest.mark.parametrize("backward", [False, True], ids=["F", "F+B"])
def test_part_warp_cpu(request, backward: bool) -> None:
    cpu = torch.device("cpu")
    if not extension_runs_on(cpu):
        pytest.skip("msgen._C is not built")
    smoke = smoke_run(request.config)
    shape = SMOKE_SHAPE if smoke else CPU_SHAPE
    medians = run_case(shape, torch.float32, cpu, backward, ["extension", "peer"], CPU_ROUNDS, smoke)
    if medians:
        speedup = medians["peer"] / medians["extension"]
        print(f"CPU {case_name(shape, torch.float32, backward)}: extension {speedup:.2f}x faster than the peer")


@pytest.mark.parametrize("backward", [False, True], ids=["F", "F+B"])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: case_name(c[0], c[1], False)[:-2])
def test_part_warp_gpu(request, case, backward: bool) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    device = torch.device("cuda")
    if not extension_runs_on(device):
        pytest.fail("msgen._C has no CUDA kernels: build with FORCE_CUDA=1")
    smoke = smoke_run(request.config)
    shape, dtype = (SMOKE_SHAPE, case[1]) if smoke else case
    feat, theta, mask = make_inputs(shape, dtype, device, grad=backward)
    peak = gpu_peak_extra_bytes(step(warp_of("extension"), feat, theta, mask, backward), device)
    # The output (and for F+B grad_feat and its accumulation buffer, at most the output's size):
    # no temporary larger than the output, no P-times expansion.
    allowed = output_bytes(feat, mask) * (3 if backward else 1) + (1 << 20)
    assert peak <= allowed, f"extension peak extra memory {peak} B, allowed {allowed} B"
    run_case(shape, dtype, device, backward, GPU_IMPLS, GPU_ROUNDS, smoke)


def test_cpu_extension_allocates_at_most_its_output(request) -> None:
    """CPU memory: the extension's forward allocates its output (and theta as float32) only."""
    cpu = torch.device("cpu")
    if not extension_runs_on(cpu):
        pytest.skip("msgen._C is not built")
    shape = SMOKE_SHAPE if smoke_run(request.config) else CPU_SHAPE
    feat, theta, mask = make_inputs(shape, torch.float32, cpu, grad=False)
    allocated = cpu_allocated_bytes(lambda: part_warp(feat, theta, mask, impl="extension"))
    assert allocated <= output_bytes(feat, mask) + theta.numel() * 4
