"""eyefast's compiled kernels as torch ops, and what loads them.

* :mod:`~eyefast.core.ops`: eye intersection and refraction, ``trace_eyes``, the rasteriser.
* :mod:`~eyefast.core.volrend`, :mod:`~eyefast.core.occupancy`: volume-rendering weights and the
  occupancy grid (nerfacc 0.5 names and semantics).
* :mod:`~eyefast.core.nn`: hash-grid and SH encodings, Softplus, the fused SDF network.
* :mod:`~eyefast.core.eyes`: the refractive eye's parameters (``pack_eyes``, the model-eye ratios).
* :mod:`~eyefast.scene.backend`: the op set a model runs on (eyefast's kernels or the references).

Submodules import on demand; importing this package loads no compiled code.
"""
