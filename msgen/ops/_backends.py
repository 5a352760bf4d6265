"""Which implementations of the ops are usable on this machine."""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from msgen.ops import _extension


def triton_interpreted() -> bool:
    """True when Triton kernels run on CPU tensors through its interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_usable_on(device: torch.device) -> bool:
    """Triton launches need a CUDA device, except under the interpreter, which takes CPU tensors."""
    if not triton_importable():
        return False
    if device.type == "cuda":
        return not triton_interpreted()
    return device.type == "cpu" and triton_interpreted()


def backends() -> dict[str, bool]:
    """Report which implementations can run here.

    Keys: ``reference`` (plain PyTorch, always), ``cpu_extension`` and ``cuda_extension`` (the
    compiled ``msgen._C`` kernels; CUDA also needs a visible GPU), ``triton`` (a GPU, or CPU tensors
    under TRITON_INTERPRET=1). ``backend_report()`` gives the reasons in words.
    """
    has_gpu = torch.cuda.is_available()
    return {
        "reference": True,
        "cpu_extension": _extension.extension() is not None,
        "cuda_extension": _extension.has_cuda_kernels() and has_gpu,
        "triton": triton_importable() and (has_gpu or triton_interpreted()),
    }


def backend_report() -> str:
    """A human-readable account of ``backends()`` with what the extension was built against."""
    usable = backends()
    info = _extension.build_info()
    lines = [f"torch {torch.__version__} (CUDA {torch.version.cuda}), GPU visible: {torch.cuda.is_available()}"]
    lines.append(f"extension built against: {info}" if info else "extension: not built")
    if not usable["cpu_extension"]:
        lines.append(f"extension unavailable: {_extension.missing_reason()}")
    elif _extension.has_cuda_kernels() and not torch.cuda.is_available():
        lines.append("extension has CUDA kernels, but no GPU is visible")
    if not triton_importable():
        lines.append("triton: not installed")
    elif not usable["triton"]:
        lines.append("triton: installed, but needs a GPU (or TRITON_INTERPRET=1 for CPU tensors)")
    lines += [f"  {name:15s} {'yes' if ok else 'no'}" for name, ok in usable.items()]
    return "\n".join(lines)
