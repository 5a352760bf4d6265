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
    return _default_device()


# --- Interleaved timing -------------------------------------------------------------------------
# pytest-benchmark times one implementation after the other, so a burst of load from another
# process on a shared machine lands on one of them only. These helpers alternate the
# implementations round by round (A B C, C B A, ...) and compare medians, so noise hits all alike.
# Each case's medians go to the ratio table at the end of the run and, as soon as they exist, to
# MSGEN_BENCH_RESULTS (one JSON object per line), so a run cut short keeps what it measured.

_INTERLEAVED: list[dict] = []


def interleaved_medians(
    fns: dict[str, Callable[[], object]], device: torch.device, rounds: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each fn over `rounds` rounds, the order reversed every other round."""
    import statistics
    import time

    timed = {name: synchronized(fn, device) for name, fn in fns.items()}
    for _ in range(warmup):
        for fn in timed.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in timed}
    names = list(timed)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            timed[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def record_interleaved(case: str, medians: dict[str, float], **info: object) -> None:
    """Keep one case's medians for the ratio table and append them to MSGEN_BENCH_RESULTS."""
    import json
    import time

    entry = {"case": case, "medians_s": medians, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    entry.update(info)
    _INTERLEAVED.append(entry)
    path = os.environ.get("MSGEN_BENCH_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def _interleaved_tables() -> list[str]:
    lines = []
    for entry in _INTERLEAVED:
        medians = entry["medians_s"]
        names = list(medians)
        lines.append(f"\n#### {entry['case']} (interleaved, {entry.get('rounds', '?')} rounds)\n")
        lines.append("| impl | median ms | " + " | ".join(f"x vs {n}" for n in names) + " | x floor |")
        lines.append("|---" * (len(names) + 3) + "|")
        floor = entry.get("floor_s")
        for name in names:
            ratios = " | ".join(f"{medians[other] / medians[name]:.2f}" for other in names)
            x_floor = f"{medians[name] / floor:.2f}" if floor else "-"
            lines.append(f"| {name} | {medians[name] * 1e3:.3f} | {ratios} | {x_floor} |")
        if entry.get("byte_model"):
            lines.append(f"\nbyte model (design bytes / floor bytes): {entry['byte_model']}")
    return lines


# --- Ratio tables ------------------------------------------------------------------------------
# Every benchmark sets benchmark.group (one case) and extra_info["impl"]; optional
# extra_info["floor_bytes"] (each input read once, each output written once). At the end of a timed
# run this prints, per case, each impl's median, its ratio to the other impls of the same case and
# to the memory floor at the copy bandwidth measured in the same run. MSGEN_BENCH_MARKDOWN=path also
# writes the tables as Markdown (for benchmarks/RESULTS.md).

_COPY_BANDWIDTH: dict[str, float] = {}


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a large device copy (read + write counted), measured once per run."""
    key = str(device)
    if key not in _COPY_BANDWIDTH:
        import time

        numel = (256 << 20) // 4 if device.type == "cuda" else (32 << 20) // 4
        src = torch.empty(numel, device=device)
        dst = torch.empty_like(src)
        times = []
        for _ in range(10):
            start = time.perf_counter()
            synchronized(lambda: dst.copy_(src), device)()
            times.append(time.perf_counter() - start)
        _COPY_BANDWIDTH[key] = 2 * src.nbytes / sorted(times)[len(times) // 2]
    return _COPY_BANDWIDTH[key]


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _ratio_tables(benchmarks: list) -> list[str]:
    cases: dict[str, list] = {}
    for bench in benchmarks:
        if bench.stats is None or bench.has_error or "impl" not in bench.extra_info:
            continue
        cases.setdefault(bench.group or bench.name, []).append(bench)
    lines = []
    for group, benches in cases.items():
        medians = {b.extra_info["impl"]: b.stats.median for b in benches}
        lines.append(f"\n#### {group}\n")
        impls = list(medians)
        lines.append(
            "| impl | median ms | " + " | ".join(f"x vs {i}" for i in impls) + " | x floor | GB/s | peak MB |"
        )
        lines.append("|---" * (len(impls) + 5) + "|")
        for bench in benches:
            impl, median = bench.extra_info["impl"], bench.stats.median
            ratios = " | ".join(f"{medians[other] / median:.2f}" for other in impls)
            floor_bytes = bench.extra_info.get("floor_bytes")
            bandwidth = bench.extra_info.get("copy_bandwidth") or copy_bandwidth(_default_device())
            if floor_bytes and bandwidth:
                floor = f"{median / (floor_bytes / bandwidth):.2f}"
                gbps = f"{floor_bytes / median / 1e9:.0f}"
            else:
                floor = gbps = "-"
            peak = bench.extra_info.get("peak_bytes", bench.extra_info.get("peak_extra_bytes"))
            peak = f"{peak / 2**20:.1f}" if peak is not None else "-"
            lines.append(f"| {impl} | {median * 1e3:.3f} | {ratios} | {floor} | {gbps} | {peak} |")
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if smoke_run(config):
        return
    lines = _ratio_tables(session.benchmarks) if session is not None and session.benchmarks else []
    lines += _interleaved_tables()
    if not lines:
        return
    header = [
        f"Device: {device_name(_default_device())}",
        f"torch {torch.__version__}, CUDA {torch.version.cuda}",
        "Ratios 'x vs I' are I's median over this row's median (above 1: this row is faster);",
        "'x floor' is this row's median over the floor time (floor_bytes / copy bandwidth).",
    ]
    try:
        import triton

        header[1] += f", triton {triton.__version__}"
    except ImportError:
        pass
    terminalreporter.write_sep("=", "msgen ratio tables")
    for line in header + lines:
        terminalreporter.write_line(line)
    path = os.environ.get("MSGEN_BENCH_MARKDOWN")
    if path:
        with open(path, "a") as f:
            f.write("\n".join(header + lines) + "\n")
