"""fused_attention: the Triton kernels against torch.compile of the plain-PyTorch reference and the
reference itself; forward (F, no autograd) and forward + backward (F+B, all eight gradients).

The op is called through ``msgen.ops.AttentionFusion(psi_channels, xi_channels, impl=...)``, one
module per implementation holding the same weights. GPU cases are the fusion rows of docs/PERFORMANCE.md
in fp32 and bf16; its tuples read (B, M, Ce, Cd, H, W): xi has Ce channels and psi Cd, the reading
under which its floor column is reproduced ((32,5,128,64,128,64) fp32: 939 MB forward / 3.02 TB/s
= 0.311 ms). On a CPU one case, (2, 5, 32, 32, 128, 64) fp32 (two tuples of five sources at
Market's 128x64), compares the reference with torch.compile of it, the CPU's peer;
the Triton kernels run on a GPU only (the interpreter's speed says nothing about them) and are
listed as such. One benchmark per case times its implementations interleaved (``timing.py``),
after checking the Triton result against the reference where Triton runs; MSGEN_BENCH_FUSION_IMPLS
picks them (default "triton,compile,reference"; benchmarks/run_gpu.sh times "triton,reference"
first, torch.compile costs tens of seconds per case) and MSGEN_BENCH_DIRECTIONS the directions.
Under --benchmark-disable each body runs once at a tiny shape, Triton's through TRITON_INTERPRET=1.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from msgen.ops import AttentionFusion, byte_model

from conftest import default_device, env_impls, record, rounds, smoke_run
from timing import Interleaved, copy_bandwidth


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
        """F reads psi and xi once and writes out once; F+B adds reading grad_out and xi and
        writing grad_psi and grad_xi (the six weights are negligible)."""
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
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
DEVICE = default_device()
CPU_CASES = [(FusionShape(2, 5, 32, 32, 128, 64), "fp32")]
GPU_CASES = [(shape, dtype) for shape in PERF_SHAPES for dtype in DTYPES]
CASES = GPU_CASES if DEVICE.type == "cuda" else CPU_CASES
SMOKE_SHAPE = FusionShape(2, 3, 6, 5, 7, 5)
ALL_IMPLS = ["triton", "compile", "reference"]


def make_inputs(shape: FusionShape, dtype: torch.dtype, device: torch.device, requires_grad: bool):
    """psi (B, Cd, H, W) and xi (B, M, Ce, H, W), seeded, in dtype."""
    g = torch.Generator().manual_seed(0)
    psi = torch.randn(shape.B, shape.Cd, shape.H, shape.W, generator=g)
    xi = torch.randn(shape.B, shape.M, shape.Ce, shape.H, shape.W, generator=g)
    return [t.to(device, dtype).requires_grad_(requires_grad) for t in (psi, xi)]


def make_modules(shape: FusionShape, dtype: torch.dtype, device: torch.device, impls: list[str]) -> dict:
    """One AttentionFusion per impl, all with the same seeded weights."""
    torch.manual_seed(0)
    base = AttentionFusion(shape.Cd, shape.Ce, impl="reference").to(device, dtype)
    modules = {}
    for impl in impls:
        module = AttentionFusion(shape.Cd, shape.Ce, impl="triton" if impl == "triton" else "reference")
        module.load_state_dict(base.state_dict())
        module = module.to(device, dtype)
        if impl == "compile":
            # A fresh cache for each case: past dynamo's recompile limit it runs the reference eagerly.
            torch._dynamo.reset()
            module = torch.compile(module, dynamic=False)
        modules[impl] = module
    return modules


def byte_model_ratio(shape: FusionShape, dtype_name: str, direction: str) -> str | None:
    """The Triton kernels' design bytes over the floor's (msgen.ops.byte_model), None if it has no entry."""
    try:
        b = byte_model.fusion_bytes((shape.B, shape.M, shape.Ce, shape.Cd, shape.H, shape.W), dtype_name)
        return f"{b[f'design {direction}'] / b[f'floor {direction}']:.2f}x"
    except (KeyError, TypeError, ValueError):
        return None


@pytest.mark.parametrize("direction", env_impls("MSGEN_BENCH_DIRECTIONS", ["F", "F+B"]))
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_fusion(benchmark, request, case, direction: str) -> None:
    smoke = smoke_run(request.config)
    shape, dtype_name = case
    run_shape = SMOKE_SHAPE if smoke else shape
    dtype, backward = DTYPES[dtype_name], direction == "F+B"
    impls = env_impls("MSGEN_BENCH_FUSION_IMPLS", ALL_IMPLS)
    if DEVICE.type != "cuda" and not smoke:  # the interpreter runs the Triton code in the smoke run only
        impls = [impl for impl in impls if impl != "triton"]
    psi, xi = make_inputs(run_shape, dtype, DEVICE, requires_grad=backward)
    modules = make_modules(run_shape, dtype, DEVICE, impls)
    if "triton" in modules:
        reference = modules.get("reference") or make_modules(run_shape, dtype, DEVICE, ["reference"])["reference"]
        with torch.no_grad():
            got, want = modules["triton"](psi, xi), reference(psi, xi)
        tol = 1e-3 if dtype == torch.float32 else 5e-2
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    grad_out = torch.randn(run_shape.B, run_shape.Cd + run_shape.Ce, run_shape.H, run_shape.W,
                           generator=torch.Generator().manual_seed(1)).to(DEVICE, dtype)

    def body(module):
        def forward():
            with torch.no_grad():
                return module(psi, xi)

        def forward_backward():
            # autograd.grad, not .backward(): accumulating into .grad would add traffic of its own.
            return torch.autograd.grad(module(psi, xi), [psi, xi, *module.parameters()], grad_out)

        return forward_backward if backward else forward

    timer = Interleaved({impl: body(module) for impl, module in modules.items()}, DEVICE)
    n_rounds = rounds(DEVICE, cpu=7)
    medians = timer.run(benchmark, n_rounds)
    benchmark.group = "fused_attention"
    record(benchmark, {
        "op": "fused_attention",
        "case": f"{run_shape} {dtype_name} {direction}" + (" smoke" if smoke else ""),
        "impls": ALL_IMPLS,
        "medians_s": medians,
        "not_run": {impl: "GPU only" if impl == "triton" and DEVICE.type != "cuda" else "not timed"
                    for impl in ALL_IMPLS if impl not in medians},
        "rounds": 1 if smoke else n_rounds,
        "calls": timer.calls,
        "floor_s": run_shape.floor_bytes(dtype, backward) / copy_bandwidth(DEVICE),
        "byte_model": byte_model_ratio(run_shape, dtype_name, direction) if DEVICE.type == "cuda" else None,
        "notes": ["fused_attention: compile = torch.compile of the reference (dynamic=False); F+B = all eight "
                  "gradients" + ("; triton: GPU only (the interpreter's speed says nothing of the kernels)"
                                 if "triton" not in medians and DEVICE.type != "cuda" else "")],
    })
