"""Performance design of the fused_attention kernels, checked without a GPU (PERFORMANCE.md,
"What can be checked without a GPU"), and the byte model of both ops.

- TTGIR layouts for sm_90: no tensor of a kernel spreads warps over the source or channel axis,
  so the sums over sources and channels never go through shared memory and barriers.
- ptxas register counts: low enough for many programs per SM, and no spills.
- Launches and host synchronisations per forward + backward of the Triton op, counted by
  dispatch on CPU with the kernels replaced by counters.
- The byte model (msgen.ops.byte_model): the design's bytes over the floor at every
  PERFORMANCE.md shape, held at issue 30's targets where the design can reach them.
"""

from __future__ import annotations

import collections
import importlib
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from msgen.ops import byte_model

from test_fused_attention import _KERNEL_NAMES, Case, make_inputs, make_valid, triton_ptxas

fa = importlib.import_module("msgen.ops.fused_attention")

# The largest register count ptxas may give either kernel at 1 warp per program:
# 65536 / (128 * 32) = 16 programs (warps) per SM at least.
MAX_REGISTERS = 128
STATIC_SHAPES = byte_model.FUSION_SHAPES  # every PERFORMANCE.md fusion shape


def sm90_layouts_and_registers(shapes: list, dtypes: list[str], workdir: str) -> dict:
    """{"shape dtype kernel": {"layouts": [(sizePerThread, threadsPerWarp, warpsPerCTA)],
    "registers": n, "spill": n}}; runs without the interpreter (see test_fused_attention)."""
    from test_fused_attention import _compile_for_sm90, _tuned_launches

    from msgen.kernels import fused_attention as kernels

    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",")]

    result = {}
    for shape in shapes:
        for dtype_name in dtypes:
            for name, (kernel, args, kwargs) in _tuned_launches(kernels, tuple(shape), getattr(torch, dtype_name)).items():
                compiled = _compile_for_sm90(kernel, args, kwargs)
                layouts = re.findall(
                    r"sizePerThread = \[([\d, ]+)\], threadsPerWarp = \[([\d, ]+)\], warpsPerCTA = \[([\d, ]+)\]",
                    compiled.asm["ttgir"],
                )
                path = os.path.join(workdir, "kernel.ptx")
                with open(path, "w") as f:
                    f.write(compiled.asm["ptx"])
                report = subprocess.run(
                    [triton_ptxas(90), "-arch=sm_90a", "-v", path, "-o", path + ".o"],
                    capture_output=True, text=True, check=True,
                ).stderr
                result[f"{tuple(shape)} {dtype_name} {name}"] = {
                    "layouts": [[ints(a), ints(b), ints(c)] for a, b, c in layouts],
                    "registers": int(re.search(r"Used (\d+) registers", report).group(1)),
                    "spill": int(re.search(r"(\d+) bytes spill stores", report).group(1)),
                    "num_warps": kwargs["num_warps"],
                }
    return result


def test_fusion_kernels_reduce_inside_a_warp_with_few_registers(tmp_path):
    pytest.importorskip("triton.backends.nvidia")
    try:
        triton_ptxas(90)
    except RuntimeError as error:
        pytest.skip(f"triton ships no ptxas for sm_90 here: {error}")
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    # One process per shape, side by side: each compiles every autotune configuration of both
    # kernels in both dtypes (the compiles dominate the test's time).
    processes = []
    for index, shape in enumerate(STATIC_SHAPES):
        workdir = tmp_path / str(index)
        workdir.mkdir()
        code = (
            f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            "from test_kernel_static import sm90_layouts_and_registers as f; "
            f"print(json.dumps(f([{tuple(shape)!r}], ['float32', 'bfloat16'], {str(workdir)!r})))"
        )
        processes.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    kernels = {}
    for process in processes:
        stdout, stderr = process.communicate(timeout=1200)
        assert process.returncode == 0, stderr[-3000:]
        kernels.update(json.loads(stdout.strip().splitlines()[-1]))
    # Every autotune configuration of both kernels at every shape and dtype (at least one each).
    for shape in STATIC_SHAPES:
        for dtype_name in ("float32", "bfloat16"):
            for kernel in _KERNEL_NAMES:
                assert any(name.startswith(f"{tuple(shape)} {dtype_name} {kernel} ") for name in kernels)
    for name, info in kernels.items():
        for size, threads, warps in info["layouts"]:
            # Tiles are (source, channel, pixel), (source or channel, pixel) or (source, channel):
            # warps may only split the last axis, so no sum over sources or channels crosses warps.
            assert all(w == 1 for w in warps[:-1]), f"{name}: warpsPerCTA {warps} spans sources/channels"
        assert info["spill"] == 0, f"{name} spills {info['spill']} bytes"
        assert info["registers"] <= MAX_REGISTERS, f"{name}: {info['registers']} registers"


