"""Pure-PyTorch references of the eye ops: ray/sphere intersection and refraction.

Same contracts as the kernels (``csrc/include/eyefast/ray_sphere.h``, ``refract.h``): see
:func:`eyefast.ops.ray_sphere_intersect` and :func:`eyefast.ops.refract`. Directions of any length
> 0 are first scaled by a power of two (:func:`_dir_scale`, exact), as the kernels do. They are written for
clarity and autograd (every branch masked with safe values so no NaN leaks into gradients), not
speed, and are differentiable in float64.
"""

from __future__ import annotations

import torch

from ..core.eyes import REGION_CORNEA, gaze_frame


def _dir_scale(v: torch.Tensor) -> torch.Tensor:
    """The power of two ``p [..., 1]`` that brings the largest |component| of ``v [..., 3]`` into [1, 2),
    the exponent clamped to the dtype's normal range: the kernels' ``dir_scale`` (common.h). Scaling a
    direction by it is exact and lets any length > 0 be traced (|d|^2 neither overflows nor underflows);
    constant, so autograd differentiates through the scaled direction unchanged."""
    m = v.detach().abs().amax(-1, keepdim=True)
    _, e = torch.frexp(m)  # m = mant 2^e, mant in [0.5, 1): floor(log2 m) = e - 1
    lim = {torch.float64: 1022, torch.float16: 14}.get(v.dtype, 126)  # the normal exponents
    return torch.pow(2.0, -(e - 1).clamp(-lim, lim).to(v.dtype))


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
    scale = _dir_scale(dirs)  # traced along scale * dirs (any length > 0); t scaled back below
    dirs = dirs * scale
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
    return t_near * scale[:, 0], t_far * scale[:, 0], index, normal


def refract(dirs, normals, eta):
    """Reference of :func:`eyefast.ops.refract`.

    dirs, normals: [N, 3]; eta: float, 0-d tensor or [N] (n_from / n_to).
    Returns out [N, 3] (unit), reflectance [N], tir [N] bool.
    """
    if not torch.is_tensor(eta):
        eta = torch.tensor(eta, dtype=dirs.dtype, device=dirs.device)
    eta = eta.reshape(-1) if eta.dim() > 0 else eta
    dirs, normals = dirs * _dir_scale(dirs), normals * _dir_scale(normals)  # any length > 0
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


