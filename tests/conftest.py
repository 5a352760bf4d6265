"""Shared test setup.

Without a GPU, Triton kernels run on CPU tensors through Triton's interpreter; the variable must be
set before any kernel module is imported, which is why it is set here, at collection time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_path() -> Path:
    """The real Market-1501 material beside the checkout (MSGEN_SHARED_DATA overrides)."""
    return Path(os.environ.get("MSGEN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """Path to ../shared/data; tests that use it skip when it is absent (users will not have it)."""
    path = shared_data_path()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set MSGEN_SHARED_DATA)")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)