# --- launches and host synchronisations ---------------------------------------------------------

# Ops that only make views or allocate: no kernel launch on a GPU.
_NO_LAUNCH = {
    "aten.empty.memory_format", "aten.empty_like.default", "aten.new_empty.default", "aten.view.default",
    "aten._unsafe_view.default", "aten.expand.default", "aten.permute.default", "aten.t.default",
    "aten.unsqueeze.default", "aten.slice.Tensor", "aten.select.int", "aten.alias.default",
    "aten.detach.default", "aten.as_strided.default", "aten.squeeze.dim", "aten.transpose.int",
    "aten.view.dtype",
}
_HOST_SYNCS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.is_nonzero.default", "aten.item.default"}
# Per forward + backward of the Triton op at PERFORMANCE.md's small shape (32, 2, 256, 128, 64, 32),
# float32, Triton kernels and the 3 ops of the asynchronous valid check included. The design
# before the chunked kernels made 34 (4 Triton kernels, the channel gate's MLP and its backward in
# torch between them, the partial sums added up by torch).
SMALL_SHAPE_LAUNCHES_BEFORE = 34
class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def _count_launches(monkeypatch, case: Case) -> tuple[collections.Counter, collections.Counter]:
    """(Triton launches by kernel, torch ops by name) of one forward + backward of the Triton op; the
    op bodies run under a dispatch counter, the Triton kernels replaced by counters (their outputs
    are then garbage: only the calls are counted)."""
    from msgen.kernels import fused_attention as kernels

    launches = collections.Counter()

    class Counter:
        def __init__(self, name: str) -> None:
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.update([self.name])

    for name in _KERNEL_NAMES:
        monkeypatch.setattr(kernels, name, Counter(name))
    psi, xi, *weights = make_inputs(case)
    valid = make_valid(case.B, case.M).to("meta")  # a device tensor: its check must not sync
    grad_out = torch.ones(case.B, case.Cd + case.Ce, case.H, case.W)
    with _CountOps() as counted:
        out, _, *saved = fa._fused_attention_op._init_fn(psi, xi, weights, valid, 1e-7, False)
        fa._fused_attention_backward_op._init_fn(grad_out, None, psi, xi, weights, valid, *saved, 1e-7)
    return launches, counted.ops


