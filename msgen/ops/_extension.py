"""Loading the compiled extension ``msgen._C`` without ever breaking ``import msgen``.

The extension is built by ``pip install --no-build-isolation -e .`` (see setup.py), which also
writes ``msgen/_build_info.json``: what the extension was compiled against. That file is read
without loading the shared library, so a failed load can still say "built for torch X, running Y".

Both are read once, when this module is imported, and kept as module state: the ops consult them
inside functions that torch.compile traces, where file reads and import machinery would break the
graph.
"""

from __future__ import annotations

import importlib
import json
import os
from types import ModuleType

import torch

_BUILD_INFO_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_build_info.json")


def _read_build_info() -> dict | None:
    try:
        with open(_BUILD_INFO_PATH) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def build_info() -> dict | None:
    """What ``msgen._C`` was built against (torch, CUDA, architectures), or None if never built."""
    return _BUILD_INFO


def _try_load(info: dict | None) -> tuple[ModuleType | None, str]:
    """Import msgen._C; return (module or None, why it is missing)."""
    try:
        module = importlib.import_module("msgen._C")
    except (ImportError, OSError) as error:
        if info is None:
            why = (
                "msgen._C is not built (installed with MSGEN_NO_EXT=1, or not installed with "
                "`pip install --no-build-isolation -e .`)"
            )
        else:
            why = (
                f"msgen._C failed to load ({error}); it was built against torch {info.get('torch')}"
                f" (CUDA {info.get('cuda')}), this is torch {torch.__version__} (CUDA {torch.version.cuda}):"
                " rebuild with `pip install --no-build-isolation -e .`"
            )
        return None, why
    return module, ""


_BUILD_INFO = _read_build_info()
_MODULE, _MISSING_REASON = _try_load(_BUILD_INFO)


def _load() -> tuple[ModuleType | None, str]:
    return _MODULE, _MISSING_REASON


def extension() -> ModuleType | None:
    """The loaded ``msgen._C`` module, or None when it cannot be loaded."""
    return _load()[0]


def missing_reason() -> str:
    """Why the extension is unavailable ("" when it loaded)."""
    return _load()[1]


def require_extension(op: str) -> ModuleType:
    """Return ``msgen._C`` or raise a RuntimeError naming the op and what was built against what."""
    module, why = _load()
    if module is None:
        raise RuntimeError(f"{op} with impl='extension' needs the compiled extension: {why}")
    return module


def has_cuda_kernels() -> bool:
    """Whether the loaded extension was compiled with its CUDA kernels."""
    module = extension()
    return module is not None and bool(module.build_info()["with_cuda"])
