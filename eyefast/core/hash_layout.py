"""The hash grid's level layout (instant-ngp / tiny-cuda-nn conventions): per-level scales and
which levels are dense. Shared by the kernels' wrapper (:mod:`eyefast.core.nn.hash_grid`) and the
pure-PyTorch reference; no torch and no compiled code needed."""

from __future__ import annotations

import math

__all__ = ["level_scales", "level_layout"]


def level_scales(n_levels: int, base_resolution: float = 16, per_level_scale: float | None = None,
                 finest_resolution: float = 1024) -> list[float]:
    """tcnn's per-level scales ``base * b^l - 1``; ``b`` defaults to ``(finest/base)^(1/(L-1))``."""
    if per_level_scale is None:
        per_level_scale = 2.0 ** (math.log2(finest_resolution / base_resolution) / (n_levels - 1)) if n_levels > 1 else 1.0
    return [float(base_resolution) * float(per_level_scale) ** l - 1.0 for l in range(n_levels)]


def level_layout(scales: list[float], table_size: int) -> list[tuple[int, bool]]:
    """(vertices per axis R_l, dense?) of each level."""
    out = []
    for s in scales:
        r = math.ceil(s) + 2
        out.append((r, r ** 3 <= table_size))
    return out