def test_launches_and_host_syncs_per_forward_backward(monkeypatch):
    """At PERFORMANCE.md's small shape (32, 2, 256, 128, 64, 32), float32: at most half the launches
    of the design before, no host synchronisation, one Triton launch per chunk and direction."""
    from msgen.kernels import fused_attention as kernels

    case = Case(B=32, M=2, Cd=128, Ce=256, H=64, W=32, hidden=(128 + 256) // 4)
    launches, ops = _count_launches(monkeypatch, case)
    HW = case.H * case.W
    for name in _KERNEL_NAMES:
        plan = kernels.plan(case.B, case.M, case.Cd, case.Ce, HW, case.hidden, 4)
        assert launches[name] == len(plan.chunks), name
    syncs = {op: n for op, n in ops.items() if op in _HOST_SYNCS}
    assert not syncs, f"host synchronisations: {syncs}"
    torch_launches = {op: n for op, n in ops.items() if op not in _NO_LAUNCH}
    total = sum(torch_launches.values()) + sum(launches.values())
    assert 2 * total <= SMALL_SHAPE_LAUNCHES_BEFORE, f"{total} launches: {torch_launches} and {dict(launches)}"


def test_valid_check_raises_on_cpu_and_does_not_sync_on_a_device():
    with pytest.raises(ValueError, match="no source"):
        fa.require_a_valid_source(torch.tensor([[True, False], [False, False]]), "test")
    with _CountOps() as counted:
        fa.require_a_valid_source(torch.tensor([[True, False], [False, False]], device="meta"), "test")
    assert not set(counted.ops) & _HOST_SYNCS


# --- the byte model -----------------------------------------------------------------------------

# The design's bytes over the floor, at most (PERFORMANCE.md shapes, fp32 and bf16). The warp
# reaches the 1.3x aim; the fusion is held by test_fusion_byte_model_reaches_the_targets_or_the_bound_of_its_l2_budget.
BYTE_BOUNDS = {("warp", "F"): 1.01, ("warp", "F+B"): 1.30}


def test_byte_model_holds_the_design_bounds():
    ratios = byte_model.ratios()
    assert len(ratios) == (len(byte_model.FUSION_SHAPES) + len(byte_model.WARP_SHAPES)) * 2 * 2
    for r in ratios:
        if r.op == "warp":
            assert 1.0 <= r.ratio <= BYTE_BOUNDS[r.op, r.direction], str(r)


# The fusion's DRAM bytes over the floor (the model is held to the kernels' counted bytes in
# tests/test_fused_attention.py): issue 30's 1.15x forward and 1.3x forward + backward wherever
# the bound of byte_model.fusion_bound with the design's L2 budget allows them. Where it does not
# (one sample's xi, or xi and grad_out in the backward, larger than the budget), the design must
# stay within DESIGN_OVER_BOUND of that bound: its excess is then the gate's own state (g, partial
# sums), not a second read that a better tiling could save.
FUSION_TARGETS = {"F": 1.15, "F+B": 1.30}
DESIGN_OVER_BOUND = 1.06


def test_fusion_byte_model_reaches_the_targets_or_the_bound_of_its_l2_budget():
    from msgen.kernels.fused_attention import L2_CHUNK_BYTES

    missed = []
    for shape in byte_model.FUSION_SHAPES:
        for dtype in byte_model.DTYPE_BYTES:
            b = byte_model.fusion_bytes(shape, dtype)
            bound = byte_model.fusion_bound(shape, dtype, L2_CHUNK_BYTES)
            for direction, target in FUSION_TARGETS.items():
                floor = b[f"floor {direction}"]
                ratio = b[f"design {direction}"] / floor
                assert ratio >= 1.0 and bound[direction] >= floor
                if ratio > target:
                    assert b[f"design {direction}"] <= DESIGN_OVER_BOUND * bound[direction], (
                        f"{shape} {dtype} {direction}: {ratio:.3f}x the floor, the bound {bound[direction] / floor:.3f}x")
                    missed.append((shape, dtype, direction))
    # The 256x256 shape in both dtypes and M = 10 fp32 forward: the ones whose footprint per sample
    # exceeds 32 MB. A change that lowers the bytes elsewhere shows here.
    assert len(missed) == 5, missed


def test_no_exact_fusion_kernel_reaches_the_forward_target_at_256x256_fp32():
    # Even holding xi in all of an H100's L2, registers and shared memory across a grid-wide barrier,
    # the second read of a 168 MB sample misses 56 MB: at least 1.21x the floor, above 1.15x.
    shape = (8, 5, 128, 64, 256, 256)
    floor = byte_model.fusion_floor(shape, "fp32")
    on_chip = byte_model.fusion_bound(shape, "fp32", byte_model.H100_ON_CHIP_BYTES)
    assert on_chip["F"] / floor["F"] > FUSION_TARGETS["F"]
    assert on_chip["F+B"] / floor["F+B"] < FUSION_TARGETS["F+B"]  # a persistent design could meet F+B
    # The bound counts the second read only: at an L2 as large as the whole sample it is the floor.
    assert byte_model.fusion_bound(shape, "fp32", 1 << 40) == floor


# PERFORMANCE.md's floor columns (ms at 3.02 TB/s), fp32: the model's floor must reproduce them.
PERFORMANCE_FLOORS_MS = {
    ("fusion", (32, 5, 128, 64, 128, 64)): (0.311, 0.844),
    ("fusion", (32, 10, 128, 64, 128, 64)): (0.533, 1.511),
    ("fusion", (8, 5, 128, 64, 256, 256)): (0.622, 1.689),
    ("fusion", (32, 2, 256, 128, 64, 32)): (0.089, 0.222),
    ("warp", (160, 64, 128, 64, 10)): (0.240, 0.479),
    ("warp", (160, 128, 64, 32, 10)): (0.115, 0.231),
    ("warp", (40, 64, 256, 256, 10)): (0.479, 0.959),
}


@pytest.mark.parametrize("op, shape", list(PERFORMANCE_FLOORS_MS), ids=str)
def test_byte_model_floor_is_performance_mds_floor(op, shape):
    model = byte_model.fusion_bytes if op == "fusion" else byte_model.warp_bytes
    b = model(shape, "fp32")
    for direction, expected_ms in zip(("F", "F+B"), PERFORMANCE_FLOORS_MS[op, shape]):
        assert b[f"floor {direction}"] / 3.02e12 * 1e3 == pytest.approx(expected_ms, rel=0.02), direction
