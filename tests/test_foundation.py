"""The package imports without its extension, reports its backends, and says what it was built against."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import msgen.ops
from msgen.ops import _extension


def _run_python(code: str) -> subprocess.CompletedProcess:
    # Run outside the checkout, so only the installed package is importable (no top-level kernels/).
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(sys.executable),
    )


def test_backends_reports_every_implementation():
    usable = msgen.ops.backends()
    assert set(usable) == {"reference", "cpu_extension", "cuda_extension", "triton"}
    assert usable["reference"] is True
    assert all(isinstance(value, bool) for value in usable.values())
    if not torch.cuda.is_available():
        assert usable["cuda_extension"] is False
    report = msgen.ops.backend_report()
    assert torch.__version__ in report
    for name in usable:
        assert name in report


def test_extension_is_built_unless_opted_out():
    """A broken build must fail here rather than hide behind reference fallbacks."""
    if os.environ.get("MSGEN_NO_EXT") == "1":
        pytest.skip("installed with MSGEN_NO_EXT=1")
    assert _extension.extension() is not None, _extension.missing_reason()
    info = _extension.build_info()
    assert info is not None and info["torch"] == torch.__version__
    assert _extension.extension().build_info()["torch"] == torch.__version__


def test_import_works_with_the_extension_blocked():
    """Blocking msgen._C (as if deleted) leaves import msgen and the reference ops working."""
    result = _run_python(
        """
        import sys
        sys.modules["msgen._C"] = None  # makes `import msgen._C` raise ImportError
        import torch, msgen, msgen.ops
        usable = msgen.ops.backends()
        assert usable["cpu_extension"] is False and usable["cuda_extension"] is False, usable
        x = torch.rand(1, 2, 5, 4)
        theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(1, 1, 2, 3)
        out = msgen.ops.part_warp(x, theta, torch.ones(1, 1, 5, 4), impl="reference")
        assert torch.equal(out, x)
        try:
            msgen.ops.part_warp(x, theta, torch.ones(1, 1, 5, 4), impl="extension")
        except RuntimeError as error:
            print("ERROR:", error)
        else:
            raise AssertionError("impl='extension' must not fall back silently")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "needs the compiled extension" in result.stdout
    assert "pip install --no-build-isolation -e ." in result.stdout


def test_triton_kernels_import_as_msgen_kernels_only():
    import msgen.kernels

    assert os.path.basename(os.path.dirname(msgen.kernels.__file__)) == "kernels"
    result = _run_python("import kernels")
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


def test_load_error_names_the_torch_mismatch(monkeypatch):
    """The load error names the torch the extension was built for and the torch running now."""
    monkeypatch.setitem(sys.modules, "msgen._C", None)
    module, why = _extension._try_load({"torch": "0.0.0-other", "cuda": "99.9"})
    assert module is None
    assert "0.0.0-other" in why and torch.__version__ in why
    assert "pip install --no-build-isolation -e ." in why