# --------------------------------------------------------------------------------------------
# trace_eyes: the refractive eye (SPEC section 8)
# --------------------------------------------------------------------------------------------
def trace_eyes(origins, dirs, eyes):
    """Reference of :func:`eyefast.ops.trace_eyes`: camera rays against refractive eyes.

    Each eye is the union of its globe (sphere: centre, radius r) and a cornea cap (sphere of
    radius ``cornea_radius * r`` centred ``cornea_offset * r`` along the gaze). Per ray, the
    first eye surface entered (t >= 0; an eye whose globe or cornea contains the origin is
    ignored): on the globe -> ``region`` 1 (sclera); on the cornea -> refraction with
    eta = 1 / ior, exact unpolarised Fresnel reflectance, and the refracted ray meets the iris
    plane (``iris_depth * r`` behind the corneal apex) within ``limbus_radius * r`` of its centre
    -> ``region`` 2 (iris), otherwise ``region`` 3 (cornea: the refracted ray misses the iris,
    or is totally reflected when ior < 1; then refr_dir is the mirror direction, fresnel 1).

    Args:
        origins, dirs: [N, 3]; dirs need not be unit length (t is in units of dirs).
        eyes: [E, 12], columns :data:`EYE_COLUMNS`.

    Returns (t [N] (+inf on a miss), eye [N] int64 (-1), region [N] int64, normal [N, 3] (outward
    unit normal at the hit; 0 on a miss), refr_dir [N, 3] (unit, cornea hits only, else 0),
    fresnel [N] (cornea hits only, else 0), t_iris [N] (distance from the cornea hit to the iris
    along refr_dir; +inf unless region 2), iris_uv [N, 2] (iris-plane coordinates in units of the
    limbus radius, axes :func:`gaze_frame`; 0 unless region 2)).
    """
    n, e = origins.shape[0], eyes.shape[0]
    dev, dt = origins.device, origins.dtype
    inf = torch.full((n,), float("inf"), dtype=dt, device=dev)
    if n == 0 or e == 0:
        z3 = origins.new_zeros(n, 3)
        return (inf, torch.full((n,), -1, dtype=torch.long, device=dev), torch.zeros(n, dtype=torch.long, device=dev),
                z3, z3.clone(), origins.new_zeros(n), inf.clone(), origins.new_zeros(n, 2))
    scale = _dir_scale(dirs)[:, 0]  # traced along scale * dirs (any length > 0); t scaled back below
    dirs = dirs * scale[:, None]
    c, r = eyes[:, 0:3], eyes[:, 3]
    g = eyes[:, 4:7] / eyes[:, 4:7].norm(dim=-1, keepdim=True)
    cr, co, lr, idp, ior = (eyes[:, k] for k in range(7, 12))
    cc = c + g * (co * r)[:, None]  # cornea sphere centres [E, 3]
    rc = cr * r
    d = dirs[:, None, :]
    oc_g = origins[:, None, :] - c[None]
    oc_c = origins[:, None, :] - cc[None]
    hit_g, tg0, tg1 = _sphere_roots(oc_g, d, r)
    hit_c, tc0, tc1 = _sphere_roots(oc_c, d, rc)
    inside = ((oc_g * oc_g).sum(-1) < r * r) | ((oc_c * oc_c).sum(-1) < rc * rc)  # [N, E]
    ok_g = hit_g & (tg0 >= 0) & ~inside
    ok_c = hit_c & (tc0 >= 0) & ~inside
    big = torch.full_like(tg0, float("inf"))
    tg = torch.where(ok_g, tg0, big)
    tc = torch.where(ok_c, tc0, big)
    on_cornea = tc < tg  # ties -> sclera
    t_pair = torch.minimum(tg, tc)
    best = t_pair.detach().argmin(dim=1)
    rows = torch.arange(n, device=dev)
    t_best = t_pair[rows, best]
    hit = torch.isfinite(t_best)
    corn = hit & on_cornea[rows, best]
    eye_idx = torch.where(hit, best, torch.full_like(best, -1))
    region = torch.where(hit, torch.where(corn, 2, 1), 0).to(torch.long)
    t_safe = torch.where(hit, t_best, torch.zeros_like(t_best))
    t_out = torch.where(hit, t_best, inf)
    # hit point and outward normal
    p = origins + t_safe[:, None] * dirs
    cen = torch.where(corn[:, None], cc[best], c[best])
    rad = torch.where(corn, rc[best], r[best])
    normal = torch.where(hit[:, None], (p - cen) / rad[:, None], torch.zeros_like(p))
    # refraction at the cornea (eta = 1 / ior), safe values off the cornea
    m = torch.where(corn[:, None], normal, torch.tensor([0.0, 0.0, 1.0], dtype=dt, device=dev).expand(n, 3))
    u = dirs / dirs.norm(dim=-1, keepdim=True)
    u = torch.where(corn[:, None], u, -m)
    eta = 1.0 / ior[best]
    ci = (-(u * m).sum(-1)).clamp(0.0, 1.0)
    sin2t = eta * eta * (1.0 - ci * ci)
    tir = corn & (sin2t > 1)
    ct = torch.sqrt(torch.where(sin2t < 1, 1.0 - sin2t, torch.ones_like(sin2t)))
    ct = torch.where(sin2t < 1, ct, torch.zeros_like(ct))
    refr = eta[:, None] * u + (eta * ci - ct)[:, None] * m
    mirror = u + (2.0 * ci)[:, None] * m
    refr = torch.where(tir[:, None], mirror, refr)
    B, D = eta * ci + ct, ci + eta * ct
    rs = torch.where(B > 0, (eta * ci - ct) / torch.where(B > 0, B, torch.ones_like(B)), torch.ones_like(B))
    rp = torch.where(D > 0, (ci - eta * ct) / torch.where(D > 0, D, torch.ones_like(D)), torch.ones_like(D))
    fres = torch.where(tir, torch.ones_like(rs), 0.5 * (rs * rs + rp * rp))
    # iris plane: centre c + g * h * r, h = cornea_offset + cornea_radius - iris_depth
    gb = g[best]
    ic = c[best] + gb * ((co + cr - idp) * r)[best][:, None]
    den = (refr * gb).sum(-1)
    going_in = corn & ~tir & (den < 0)
    den_s = torch.where(going_in, den, -torch.ones_like(den))
    s = ((ic - p) * gb).sum(-1) / den_s
    going_in = going_in & (s > 0)
    s_safe = torch.where(going_in, s, torch.zeros_like(s))
    q = p + s_safe[:, None] * refr
    e_u, e_v = gaze_frame(gb)
    off = (q - ic) / (lr * r)[best][:, None]
    uv = torch.stack([(off * e_u).sum(-1), (off * e_v).sum(-1)], -1)
    on_iris = going_in & ((uv * uv).sum(-1) <= 1.0)
    region = torch.where(corn & ~on_iris, torch.full_like(region, REGION_CORNEA), region)
    zero3 = torch.zeros_like(refr)
    refr_dir = torch.where(corn[:, None], refr, zero3)
    fresnel = torch.where(corn, fres, torch.zeros_like(fres))
    t_iris = torch.where(on_iris, s_safe, inf)
    iris_uv = torch.where(on_iris[:, None], uv, torch.zeros_like(uv))
    return t_out * scale, eye_idx, region, normal, refr_dir, fresnel, t_iris, iris_uv
