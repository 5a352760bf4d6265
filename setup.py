"""Build msgen and its compiled extension ``msgen._C``.

Install with ``pip install --no-build-isolation -e .`` so the extension is compiled against the
torch you already have (an isolated build would compile against another torch and fail to load).

Environment switches:
  MSGEN_NO_EXT=1          pure-Python install; the ops fall back to their references.
  FORCE_CUDA=1            build the CUDA kernels even without a visible GPU (needs a CUDA build of
                          torch and a CUDA toolkit); without it they are built when both are present.
  TORCH_CUDA_ARCH_LIST    GPU architectures to compile for (honoured by torch's build helpers).
  MAX_JOBS                parallel compile jobs (honoured by ninja through torch's build helpers).
"""

from __future__ import annotations

import glob
import json
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD_INFO = os.path.join(ROOT, "msgen", "_build_info.json")


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes")


def _log(message: str) -> None:
    print(f"[msgen build] {message}", file=sys.stderr)


def _extension_build() -> tuple[list, dict]:
    """Return (ext_modules, cmdclass) for msgen._C, or nothing when MSGEN_NO_EXT=1."""
    if _flag("MSGEN_NO_EXT"):
        _log("MSGEN_NO_EXT=1: skipping the compiled extension (reference ops only)")
        if os.path.exists(BUILD_INFO):
            os.remove(BUILD_INFO)
        return [], {}

    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    cpp_sources = sorted(glob.glob("csrc/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/*.cu"))
    torch_has_cuda = torch.version.cuda is not None
    if _flag("FORCE_CUDA"):
        if not torch_has_cuda:
            raise RuntimeError(
                "FORCE_CUDA=1 but the installed torch "
                f"{torch.__version__} is a CPU-only build: install a CUDA build of torch first"
            )
        if CUDA_HOME is None:
            raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME")
        with_cuda = True
    else:
        with_cuda = torch_has_cuda and CUDA_HOME is not None and bool(cuda_sources)

    # Without -fopenmp, at::parallel_for compiles to a serial loop in the extension.
    cxx_flags = ["-O3", "-fopenmp"] if sys.platform.startswith("linux") else ["-O3"]
    define_macros = [("MSGEN_TORCH_VERSION", f'"{torch.__version__}"')]
    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda if with_cuda else None,
        "with_cuda": with_cuda,
        "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST") if with_cuda else None,
        "python": sys.version.split()[0],
    }
    if with_cuda:
        define_macros.append(("MSGEN_WITH_CUDA", None))
        extension = CUDAExtension(
            "msgen._C",
            cpp_sources + cuda_sources,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
            extra_link_args=["-fopenmp"] if "-fopenmp" in cxx_flags else [],
        )
    else:
        extension = CppExtension(
            "msgen._C",
            cpp_sources,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"] if "-fopenmp" in cxx_flags else [],
        )

    # Test-only (tests/test_part_warp.py): the CUDA kernels' per-thread code run on the CPU, a
    # module of its own so that neither its code nor its functions are part of msgen._C.
    testing = CppExtension(
        "msgen._C_testing",
        ["csrc/testing/part_warp_emulation.cpp", "csrc/part_warp_host.cpp"],
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags},
    )
    _log("configuration: " + json.dumps(info))
    _log(f"sources: {', '.join(extension.sources)}; test-only msgen._C_testing: {', '.join(testing.sources)}")
    _log(f"CUDA_HOME={CUDA_HOME} MAX_JOBS={os.environ.get('MAX_JOBS', 'default')}")
    with open(BUILD_INFO, "w") as f:
        json.dump(info, f, indent=1)
    return [extension, testing], {"build_ext": BuildExtension}


ext_modules, cmdclass = _extension_build()

setup(
    # kernels/ sits at the top level of the repository but installs as msgen.kernels.
    packages=find_packages(include=["msgen", "msgen.*"]) + ["msgen.kernels"],
    package_dir={"msgen.kernels": "kernels"},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    package_data={"msgen": ["_build_info.json", "assets/*.safetensors"]},
)
