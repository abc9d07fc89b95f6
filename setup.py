"""Builds eyefast and its extension ``eyefast._C`` against the installed torch.

    pip install --no-build-isolation -e .            # a development install (builds _C in place)
    python -m build --wheel --no-isolation           # a wheel with _C prebuilt (for this torch)

CPU sources are always built; CUDA sources when a CUDA toolkit and a CUDA build of torch are present
(EYEFAST_CUDA=0|1 overrides; TORCH_CUDA_ARCH_LIST defaults to the GPUs in eyefast/core/_build.py).
EYEFAST_NO_EXT=1 installs the Python package without building the extension (``make`` then builds
it once, in place, with ``setup.py build_ext --inplace``).
"""

import importlib.util
import os

from setuptools import setup

_spec = importlib.util.spec_from_file_location(
    "eyefast_build", os.path.join(os.path.dirname(os.path.abspath(__file__)), "eyefast", "core", "_build.py")
)
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

#: what eyefast needs at run time, besides torch (the one definition: the Makefile installs these too)
RUNTIME = [
    "numpy",
    "pyyaml",
    "tqdm",
    "imageio",
    "pillow",
    "scipy",
    "trimesh",
    "PyMCubes",  # marching cubes of the face SDF
    "xatlas",  # UV atlases of the exported meshes
    "fast-simplification==0.2.0",  # trimesh's quadric decimation backend (export: decimate the face mesh)
    "ninja",  # builds eyefast._C just in time when no prebuilt one is found
]
EXTRAS = {
    "test": ["pytest", "hypothesis", "build", "scikit-image"],  # scikit-image: the face photo of the prepare tests
    "bench": ["nerfacc==0.5.3", "matplotlib", "pytest-benchmark"],
    # eyefast prepare: structure from motion, face landmarks and person segmentation (mediapipe 0.10.14's wheel
    # ships both models; later wheels do not), video reading
    "prepare": ["pycolmap>=4.2,<5", "mediapipe==0.10.14", "imageio-ffmpeg==0.8.1"],
    "view": ["viser==1.1.1"],  # eyefast view, train --view: the browser viewer
    "video": ["imageio-ffmpeg==0.8.1"],  # eyefast render --out *.mp4 (its wheel ships an ffmpeg binary)
    "report": ["matplotlib"],  # eyefast evaluate: the training curves of RUN/eval/index.html
}


def no_ext() -> bool:
    return os.environ.get("EYEFAST_NO_EXT", "") == "1"


def torch_pin() -> list:
    """``torch==X.Y.Z``: the release the extension is built against (its C++ ABI)."""
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}"]


def extensions():
    if no_ext():
        return []
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
    if no_ext():
        return {}
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    install_requires=torch_pin() + RUNTIME,
    extras_require=EXTRAS,
    ext_modules=extensions(),
    cmdclass=cmdclass(),
    zip_safe=False,
)
