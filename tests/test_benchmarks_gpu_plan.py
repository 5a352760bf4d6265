"""benchmarks/run_gpu.sh's plan: the steps a GPU slot runs, and that its CPU dry run runs them too.

`run_gpu.sh --plan` prints each step with its command, from the same lines that run it; these tests
read that plan, and collect the CUDA test step's selection with pytest to see which tests it runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "run_gpu.sh"
ORDER = ["preflight", "build", "backends", "cuda_tests", "resources", "fusion_bench", "warp_bench", "step_bench",
         "fusion_compile", "warp_compile"]


def plan(*args: str) -> dict[str, list[str]]:
    """{step name: its command as argv} in the order run_gpu.sh runs them."""
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SCRIPT), "--plan", *args], capture_output=True, text=True, check=True,
                            env=env, cwd=REPO)
    steps = {}
    for line in result.stdout.splitlines():
        match = re.match(r"step (\S+) cap=(\d+)s keep=(\d+)s: (.*)", line)
        if match:
            steps[match[1]] = shlex.split(match[4])
    return steps


def collected(argv: list[str]) -> set[str]:
    """The test ids pytest selects with the pytest arguments of argv (the `-m` filter and files)."""
    args = argv[argv.index("pytest") + 1:]
    keep = [a for i, a in enumerate(args) if a.endswith(".py") or a == "-m" or (i and args[i - 1] == "-m")]
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *keep],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode in (0, 5), result.stdout + result.stderr
    return {line.split("::", 1)[1] for line in result.stdout.splitlines() if "::" in line}


@pytest.fixture(scope="module")
def gpu_plan() -> dict[str, list[str]]:
    return plan()


def test_steps_in_order_preflight_first_fusion_compile_before_warp_compile(gpu_plan) -> None:
    assert list(gpu_plan) == ORDER


def test_the_dry_run_runs_every_step_with_the_same_tests_and_bodies(gpu_plan) -> None:
    dry = plan("--dry-run")
    assert list(dry) == ORDER
    assert dry["cuda_tests"] == gpu_plan["cuda_tests"]
    assert "--dry-run" in dry["preflight"]
    for name in ("fusion_bench", "warp_bench", "step_bench", "fusion_compile", "warp_compile"):
        assert "--benchmark-disable" in dry[name] and "--benchmark-only" in gpu_plan[name], name
        assert dry[name][-1] == gpu_plan[name][-1], name  # the same benchmark file
    assert gpu_plan["step_bench"][-1] == "benchmarks/bench_train_step.py"


def test_cuda_tests_keep_going_and_include_the_int64_and_chunked_backward_tests(gpu_plan) -> None:
    command = gpu_plan["cuda_tests"]
    assert "-x" not in command and "--exitfirst" not in command
    files = [a for a in command if a.endswith(".py")]
    assert files == ["tests/test_part_warp.py", "tests/test_fused_attention.py"]
    args = command[command.index("pytest") + 1:]
    marker = args[args.index("-m") + 1]
    assert marker == "cuda"  # every cuda test: the int64 ones are also marked slow
    selected = collected(command)
    int64 = {t for t in selected if "int64" in t}
    assert len(int64) >= 3, int64
    everything = collected(["pytest", *files])
    chunked_gpu = {t for t in everything if t.startswith("test_backward_chunked") and "cuda" in t}
    assert chunked_gpu <= selected


def test_the_benchmark_steps_pick_their_impls(gpu_plan) -> None:
    def env_of(command: list[str]) -> dict[str, str]:
        return dict(a.split("=", 1) for a in command[1:] if "=" in a and not a.startswith("-"))

    assert env_of(gpu_plan["fusion_bench"])["MSGEN_BENCH_FUSION_IMPLS"] == "triton,reference"
    assert env_of(gpu_plan["fusion_compile"])["MSGEN_BENCH_FUSION_IMPLS"] == "triton,compile"
    assert env_of(gpu_plan["warp_compile"])["MSGEN_BENCH_WARP_IMPLS"] == "extension,compiled peer"
