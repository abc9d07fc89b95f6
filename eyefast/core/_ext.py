"""Loads the compiled kernels (``eyefast._C``), building them just in time if need be.

``load()`` imports ``eyefast._C`` (built by ``pip install --no-build-isolation -e .`` or
``make build``). When it is missing, eyefast compiles the same sources with
``torch.utils.cpp_extension.load`` (ninja) into ``$EYEFAST_BUILD_DIR`` (default
``~/.cache/eyefast/jit-<hash>``), says so on stderr, and loads that. Set ``EYEFAST_NO_JIT=1`` to
make a missing extension an error instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading

import torch

from . import _build

_lock = threading.Lock()
_module = None


def _jit_build():
    with_cuda = _build.want_cuda()
    srcs = _build.sources(with_cuda)
    digest = hashlib.sha1()
    for path in srcs + sorted(
        os.path.join(d, f) for d, _, fs in os.walk(os.path.join(_build.CSRC, "include")) for f in fs
    ):
        with open(path, "rb") as fh:
            digest.update(path.encode() + fh.read())
    digest.update(torch.__version__.encode() + str(with_cuda).encode())
    build_dir = os.environ.get("EYEFAST_BUILD_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "eyefast", "jit-" + digest.hexdigest()[:12]
    )
    os.makedirs(build_dir, exist_ok=True)
    logging.getLogger("eyefast").warning(
        f"the compiled extension eyefast._C is missing; building it just in time in {build_dir} "
        f"({'CPU + CUDA' if with_cuda else 'CPU'} kernels, several minutes the first time) ...")
    from torch.utils.cpp_extension import load

    # no TORCH_CUDA_ARCH_LIST default here: torch builds for the GPUs of this machine
    args = _build.compile_args(with_cuda)
    return load(
        name="_C",
        sources=srcs,
        extra_include_paths=_build.include_dirs(),
        extra_cflags=args["cxx"],
        extra_cuda_cflags=args.get("nvcc", []),
        extra_ldflags=_build.link_args(),
        build_directory=build_dir,
        with_cuda=with_cuda,
        verbose=False,
    )


def load():
    """The loaded extension module (its ops are registered under ``torch.ops.eyefast``)."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            try:
                from .. import _C as mod  # noqa: N814
            except ImportError as err:
                if os.environ.get("EYEFAST_NO_JIT", "") == "1":
                    raise ImportError(
                        "eyefast._C is not built (run `make build` or "
                        "`pip install --no-build-isolation -e .`) and EYEFAST_NO_JIT=1 forbids building it now"
                    ) from err
                mod = _jit_build()
            _module = mod
    return _module


def with_cuda() -> bool:
    """True when the loaded kernels include the CUDA launchers."""
    return bool(load().WITH_CUDA)


def library_path() -> str:
    """Path of the loaded shared library (it also exports the C API, for ctypes users)."""
    return load().__file__
