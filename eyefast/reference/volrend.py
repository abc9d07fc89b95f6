"""Pure-PyTorch references of :mod:`eyefast.volrend` (same contracts; float64-safe, autograd by torch)."""

from __future__ import annotations

import torch


def _exclusive_segment_cumsum(x: torch.Tensor, ray_indices: torch.Tensor) -> torch.Tensor:
    """Exclusive cumulative sum of x [M] (or [M, K]) restarting at each ray (ray_indices sorted)."""
    inc = torch.cumsum(x, 0)
    exc = inc - x
    m = ray_indices.shape[0]
    if m == 0:
        return exc
    first = torch.ones(m, dtype=torch.bool, device=x.device)
    first[1:] = ray_indices[1:] != ray_indices[:-1]
    start = torch.cummax(torch.where(first, torch.arange(m, device=x.device), 0), 0).values
    return exc - exc[start]


def render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays=None):
    sd = sigmas * (t_ends - t_starts)
    trans = torch.exp(-_exclusive_segment_cumsum(sd, ray_indices))
    alphas = 1.0 - torch.exp(-sd)
    return trans * alphas, trans, alphas


def render_weight_from_alpha(alphas, ray_indices, n_rays=None):
    # Exclusive product as a loop-free segmented product (log space breaks at alpha = 1).
    m = alphas.shape[0]
    trans = torch.ones_like(alphas)
    if m:
        first = torch.ones(m, dtype=torch.bool, device=alphas.device)
        first[1:] = ray_indices[1:] != ray_indices[:-1]
        pos = torch.arange(m, device=alphas.device)
        start = torch.cummax(torch.where(first, pos, 0), 0).values
        k = pos - start
        one_minus = 1.0 - alphas
        # [M, L] product over the previous samples of the same ray (L = longest ray).
        length = int(k.max().item()) + 1
        idx = pos[:, None] - 1 - torch.arange(length, device=alphas.device)[None, :]
        valid = torch.arange(length, device=alphas.device)[None, :] < k[:, None]
        factors = torch.where(valid, one_minus[idx.clamp(min=0)], torch.ones((), dtype=alphas.dtype))
        trans = factors.prod(1)
    return trans * alphas, trans


def accumulate_along_rays(weights, values, ray_indices, n_rays):
    src = weights[:, None] if values is None else weights[:, None] * values
    out = torch.zeros(n_rays, src.shape[1], dtype=src.dtype, device=src.device)
    return out.index_add(0, ray_indices, src)
