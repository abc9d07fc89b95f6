"""Multi-resolution hash-grid encoding (instant-ngp), pure PyTorch reference.

Same contract, hashing and rounding as the ``eyefast.hash_grid_*`` kernels
(``csrc/include/eyefast/hash_grid.h``): per level ``l`` with scale ``s_l``,
``pos = clamp(x, 0, 1) * s_l + 0.5``, 8 corners of the cell ``floor(pos)``, a dense index
``c.x + R (c.y + R c.z)`` (``R = ceil(s_l) + 2``) when ``R^3 <= T``, else instant-ngp's hash
``(c.x * 1) ^ (c.y * 2654435761) ^ (c.z * 805459861)`` mod ``T``; trilinear weights of
``w(t) = t`` or the smoothstep ``t^2 (3 - 2t)``. Levels ``>= n_active`` give 0.
Differentiable (to any order) by plain autograd; slow and memory hungry, for tests only.
"""

from __future__ import annotations

import torch

from ..core.hash_layout import level_layout, level_scales

__all__ = ["level_scales", "level_layout", "hash_grid_encode", "PRIMES"]

PRIMES = (1, 2654435761, 805459861)


def hash_grid_encode(x: torch.Tensor, table: torch.Tensor, scales: list[float], n_active: int | None = None,
                     smoothstep: bool = False) -> torch.Tensor:
    """``x [N, 3]``, ``table [L, T, F]`` -> ``[N, L * F]``."""
    n_levels, t_size, n_feat = table.shape
    if n_active is None:
        n_active = n_levels
    xs = x.clamp(0.0, 1.0)
    layout = level_layout(scales, t_size)
    outs = []
    for lvl in range(n_levels):
        if lvl >= n_active:
            outs.append(x.new_zeros(x.shape[0], n_feat))
            continue
        s = torch.tensor(scales[lvl], dtype=x.dtype, device=x.device)
        pos = xs * s + 0.5
        fl = torch.floor(pos)
        t = pos - fl
        base = fl.detach().long()
        w1 = t * t * (3.0 - 2.0 * t) if smoothstep else t
        r, dense = layout[lvl]
        acc = None
        for corner in range(8):
            bits = [(corner >> k) & 1 for k in range(3)]
            c = [base[:, k] + bits[k] for k in range(3)]
            a = [w1[:, k] if bits[k] else 1.0 - w1[:, k] for k in range(3)]
            w = a[0] * a[1] * a[2]
            if dense:
                row = c[0] + r * (c[1] + r * c[2])
            else:
                row = ((c[0] * PRIMES[0]) ^ (c[1] * PRIMES[1]) ^ (c[2] * PRIMES[2])) & (t_size - 1)
            term = w[:, None] * table[lvl][row]
            acc = term if acc is None else acc + term
        outs.append(acc)
    return torch.cat(outs, dim=1)
