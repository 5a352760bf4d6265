"""Interleaved timing through pytest-benchmark, and the copy bandwidth that sets the floor.

pytest-benchmark times one test after the other, so a burst of load from another process on a
shared machine lands on one implementation only, and a ratio of two tests taken a minute apart
moves with the load (1.22 in one run, 0.91 in the next). Here one benchmark holds every
implementation of a case: ``benchmark.pedantic`` runs rounds, and each round calls every
implementation once, in an order reversed every other round (A B C, C B A, ...). Each
implementation's median over the rounds is what the ratio tables compare; pytest-benchmark's own
row for the test is the time of one whole round.

On a CPU a call is timed by the wall clock. On a GPU each call is timed by CUDA events with the L2
flushed before it (as ``triton.testing.do_bench`` does: a 256 MB buffer zeroed), and a round makes
enough calls of each implementation to cover about ``GPU_ROUND_TARGET_S`` of its work, so
sub-millisecond kernels are timed without host dispatch and over many calls.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch

GPU_ROUND_TARGET_S = 0.01  # GPU time per implementation per round: many calls of a 0.1 ms kernel
GPU_MAX_CALLS = 100
_L2_FLUSH_BYTES = 256 << 20  # larger than any L2 (H100 50 MB, H200 60 MB), as do_bench uses


class Interleaved:
    """Times of several implementations of one case, taken in alternating order round by round."""

    def __init__(self, fns: dict[str, Callable[[], object]], device: torch.device) -> None:
        self.fns, self.device = fns, device
        self.names = list(fns)
        self.times: dict[str, list[float]] = {name: [] for name in self.names}
        self.calls = {name: 1 for name in self.names}
        self._rounds_done = 0
        self._flush = torch.empty(_L2_FLUSH_BYTES // 4, device=device) if device.type == "cuda" else None

    def warm_up(self) -> None:
        """One call of each (compilation, autotuning, allocator), then on a GPU the calls per round."""
        for fn in self.fns.values():
            fn()
        if self.device.type == "cuda":
            for name, fn in self.fns.items():
                estimate = statistics.median(self._gpu_call_times(fn, 3))
                self.calls[name] = max(1, min(GPU_MAX_CALLS, math.ceil(GPU_ROUND_TARGET_S / max(estimate, 1e-6))))

    def _gpu_call_times(self, fn: Callable[[], object], calls: int) -> list[float]:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(calls)]
        for start, end in events:
            self._flush.zero_()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(self.device)
        return [start.elapsed_time(end) / 1e3 for start, end in events]

    def round(self) -> None:
        """Call every implementation once (its `calls` times on a GPU), the order reversed every other round."""
        order = self.names if self._rounds_done % 2 == 0 else self.names[::-1]
        for name in order:
            fn = self.fns[name]
            if self.device.type == "cuda":
                self.times[name] += self._gpu_call_times(fn, self.calls[name])
            else:
                start = time.perf_counter()
                fn()
                self.times[name].append(time.perf_counter() - start)
        self._rounds_done += 1

    def medians(self) -> dict[str, float]:
        return {name: statistics.median(values) for name, values in self.times.items() if values}

    def run(self, benchmark, rounds: int) -> dict[str, float]:
        """Warm up, then `rounds` rounds through ``benchmark.pedantic``; the median seconds of each.

        Under --benchmark-disable (no warm-up; pedantic calls the round once) each runs once."""
        if benchmark.enabled:
            self.warm_up()
        benchmark.pedantic(self.round, rounds=rounds, warmup_rounds=0, iterations=1)
        return self.medians()


_COPY_BANDWIDTH: dict[str, float] = {}


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a large copy on device (bytes read + bytes written), measured once per run.

    On a GPU 256 MB device-to-device by CUDA events; on a CPU 64 MB (past the last-level cache),
    with torch's threads: the memcpy bandwidth the CPU ops could reach at best."""
    key = str(device)
    if key not in _COPY_BANDWIDTH:
        numel = (256 << 20) // 4 if device.type == "cuda" else (64 << 20) // 4
        src = torch.ones(numel, device=device)
        dst = torch.empty_like(src)
        timer = Interleaved({"copy": lambda: dst.copy_(src)}, device)
        timer.warm_up()
        for _ in range(7):
            timer.round()
        _COPY_BANDWIDTH[key] = 2 * src.nbytes / timer.medians()["copy"]
    return _COPY_BANDWIDTH[key]
