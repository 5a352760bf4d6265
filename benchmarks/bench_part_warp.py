"""part_warp: the compiled extension against the strongest plain-PyTorch peer and the reference.

The peer is what a competent user writes (PERFORMANCE.md): ONE grid_sample over the P-times
expanded batch, then `mask * sampled` and `amax` over parts (``strong_peer``); the readable
reference (``.max(dim=1)`` with its index tensor) is timed beside it, and every case first checks
the extension against it. Affines and masks come from body-part poses (``pose_inputs.py``).

Cases: on a CPU the Market-sized (10, 64, 128, 64, 10) fp32, forward (F) and forward + backward
w.r.t. feat (F+B); on a GPU the warp rows of PERFORMANCE.md. One benchmark per case times its
implementations interleaved (``timing.py``); MSGEN_BENCH_WARP_IMPLS picks them
(default "extension,peer,reference"; "compiled peer" is torch.compile of the peer, tens of seconds
of compilation per case). Under --benchmark-disable each body runs once at a tiny shape.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from msgen.ops import byte_model
from msgen.ops.part_warp import extension_runs_on, part_warp, part_warp_reference, sample_parts

from conftest import default_device, env_impls, record, rounds, smoke_run
from pose_inputs import warp_inputs
from timing import Interleaved, copy_bandwidth

DEVICE = default_device()
CPU_CASES = [((10, 64, 128, 64, 10), torch.float32)]  # (N, C, H, W, P): B = 2 tuples of M = 5
GPU_CASES = [  # PERFORMANCE.md's warp rows
    ((160, 64, 128, 64, 10), torch.float32),
    ((160, 64, 128, 64, 10), torch.bfloat16),
    ((160, 128, 64, 32, 10), torch.float32),
    ((40, 64, 256, 256, 10), torch.float32),
]
CASES = GPU_CASES if DEVICE.type == "cuda" else CPU_CASES
SMOKE_SHAPE = (2, 3, 9, 7, 4)
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}
ALL_IMPLS = ["extension", "peer", "compiled peer", "reference"]


def case_name(shape: tuple[int, ...], dtype: torch.dtype, backward: bool) -> str:
    """E.g. "(160,64,128,64,10) fp32 F+B" in PERFORMANCE.md's (N, C, H, W, P) order."""
    return f"({','.join(map(str, shape))}) {DTYPE_NAMES[dtype]} {'F+B' if backward else 'F'}"


def output_bytes(feat: torch.Tensor, mask: torch.Tensor) -> int:
    return feat.shape[0] * feat.shape[1] * mask.shape[2] * mask.shape[3] * feat.element_size()


def floor_bytes(feat: torch.Tensor, theta: torch.Tensor, mask: torch.Tensor, backward: bool) -> int:
    """Each input read once, the output written once; F+B adds reading grad_out and the inputs again
    and writing grad_feat (counted as the forward's bytes twice)."""
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
        torch._dynamo.reset()  # a fresh cache per case: past dynamo's recompile limit it runs eagerly
        return torch.compile(strong_peer, dynamic=False)
    if impl == "reference":
        return part_warp_reference
    raise ValueError(f"unknown warp impl {impl!r}, expected one of {ALL_IMPLS}")


def call(warp: Callable, feat, theta, mask, backward: bool) -> Callable[[], object]:
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


def byte_model_ratio(shape: tuple[int, ...], dtype: torch.dtype, backward: bool) -> str | None:
    """The CUDA kernels' design bytes over the floor's (msgen.ops.byte_model), None if it has no entry."""
    direction = "F+B" if backward else "F"
    try:
        b = byte_model.warp_bytes(shape, DTYPE_NAMES[dtype])
        return f"{b[f'design {direction}'] / b[f'floor {direction}']:.2f}x"
    except (KeyError, TypeError, ValueError):
        return None


def gpu_peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


@pytest.mark.parametrize("backward", [False, True], ids=["F", "F+B"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: case_name(c[0], c[1], False)[:-2])
def test_part_warp(benchmark, request, case, backward: bool) -> None:
    if not extension_runs_on(DEVICE):
        if DEVICE.type == "cuda":
            pytest.fail("msgen._C has no CUDA kernels: build with FORCE_CUDA=1")
        pytest.skip("msgen._C is not built: pip install --no-build-isolation -e .")
    smoke = smoke_run(request.config)
    shape, dtype = (SMOKE_SHAPE, case[1]) if smoke else case
    impls = env_impls("MSGEN_BENCH_WARP_IMPLS", ["extension", "peer", "reference"])
    feat, theta, mask, poses = warp_inputs(shape, dtype, DEVICE, grad=backward)
    check_against_reference(feat.detach(), theta, mask)
    peak = None
    if DEVICE.type == "cuda":
        peak = gpu_peak_extra_bytes(call(warp_of("extension"), feat, theta, mask, backward), DEVICE)
        # The output (and for F+B grad_feat and its accumulation buffer, at most the output's size):
        # no temporary larger than the output, no P-times expansion.
        allowed = output_bytes(feat, mask) * (3 if backward else 1) + (1 << 20)
        assert peak <= allowed, f"extension peak extra memory {peak} B, allowed {allowed} B"
    timer = Interleaved({impl: call(warp_of(impl), feat, theta, mask, backward) for impl in impls}, DEVICE)
    n_rounds = rounds(DEVICE, cpu=5 if backward else 7)
    medians = timer.run(benchmark, n_rounds)
    benchmark.group = "part_warp"
    record(benchmark, {
        "op": "part_warp",
        "case": case_name(shape, dtype, backward) + (" smoke" if smoke else ""),
        "impls": [impl for impl in ALL_IMPLS if impl in impls],
        "medians_s": medians,
        "rounds": 1 if smoke else n_rounds,
        "calls": timer.calls,
        "floor_s": floor_bytes(feat, theta, mask, backward) / copy_bandwidth(DEVICE),
        "byte_model": byte_model_ratio(shape, dtype, backward) if DEVICE.type == "cuda" else None,
        "peak_bytes": {"extension": peak} if peak is not None else None,
        "notes": [f"part_warp: masks and affines of {poses}; F+B = forward + backward w.r.t. feat"],
    })


def cpu_allocated_bytes(fn: Callable[[], object]) -> int:
    """Sum of the tensors allocated while fn runs (an upper bound of its peak extra memory)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(max(0, event.self_cpu_memory_usage) for event in prof.events())


def test_cpu_extension_allocates_at_most_its_output(request) -> None:
    """CPU memory: the extension's forward allocates its output (and theta as float32) only."""
    cpu = torch.device("cpu")
    if not extension_runs_on(cpu):
        pytest.skip("msgen._C is not built")
    shape = SMOKE_SHAPE if smoke_run(request.config) else CPU_CASES[0][0]
    feat, theta, mask, _ = warp_inputs(shape, torch.float32, cpu, grad=False)
    allocated = cpu_allocated_bytes(lambda: part_warp(feat, theta, mask, impl="extension"))
    assert allocated <= output_bytes(feat, mask) + theta.numel() * 4
