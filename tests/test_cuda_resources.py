"""Resource usage of every CUDA kernel instantiation in the built msgen._C, checked without a GPU.

``cuobjdump --dump-resource-usage`` lists, per kernel in the extension's sm_90 code, its registers,
stack frame and local memory. A per-thread array indexed at run time (or a register spill) lands in
local memory, which on a memory-bound kernel moves more bytes than the data itself
(PERFORMANCE.md, "What can be checked without a GPU"), so every instantiation must have 0 bytes
of stack and local memory, and few enough registers for several blocks per SM.

The test needs msgen._C built with its CUDA kernels (``FORCE_CUDA=1`` against a CUDA build of
torch; ``.ci/cuda-build-check`` does this and runs it) and a cuobjdump (the CUDA toolkit's, or the
one triton ships). Without them it skips and says why; MSGEN_REQUIRE_CUDA_BUILD=1 (set by the CI
script) turns those skips into failures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

# 128 threads per block; the launch bounds in csrc/part_warp_cuda.cu ask for 8 forward blocks
# (1024 threads, 64 registers each) and 4 backward blocks (128 registers) per SM.
MAX_REGISTERS = {"forward_kernel": 64, "backward_kernel": 128}
# The kernels of csrc/part_warp_cuda.cu: forward and backward x bilinear/nearest x 4 dtypes x
# int32/int64 offsets.
EXPECTED_KERNELS = {"forward_kernel": 16, "backward_kernel": 16}


def _missing(reason: str) -> None:
    if os.environ.get("MSGEN_REQUIRE_CUDA_BUILD") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def cuda_extension_path() -> Path:
    """The built msgen._C shared library, when it was built with its CUDA kernels."""
    override = os.environ.get("MSGEN_CUDA_EXTENSION")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("msgen._C")
    if spec is None or spec.origin is None:
        _missing("msgen._C is not built")
    info_path = Path(spec.origin).parent / "_build_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if not info.get("with_cuda"):
        _missing("msgen._C was built without its CUDA kernels (FORCE_CUDA=1; see .ci/cuda-build-check)")
    return Path(spec.origin)


def find_cuobjdump() -> str:
    candidates = [os.environ.get("MSGEN_CUOBJDUMP")]
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "cuobjdump"))
    candidates.append(shutil.which("cuobjdump"))
    triton = importlib.util.find_spec("triton")
    if triton is not None and triton.origin:
        candidates.append(os.path.join(os.path.dirname(triton.origin), "backends", "nvidia", "bin", "cuobjdump"))
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    _missing("no cuobjdump found (CUDA_HOME/bin, PATH, or triton's backends/nvidia/bin)")
    raise AssertionError("unreachable")


_FUNCTION = re.compile(r"^\s*Function (\S+):\s*$")
_USAGE = re.compile(r"(\w+(?:\[\d+\])?):(\d+)")


def parse_resource_usage(text: str) -> dict[str, dict[str, int]]:
    """{mangled kernel name: {"REG": n, "STACK": n, "LOCAL": n, ...}} from cuobjdump's report."""
    usage, name = {}, None
    for line in text.splitlines():
        match = _FUNCTION.match(line)
        if match:
            name = match.group(1)
            continue
        if name is not None and "REG:" in line:
            usage[name] = {key: int(value) for key, value in _USAGE.findall(line)}
            name = None
    return usage


def resource_usage(library: Path) -> dict[str, dict[str, int]]:
    result = subprocess.run(
        [find_cuobjdump(), "--dump-resource-usage", str(library)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return parse_resource_usage(result.stdout)


def test_parser_reads_cuobjdump_lines() -> None:
    """The parser on the format cuobjdump prints (so a format change fails here, not silently)."""
    sample = (
        "Resource usage:\n"
        " Common:\n  GLOBAL:0\n"
        " Function _ZN5msgen14forward_kernelIfiLb1EEEvv:\n"
        "  REG:40 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:600 TEXTURE:0 SURFACE:0 SAMPLER:0\n"
        " Function _ZN5msgen15backward_kernelIdlLb0EEEvv:\n"
        "  REG:72 STACK:16 SHARED:0 LOCAL:8 CONSTANT[0]:640 TEXTURE:0 SURFACE:0 SAMPLER:0\n"
    )
    usage = parse_resource_usage(sample)
    assert usage["_ZN5msgen14forward_kernelIfiLb1EEEvv"]["REG"] == 40
    assert usage["_ZN5msgen15backward_kernelIdlLb0EEEvv"] == {
        "REG": 72, "STACK": 16, "SHARED": 0, "LOCAL": 8, "CONSTANT[0]": 640, "TEXTURE": 0, "SURFACE": 0,
        "SAMPLER": 0,
    }


def test_every_cuda_kernel_has_no_stack_frame_and_few_registers() -> None:
    usage = resource_usage(cuda_extension_path())
    ours = {name: u for name, u in usage.items() if "msgen" in name}
    counts = {kernel: sum(kernel in name for name in ours) for kernel in EXPECTED_KERNELS}
    assert counts == EXPECTED_KERNELS, f"kernel instantiations found: {counts}"
    report = "\n".join(f"{u['REG']:4d} regs {u['STACK']:5d} stack {u['LOCAL']:5d} local  {n}" for n, u in ours.items())
    for name, u in ours.items():
        assert u["STACK"] == 0 and u["LOCAL"] == 0, f"{name} uses local memory:\n{report}"
        limit = next(v for kernel, v in MAX_REGISTERS.items() if kernel in name)
        assert u["REG"] <= limit, f"{name} needs {u['REG']} registers (at most {limit}):\n{report}"
    print(report)
