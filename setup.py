"""Builds eyefast and its extension ``eyefast._C``.

    pip install --no-build-isolation -e .        # uses the installed torch

CPU sources are always built; CUDA sources when a CUDA toolkit and a CUDA build of torch are
present (EYEFAST_CUDA=0|1 overrides; TORCH_CUDA_ARCH_LIST defaults to "8.0;9.0").
"""

import importlib.util
import os

from setuptools import find_packages, setup

_spec = importlib.util.spec_from_file_location(
    "eyefast_build", os.path.join(os.path.dirname(os.path.abspath(__file__)), "eyefast", "_build.py")
)
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def extensions():
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    with_cuda = build.want_cuda()
    kind = CUDAExtension if with_cuda else CppExtension
    if with_cuda:
        build.cuda_arch_flags()
    print(f"eyefast: building eyefast._C with {'CPU + CUDA' if with_cuda else 'CPU only'} kernels")
    return [
        kind(
            name="eyefast._C",
            sources=[os.path.relpath(s) for s in build.sources(with_cuda)],
            include_dirs=build.include_dirs(),
            extra_compile_args=build.compile_args(with_cuda),
            extra_link_args=build.link_args(),
        )
    ]


def cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    name="eyefast",
    version="0.1.0",
    description="Relightable face and eye capture on fused C++/CUDA kernels",
    packages=find_packages(include=["eyefast", "eyefast.*", "benchmarks"]),
    python_requires=">=3.9",
    ext_modules=extensions(),
    cmdclass=cmdclass(),
    zip_safe=False,
)
