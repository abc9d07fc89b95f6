"""Pure-PyTorch reference of the occupancy-grid ray marcher (eyefast.OccupancyGrid.sampling).

Marches every step (no empty-space skipping) with the same floating-point operations as the
kernel (csrc/include/eyefast/occupancy.h), so for the same grid, rays and jitter it returns the
identical intervals. Vectorised over rays, a Python loop over steps: for tests, not for speed.
"""

from __future__ import annotations

import torch


def cell_occupied(x: torch.Tensor, binaries: torch.Tensor, level_aabbs: torch.Tensor) -> torch.Tensor:
    """Occupancy of points x [P, 3] in binaries [L, R, R, R] with level boxes [L, 6]."""
    n_levels, res = binaries.shape[0], binaries.shape[1]
    level = torch.full((x.shape[0],), n_levels - 1, dtype=torch.long, device=x.device)
    for lvl in reversed(range(n_levels - 1)):
        b = level_aabbs[lvl]
        inside = ((x >= b[:3]) & (x <= b[3:])).all(-1)
        level = torch.where(inside, lvl, level)
    b = level_aabbs[level]
    f = torch.floor((x - b[:, :3]) / (b[:, 3:] - b[:, :3]) * res)
    f = torch.nan_to_num(f, nan=0.0).clamp(0, res - 1).long()
    return binaries[level, f[:, 0], f[:, 1], f[:, 2]]


def sampling(rays_o, rays_d, binaries, level_aabbs, near_plane=0.0, far_plane=1e10, render_step_size=1e-3,
             cone_angle=0.0, t_min=None, t_max=None, u=None):
    """(ray_indices [S], t_starts [S], t_ends [S]) with the kernel's contract (see occupancy.h)."""
    dtype, dev = rays_o.dtype, rays_o.device
    n = rays_o.shape[0]
    big = level_aabbs[-1]
    step = torch.tensor(render_step_size, dtype=dtype, device=dev)
    zero = rays_d == 0
    safe_d = torch.where(zero, torch.ones_like(rays_d), rays_d)
    t1 = (big[:3] - rays_o) / safe_d
    t2 = (big[3:] - rays_o) / safe_d
    inf = torch.tensor(float("inf"), dtype=dtype, device=dev)
    tn = torch.where(zero, -inf, torch.minimum(t1, t2)).amax(-1)
    tf = torch.where(zero, inf, torch.maximum(t1, t2)).amin(-1)
    outside = (zero & ((rays_o < big[:3]) | (rays_o > big[3:]))).any(-1)
    t_lo = torch.maximum(torch.tensor(near_plane, dtype=dtype, device=dev), tn)
    t_hi = torch.minimum(torch.tensor(far_plane, dtype=dtype, device=dev), tf)
    if t_min is not None:
        t_lo = torch.maximum(t_lo, t_min)
    if t_max is not None:
        t_hi = torch.minimum(t_hi, t_max)
    active = ~outside & (t_lo < t_hi) & ~(rays_d == 0).all(-1)

    cone = torch.tensor(cone_angle, dtype=dtype, device=dev)

    def dt_at(t):
        return torch.clamp(torch.clamp(t * cone, min=step), max=torch.tensor(1e10, dtype=dtype, device=dev))

    t0 = t_lo + (u if u is not None else torch.zeros_like(t_lo)) * dt_at(t_lo)
    tk = t0.clone()
    rows, starts, ends, steps = [], [], [], []
    k = 0
    while bool(active.any()):
        if cone_angle == 0.0:
            tk1 = t0 + torch.tensor(float(k + 1), dtype=dtype, device=dev) * step
        else:
            tk1 = tk + dt_at(tk)
        active = active & (tk1 <= t_hi)
        idx = torch.nonzero(active).squeeze(-1)
        if idx.numel():
            mid = 0.5 * (tk[idx] + tk1[idx])
            x = rays_o[idx] + mid[:, None] * rays_d[idx]
            occ = cell_occupied(x, binaries, level_aabbs)
            rows.append(idx[occ])
            starts.append(tk[idx][occ])
            ends.append(tk1[idx][occ])
            steps.append(torch.full((int(occ.sum()),), k, dtype=torch.long, device=dev))
        tk = tk1
        k += 1
    if not rows:
        e = torch.zeros(0, dtype=dtype, device=dev)
        return torch.zeros(0, dtype=torch.long, device=dev), e, e.clone()
    rows, starts, ends, steps = (torch.cat(v) for v in (rows, starts, ends, steps))
    order = torch.argsort(rows * (k + 1) + steps)
    return rows[order], starts[order], ends[order]
