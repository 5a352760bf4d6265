"""Shared benchmark plumbing: the device, the smoke switch, recording a case, the closing tables.

`pytest benchmarks/ --benchmark-only` times every op on the machine at hand (see README.md,
"Benchmarks") and ends with one ratio table per op (``tables.py``); `--benchmark-disable` runs
each body once at a tiny shape (CI's smoke run). How a case is timed is in ``timing.py``.
Environment: MSGEN_BENCH_RESULTS=path appends each case to a JSON-lines file the moment it is
measured; MSGEN_BENCH_MARKDOWN=path appends the closing tables to a file; MSGEN_BENCH_CPU_ROUNDS /
MSGEN_BENCH_GPU_ROUNDS override the rounds.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable

import pytest
import torch

from tables import ratio_tables

if not torch.cuda.is_available():
    # The smoke run executes the Triton kernels' bodies on CPU tensors through the interpreter.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def synchronized(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """Wrap fn so the timed region ends when the GPU work it queued has finished."""
    if device.type != "cuda":
        return fn

    def run() -> object:
        result = fn()
        torch.cuda.synchronize(device)
        return result

    return run


def smoke_run(config: pytest.Config) -> bool:
    """True under --benchmark-disable: run each body once at small shapes instead of timing."""
    return bool(config.getoption("benchmark_disable", False))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def rounds(device: torch.device, cpu: int, gpu: int = 10) -> int:
    """Interleaved rounds of a case: the op's default, or MSGEN_BENCH_CPU_ROUNDS / _GPU_ROUNDS."""
    if device.type == "cuda":
        return int(os.environ.get("MSGEN_BENCH_GPU_ROUNDS", gpu))
    return int(os.environ.get("MSGEN_BENCH_CPU_ROUNDS", cpu))


def env_impls(variable: str, default: list[str]) -> list[str]:
    """The implementations a benchmark times: a comma list in `variable` (benchmarks/run_gpu.sh
    times the cheap ones first) or the default."""
    value = os.environ.get(variable)
    return [impl.strip() for impl in value.split(",") if impl.strip()] if value else default


@pytest.fixture
def bench_device() -> torch.device:
    return default_device()


def record(benchmark, entry: dict) -> None:
    """Keep one timed case (``tables.py`` says its fields) for the closing tables and append it to
    MSGEN_BENCH_RESULTS at once, so a run stopped at its time limit keeps what it measured."""
    device = default_device()
    entry = {**entry, "device": device_name(device), "torch": torch.__version__,
             "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    benchmark.extra_info["msgen"] = entry
    path = os.environ.get("MSGEN_BENCH_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def _versions() -> str:
    text = f"torch {torch.__version__}, CUDA {torch.version.cuda}"
    try:
        import triton

        text += f", triton {triton.__version__}"
    except ImportError:
        pass
    return text


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own table: the run ends with the ratios
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if smoke_run(config) or session is None:
        return
    entries = [b.extra_info["msgen"] for b in session.benchmarks if "msgen" in b.extra_info and not b.has_error]
    if not entries:
        return
    device = default_device()
    header = [
        f"Device: {device_name(device)}; {_versions()}; {time.strftime('%Y-%m-%d')}",
        "Each row: the implementations timed interleaved in one benchmark (round by round, order reversed",
        "every other round), median ms each; 'X / B' = X's median over the base B's (above 1: B is faster);",
        "'x floor' = B's median over the floor (the bytes each input read once and each output written once",
        f"take at the copy bandwidth measured in this run{', by CUDA events' if device.type == 'cuda' else ': memcpy'}).",
    ]
    terminalreporter.write_sep("=", "msgen ratio tables")
    lines = header + ratio_tables(entries)
    for line in lines:
        terminalreporter.write_line(line)
    path = os.environ.get("MSGEN_BENCH_MARKDOWN")
    if path:
        with open(path, "a") as f:
            f.write("\n".join(lines) + "\n")
