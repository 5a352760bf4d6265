"""What a bare GPU machine offers, checked in seconds before benchmarks/run_gpu.sh spends its budget.

Reports nvcc and CUDA_HOME, ninja, setuptools (pyproject's ``license = "MIT"`` string needs
setuptools >= 77), torch and its CUDA, the GPU, triton and the free disk, then the plan: whether
the CUDA extension will be built (and how), and which steps will be skipped and why. It prints the
report for people and writes the plan as shell assignments (``--env FILE``) for run_gpu.sh.
Nothing here needs a GPU or the network; ``--dry-run`` plans a CPU dry run (no CUDA build).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys

SETUPTOOLS_FOR_LICENSE_STRING = (77, 0)  # PEP 639 license expressions in [project]
SETUPTOOLS_FOR_PYPROJECT = (64, 0)  # editable installs of a pyproject-only [project] table
MIN_FREE_DISK_GB = 5.0  # the build (about 1 GB) and the compile caches


def version_tuple(text: str) -> tuple[int, ...]:
    """(77, 0, 1) from "77.0.1"; non-numeric suffixes ("1rc1") end the tuple."""
    parts = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        return (result.stdout + result.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"failed: {error}"


def check(dry_run: bool) -> tuple[list[str], dict[str, str]]:
    """(report lines, plan) where plan holds the shell variables run_gpu.sh reads."""
    report: list[str] = [f"python {sys.version.split()[0]} at {sys.executable}"]
    plan = {"PLAN_BUILD": "none", "PLAN_LICENSE_SHIM": "0", "PLAN_GPU": "0", "PLAN_TRITON": "0", "PLAN_SKIPS": ""}
    skips: list[str] = []

    torch_cuda, gpu = None, False
    if importlib.util.find_spec("torch") is None:
        report.append("torch: NOT INSTALLED")
        skips.append("everything: torch is missing")
    else:
        import torch

        torch_cuda = torch.version.cuda
        gpu = torch.cuda.is_available()
        report.append(f"torch {torch.__version__}, built with CUDA {torch_cuda}, GPU visible: {gpu}")
        if gpu:
            props = torch.cuda.get_device_properties(0)
            report.append(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}, "
                          f"{props.multi_processor_count} SMs")
    plan["PLAN_GPU"] = "1" if gpu else "0"

    nvcc = shutil.which("nvcc")
    cuda_home = None
    if torch_cuda is not None:
        from torch.utils.cpp_extension import CUDA_HOME

        cuda_home = CUDA_HOME
    if nvcc is None and cuda_home and os.path.exists(os.path.join(cuda_home, "bin", "nvcc")):
        nvcc = os.path.join(cuda_home, "bin", "nvcc")
    nvcc_version = _run([nvcc, "--version"]).splitlines()[-1] if nvcc else None
    report.append(f"nvcc: {nvcc or 'NOT FOUND'}" + (f" ({nvcc_version})" if nvcc_version else ""))
    report.append(f"CUDA_HOME (as torch finds it): {cuda_home}; $CUDA_HOME={os.environ.get('CUDA_HOME')}")

    ninja = shutil.which("ninja")
    report.append(f"ninja: {ninja or 'NOT FOUND (torch falls back to a serial, much slower build)'}")

    setuptools = _version("setuptools")
    setuptools_ok = setuptools is not None and version_tuple(setuptools) >= SETUPTOOLS_FOR_LICENSE_STRING
    if setuptools is None:
        report.append("setuptools: NOT INSTALLED (no build, no editable install)")
    elif setuptools_ok:
        report.append(f"setuptools {setuptools} (>= 77: reads pyproject's license = \"MIT\")")
    else:
        report.append(f"setuptools {setuptools} < 77: pyproject's license = \"MIT\" fails its validation")

    triton = _version("triton")
    plan["PLAN_TRITON"] = "1" if triton and (gpu or dry_run) else "0"
    report.append(f"triton: {triton or 'NOT INSTALLED'}")

    free_gb = shutil.disk_usage(".").free / 1e9
    tmp_gb = shutil.disk_usage(os.environ.get("TMPDIR", "/tmp")).free / 1e9
    report.append(f"free disk: {free_gb:.1f} GB here, {tmp_gb:.1f} GB in the temporary folder")
    report.append(f"cores: {os.cpu_count()}")

    # The plan.
    if dry_run:
        plan["PLAN_BUILD"] = "none"
        report.append("plan: dry run: no build (the extension the README's install built, if any)")
    elif torch_cuda is None:
        skips.append("CUDA build: this torch is a CPU build")
    elif nvcc is None or cuda_home is None:
        skips.append("CUDA build: no CUDA toolkit (nvcc / CUDA_HOME)")
    elif setuptools is None or version_tuple(setuptools) < SETUPTOOLS_FOR_PYPROJECT:
        skips.append(f"CUDA build: setuptools {setuptools} cannot install a pyproject project")
    elif free_gb < MIN_FREE_DISK_GB:
        skips.append(f"CUDA build: {free_gb:.1f} GB free, under {MIN_FREE_DISK_GB} GB")
    else:
        plan["PLAN_BUILD"] = "cuda"
        if not setuptools_ok:
            plan["PLAN_LICENSE_SHIM"] = "1"
            report.append("plan: build with pyproject's license written as the older table {text = \"MIT\"} "
                          "for the build only (pyproject.toml restored afterwards)")
    if plan["PLAN_BUILD"] == "none" and not dry_run:
        report.append("plan: no CUDA build; msgen.kernels made importable from the checkout (Triton tests "
                      "and benchmarks still run); the warp's CUDA tests and benchmarks will fail or skip")
    if not gpu and not dry_run:
        skips.append("GPU tests and timings: no GPU visible")
    if plan["PLAN_TRITON"] == "0":
        skips.append("Triton tests and benchmarks: " + ("triton not installed" if not triton else "no GPU"))
    plan["PLAN_SKIPS"] = "; ".join(skips)
    report.append("will skip: " + (plan["PLAN_SKIPS"] or "nothing"))
    return report, plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="plan a CPU dry run (no CUDA build)")
    parser.add_argument("--env", help="write the plan as shell assignments to this file")
    args = parser.parse_args(argv)
    report, plan = check(args.dry_run)
    print("\n".join(report))
    if args.env:
        with open(args.env, "w") as f:
            f.writelines(f"{key}={shlex.quote(value)}\n" for key, value in plan.items())
    return 0


if __name__ == "__main__":
    sys.exit(main())
