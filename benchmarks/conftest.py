"""Shared benchmark helpers: synchronised timing, bandwidth reporting, device description.

Run with `pytest benchmarks/ --benchmark-only` (GPU numbers) or `--benchmark-disable` (a smoke run
that executes every benchmark body once, as CI does).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable

import pytest
import torch

if not torch.cuda.is_available():
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


@pytest.fixture
def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def record(benchmark):
    """record(bytes_moved=..., **extra) stores bandwidth and context next to pytest-benchmark's stats."""

    def _record(bytes_moved: int | None = None, **extra: object) -> None:
        info = benchmark.extra_info
        info.update(extra)
        info["torch"] = torch.__version__
        if bytes_moved is not None:
            info["bytes"] = int(bytes_moved)
            stats = getattr(benchmark, "stats", None)
            if stats is not None and getattr(stats, "stats", None) is not None:
                info["GB/s (median)"] = bytes_moved / stats.stats.median / 1e9

    return _record
