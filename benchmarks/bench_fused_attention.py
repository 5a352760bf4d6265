"""Benchmarks of msgen.ops.fused_attention: the reference eager, torch.compile of the reference, and
the Triton kernels; forward (F, no autograd) and forward + backward (F+B, all eight gradients).

Shapes are the fusion rows of docs/PERFORMANCE.md. Its tuples read (B, M, Ce, Cd, H, W):
xi has Ce channels and psi Cd; that is the reading under which its floor column is reproduced
(e.g. (32,5,128,64,128,64) fp32: 939 MB forward / 3.02 TB/s = 0.311 ms). ``floor_bytes`` follows it:
F reads psi and xi once and writes out once; F+B adds reading grad_out and xi and writing grad_psi
and grad_xi (the six weights are negligible).

The three impls of a case are timed interleaved (``conftest.interleaved_medians``: they alternate
round by round, medians compared), after the Triton result is checked against the eager
reference. The medians, the floor time and the byte-model ratio (msgen.ops.byte_model) of each case
are printed at the end of the run and appended to MSGEN_BENCH_RESULTS as they are measured.
Under --benchmark-disable (CI, CPU) each body runs once at a tiny shape, the Triton one through
TRITON_INTERPRET=1; only the first PERFORMANCE.md shape stands in for the tiny one there.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import pytest
import torch

from msgen.ops import byte_model, fused_attention, fused_attention_reference

from conftest import copy_bandwidth, device_name, interleaved_medians, record_interleaved, smoke_run


@dataclass(frozen=True)
class FusionShape:
    B: int
    M: int
    Ce: int
    Cd: int
    H: int
    W: int

    def __str__(self) -> str:
        return f"({self.B},{self.M},{self.Ce},{self.Cd},{self.H},{self.W})"

    def floor_bytes(self, dtype: torch.dtype, backward: bool) -> int:
        size = torch.finfo(dtype).bits // 8
        pixels = self.H * self.W
        psi = self.B * self.Cd * pixels * size
        xi = self.B * self.M * self.Ce * pixels * size
        out = self.B * (self.Cd + self.Ce) * pixels * size
        forward = psi + xi + out
        return forward + (out + xi + psi + xi if backward else 0)


PERF_SHAPES = [
    FusionShape(32, 5, 128, 64, 128, 64),
    FusionShape(32, 10, 128, 64, 128, 64),
    FusionShape(8, 5, 128, 64, 256, 256),
    FusionShape(32, 2, 256, 128, 64, 32),
]
SMOKE_SHAPE = FusionShape(2, 3, 6, 5, 7, 5)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_inputs(shape: FusionShape, dtype: torch.dtype, device: torch.device, requires_grad: bool):
    """psi, xi and the six weights (hidden (Cd + Ce) // 4), all in dtype, as a decoder level has."""
    z, hidden = shape.Cd + shape.Ce, (shape.Cd + shape.Ce) // 4
    shapes = [
        (shape.B, shape.Cd, shape.H, shape.W),
        (shape.B, shape.M, shape.Ce, shape.H, shape.W),
        (z,),
        (),
        (hidden, z),
        (hidden,),
        (shape.Ce, hidden),
        (shape.Ce,),
    ]
    scales = [1.0, 1.0, 1 / math.sqrt(z), 1.0, 1 / math.sqrt(z), 1.0, 1 / math.sqrt(hidden), 1.0]
    return [
        (torch.randn(s, device=device, dtype=torch.float32) * k).to(dtype).requires_grad_(requires_grad)
        for s, k in zip(shapes, scales)
    ]


def make_impl(impl: str):
    if impl == "reference":
        return functools.partial(fused_attention, impl="reference")
    if impl == "triton":
        return functools.partial(fused_attention, impl="triton")
    # A fresh cache for each case: 4 shapes x 2 dtypes x (F, F+B) would pass dynamo's recompile
    # limit, past which it silently runs the reference eagerly.
    torch._dynamo.reset()
    return torch.compile(fused_attention_reference, dynamic=False)


ROUNDS = int(os.environ.get("MSGEN_BENCH_GPU_ROUNDS", "20"))
# Which impls to time; torch.compile costs tens of seconds per case, so a short GPU slot
# (benchmarks/run_gpu.sh) times "reference,triton" first and adds "compile" if time is left.
IMPLS = os.environ.get("MSGEN_BENCH_FUSION_IMPLS", "reference,compile,triton").split(",")


@pytest.mark.parametrize("direction", ["F", "F+B"])
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("shape", PERF_SHAPES, ids=str)
def test_fusion(request, bench_device, shape, dtype_name, direction):
    smoke = smoke_run(request.config)
    if smoke:
        if shape != PERF_SHAPES[0]:
            pytest.skip("smoke run: the first shape's case runs each body once at a tiny shape")
        run_shape = SMOKE_SHAPE
    else:
        if bench_device.type != "cuda":
            pytest.skip("the PERFORMANCE.md fusion shapes are timed on a CUDA GPU")
        run_shape = shape
    dtype = DTYPES[dtype_name]
    backward = direction == "F+B"
    inputs = make_inputs(run_shape, dtype, bench_device, requires_grad=backward)
    grad_out = torch.randn(
        run_shape.B, run_shape.Cd + run_shape.Ce, run_shape.H, run_shape.W, device=bench_device, dtype=dtype
    )
    with torch.no_grad():
        got, want = make_impl("triton")(*inputs), make_impl("reference")(*inputs)
    tol = 1e-3 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)

    def body(fn):
        def forward():
            with torch.no_grad():
                return fn(*inputs)

        def forward_backward():
            # autograd.grad, not .backward(): accumulating into .grad would add traffic of its own.
            return torch.autograd.grad(fn(*inputs), inputs, grad_out)

        return forward_backward if backward else forward

    fns = {impl: body(make_impl(impl)) for impl in IMPLS}
    if smoke:
        for fn in fns.values():
            assert fn() is not None
        return
    medians = interleaved_medians(fns, bench_device, rounds=ROUNDS, warmup=2)
    bytes_ = byte_model.fusion_bytes(
        (run_shape.B, run_shape.M, run_shape.Ce, run_shape.Cd, run_shape.H, run_shape.W), dtype_name
    )
    record_interleaved(
        f"fusion {run_shape} {dtype_name} {direction}",
        medians,
        rounds=ROUNDS,
        floor_s=run_shape.floor_bytes(dtype, backward) / copy_bandwidth(bench_device),
        byte_model=f"{bytes_[f'design {direction}'] / bytes_[f'floor {direction}']:.2f}x",
        device=device_name(bench_device),
        torch=torch.__version__,
    )
