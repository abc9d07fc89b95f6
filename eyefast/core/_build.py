"""Build description of the ``eyefast._C`` extension, shared by setup.py and the JIT fallback.

Kept free of eyefast imports so that setup.py can load it by path.
"""

from __future__ import annotations

import glob
import os
import shutil

#: the source tree: eyefast/core/_build.py -> the repository root
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRC = os.path.join(ROOT, "csrc")
#: the GPUs a wheel or setup.py build targets unless TORCH_CUDA_ARCH_LIST says otherwise: Turing (T4, RTX 20),
#: Ampere (A100, RTX 30), Ada (RTX 40, L4), Hopper (H100) with PTX for the GPUs after it; Blackwell
#: consumer cards (RTX 50, sm_120) where the toolkit has them (see cuda_archs)
DEFAULT_CUDA_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"


def sources(with_cuda: bool) -> list[str]:
    """Absolute paths of the extension's sources (CPU launchers, torch bindings, CUDA launchers)."""
    files = sorted(glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    files += sorted(glob.glob(os.path.join(CSRC, "torch", "*.cpp")))
    if with_cuda:
        files += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
    return files


def include_dirs() -> list[str]:
    return [os.path.join(CSRC, "include")]


def want_cuda() -> bool:
    """CUDA launchers are built when a CUDA toolkit and a CUDA build of torch are both present.

    ``EYEFAST_CUDA=0|1`` overrides; ``EYEFAST_CUDA=1`` without a toolkit or a CUDA torch is an error.
    """
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    env = os.environ.get("EYEFAST_CUDA", "").strip()
    have_toolkit = CUDA_HOME is not None and (
        shutil.which("nvcc") is not None or os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    )
    have_torch_cuda = torch.version.cuda is not None
    if env == "0":
        return False
    if env == "1":
        if not (have_toolkit and have_torch_cuda):
            raise RuntimeError(
                "EYEFAST_CUDA=1 but "
                + ("no CUDA toolkit (nvcc) was found" if not have_toolkit else "the installed torch is a CPU-only build")
            )
        return True
    if env:
        raise RuntimeError(f"EYEFAST_CUDA must be 0 or 1, got {env!r}")
    return have_toolkit and have_torch_cuda


def compile_args(with_cuda: bool) -> dict:
    # No -fvisibility=hidden: with it, libstdc++ templates instantiated here (ostream inserters in
    # error messages) get hidden copies whose std::locale::id statics clash with libstdc++'s own
    # (seen as a segfault in c10::str on a GCC 13 machine).
    # -ffp-contract=off: no FMA contraction on the host (FMA-capable targets contract by default),
    # so the rasteriser's depth keys round like its CUDA twin's explicitly rounded operations.
    # -fopenmp: torch's CPU builds parallelise with OpenMP; eyefast's CPU kernels then run on the same
    # OpenMP threads through at::parallel_for (csrc/torch/module.cpp) instead of a pool of their own,
    # which the OpenMP threads, spinning after each torch op, would fight for the cores.
    # -std=c++20 for the host compiler, as torch's own extension default: torch's autograd headers
    # (custom autograd Functions in csrc/torch) use C++20 features. The torch-free core builds as C++17
    # (CMakeLists.txt) and the CUDA launchers include no torch header.
    # -g0 unless EYEFAST_DEBUG_INFO=1: Python's own compile flags carry -g, and debug information for these
    # template-heavy kernels costs 40-50% of the compile time and 80 MB of the library.
    debug = ["-g"] if os.environ.get("EYEFAST_DEBUG_INFO", "") == "1" else ["-g0"]
    cxx = ["-O3", "-std=c++20", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"] + debug + openmp_flags()
    args = {"cxx": cxx + (["-DEYEFAST_WITH_CUDA"] if with_cuda else [])}
    if with_cuda:
        # No --use_fast_math: the kernels must match the float64 references to 1e-5.
        args["nvcc"] = ["-O3", "-std=c++17", "-DEYEFAST_WITH_CUDA", "-lineinfo"]
    return args


def openmp_flags() -> list[str]:
    """["-fopenmp"] where torch itself uses OpenMP (its Linux CPU wheels) and the compiler is GCC or
    Clang; at run time the extension then shares torch's libgomp (same soname, already loaded).
    EYEFAST_OPENMP=0 turns it off (the kernels then use eyefast's own thread pool)."""
    import sys

    import torch

    if os.environ.get("EYEFAST_OPENMP", "1") == "0" or sys.platform != "linux":
        return []
    return ["-fopenmp"] if "OpenMP" in torch.__config__.parallel_info() else []


def link_args() -> list[str]:
    return openmp_flags()


def cuda_archs() -> str:
    """:data:`DEFAULT_CUDA_ARCHS`, plus 12.0 when the CUDA toolkit can build for it (CUDA 12.8 and later)."""
    import subprocess

    from torch.utils.cpp_extension import CUDA_HOME

    nvcc = shutil.which("nvcc") or (os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else None)
    try:
        archs = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, TypeError, subprocess.SubprocessError):
        archs = ""
    return DEFAULT_CUDA_ARCHS + (";12.0" if "compute_120" in archs else "")


def cuda_arch_flags() -> None:
    """The GPUs a wheel or setup.py build targets: TORCH_CUDA_ARCH_LIST when the user set it, else
    :func:`cuda_archs`. (A just-in-time build leaves it unset: torch then builds for the GPUs it sees.)"""
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", cuda_archs())
