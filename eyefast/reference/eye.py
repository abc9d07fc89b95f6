"""Pure-PyTorch references of the eye ops: ray/sphere intersection and refraction.

Same contracts as the kernels (``csrc/include/eyefast/ray_sphere.h``, ``refract.h``): see
:func:`eyefast.ops.ray_sphere_intersect` and :func:`eyefast.ops.refract`. They are written for
clarity and autograd (every branch masked with safe values so no NaN leaks into gradients), not
speed, and are differentiable in float64.
"""

from __future__ import annotations

import torch


def _sphere_roots(oc: torch.Tensor, d: torch.Tensor, r: torch.Tensor):
    """Roots of |oc + t d|^2 = r^2 for every (ray, sphere) pair.

    oc: [N, S, 3], d: [N, 1, 3], r: [S]. Returns (hit [N,S] bool, t0, t1 [N,S], with finite
    placeholder values where hit is False). Uses q = -(b + sign(b) sqrt(disc)), t = q/a, cc/q.
    """
    a = (d * d).sum(-1)  # [N,1]
    b = (oc * d).sum(-1)  # [N,S]
    cc = (oc * oc).sum(-1) - r * r
    disc = b * b - a * cc
    hit = (disc >= 0) & (a > 0)
    sq = torch.sqrt(torch.where(hit & (disc > 0), disc, torch.ones_like(disc)))
    sq = torch.where(hit & (disc > 0), sq, torch.zeros_like(sq))
    q = torch.where(b >= 0, -(b + sq), -b + sq)
    q_ok = hit & (q != 0)
    q_safe = torch.where(q_ok, q, torch.ones_like(q))
    a_safe = torch.where(a > 0, a, torch.ones_like(a))
    r0 = q_safe / a_safe
    r1 = cc / q_safe
    t0 = torch.where(q_ok, torch.minimum(r0, r1), torch.zeros_like(r0))
    t1 = torch.where(q_ok, torch.maximum(r0, r1), torch.zeros_like(r0))
    return hit, t0, t1


def ray_sphere_intersect(origins, dirs, centers, radii):
    """Reference of :func:`eyefast.ops.ray_sphere_intersect`.

    origins, dirs: [N, 3]; centers: [S, 3]; radii: [S].
    Returns t_near [N], t_far [N], index [N] int64, normal [N, 3].
    """
    n, s = origins.shape[0], centers.shape[0]
    inf = torch.full((n,), float("inf"), dtype=origins.dtype, device=origins.device)
    if s == 0 or n == 0:
        return inf, inf.clone(), torch.full((n,), -1, dtype=torch.long, device=origins.device), origins.new_zeros(n, 3)
    oc = origins[:, None, :] - centers[None, :, :]  # [N,S,3]
    d = dirs[:, None, :]
    hit, t0, t1 = _sphere_roots(oc, d, radii)
    valid = hit & (t1 >= 0)
    entry = torch.where(t0 >= 0, t0, torch.zeros_like(t0))
    entry_masked = torch.where(valid, entry, torch.full_like(entry, float("inf")))
    # First minimum (ties -> lowest index), like the kernel's strict '<' scan.
    best = entry_masked.detach().argmin(dim=1)  # [N]
    any_hit = valid.gather(1, best[:, None])[:, 0]
    rows = torch.arange(n, device=origins.device)
    t_near = torch.where(any_hit, entry[rows, best], inf)
    t_far = torch.where(any_hit, t1[rows, best], inf)
    index = torch.where(any_hit, best, torch.full_like(best, -1))
    t0b = t0[rows, best]
    outside = any_hit & (t0b >= 0)
    r = radii[best]  # placeholder divisor where there is no entry point
    p = oc[rows, best] + torch.where(outside, t0b, torch.zeros_like(t0b))[:, None] * dirs
    pn = p.norm(dim=-1, keepdim=True)
    normal = torch.where(outside[:, None], p / torch.where(outside[:, None], pn, r[:, None]), torch.zeros_like(p))
    return t_near, t_far, index, normal


def refract(dirs, normals, eta):
    """Reference of :func:`eyefast.ops.refract`.

    dirs, normals: [N, 3]; eta: float, 0-d tensor or [N] (n_from / n_to).
    Returns out [N, 3] (unit), reflectance [N], tir [N] bool.
    """
    if not torch.is_tensor(eta):
        eta = torch.tensor(eta, dtype=dirs.dtype, device=dirs.device)
    eta = eta.reshape(-1) if eta.dim() > 0 else eta
    u = dirs / dirs.norm(dim=-1, keepdim=True)
    m = normals / normals.norm(dim=-1, keepdim=True)
    ci = -(u * m).sum(-1)
    flip = ci < 0
    m = torch.where(flip[:, None], -m, m)
    ci = torch.where(flip, -ci, ci).clamp(max=1.0)
    sin2t = eta * eta * (1 - ci * ci)
    tir = sin2t > 1
    ct = torch.sqrt(torch.where(tir | (sin2t >= 1), torch.ones_like(sin2t), 1 - sin2t))
    ct = torch.where(tir | (sin2t >= 1), torch.zeros_like(ct), ct)
    out_refr = eta[..., None] * u + (eta * ci - ct)[:, None] * m if eta.dim() else eta * u + (eta * ci - ct)[:, None] * m
    out_mirr = u + (2 * ci)[:, None] * m
    out = torch.where(tir[:, None], out_mirr, out_refr)
    B = eta * ci + ct
    D = ci + eta * ct
    Bs = torch.where(B > 0, B, torch.ones_like(B))
    Ds = torch.where(D > 0, D, torch.ones_like(D))
    rs = torch.where(B > 0, (eta * ci - ct) / Bs, torch.ones_like(B))
    rp = torch.where(D > 0, (ci - eta * ct) / Ds, torch.ones_like(D))
    refl = torch.where(tir, torch.ones_like(rs), 0.5 * (rs * rs + rp * rp))
    return out, refl, tir
