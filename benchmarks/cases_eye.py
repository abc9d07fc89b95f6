"""Benchmark cases of the eye kernels: ray_sphere_intersect, refract and the fused trace_eyes.

``trace_eyes`` (forward) and ``trace_eyes+bwd`` (forward + backward to origins, dirs and eyes)
time the fused kernel against the PyTorch reference and, as ``composition``, against the same
computation built from separate eyefast ops: ray_sphere_intersect on the two globes and on the two
cornea spheres, the first of the two, eyefast.ops.refract on the cornea hits, then the iris-plane
intersection and uv in PyTorch. (The composition is the natural unfused pipeline: it agrees with
the contract for cameras outside the eyes, which is what these rays are.)
"""

from __future__ import annotations

import torch

from eyefast import ops
from eyefast.core import eyes as E
from eyefast.reference import eye as ref

from .common import Case


def _rays(n: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[-0.115, 0.03, 0.30], [0.115, 0.03, 0.30]])
    radii = torch.tensor([0.05, 0.05])
    origins = torch.randn(n, 3, generator=g) * 0.05 + torch.tensor([0.0, 0.0, 1.2])
    target = torch.rand(n, 3, generator=g) * torch.tensor([0.4, 0.2, 0.1]) - torch.tensor([0.2, 0.07, -0.25])
    dirs = target - origins
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    return [t.to(device) for t in (origins, dirs, centers, radii)]


def cases(device: str, quick: bool):
    n = 1 << 20 if quick else 1 << 22  # 4M rays for the target measurement
    o, d, c, r = _rays(n, device)
    # check=False on CUDA: the data checks cost a device-to-host sync there (fused and free on CPU).
    check = not device.startswith("cuda")
    rs = Case(
        op="ray_sphere_intersect",
        n=n,
        device=device,
        eyefast=lambda: ops.ray_sphere_intersect(o, d, c, r, check=check),
        reference=lambda: ref.ray_sphere_intersect(o, d, c, r),
        bytes_moved=n * (24 + 28),  # in: origins, dirs; out: t_near, t_far, index (int64), normal
        note="2 spheres (the eyes)",
    )
    g = torch.Generator().manual_seed(1)
    nm = torch.randn(n, 3, generator=g).to(device)
    eta = (0.6 + 0.8 * torch.rand(n, generator=g)).to(device)
    rf = Case(
        op="refract",
        n=n,
        device=device,
        eyefast=lambda: ops.refract(d, nm, eta, check=check),
        reference=lambda: ref.refract(d, nm, eta),
        bytes_moved=n * (12 + 12 + 4 + 12 + 4 + 1),  # in: dirs, normals, eta; out: out, reflectance, tir
        note="per-ray eta",
    )
    # The same ops writing into reused out= buffers: no allocation, so (on the CPU) no page faults
    # of fresh memory, the condition the copy ceiling is measured under. The reference allocates.
    rs_buf = ops.ray_sphere_intersect(o, d, c, r, check=check)
    rs_out = Case(
        op="ray_sphere_intersect+out",
        n=n,
        device=device,
        eyefast=lambda: ops.ray_sphere_intersect(o, d, c, r, check=check, out=rs_buf),
        reference=rs.reference,
        bytes_moved=rs.bytes_moved,
        note="2 spheres; into reused out= buffers",
    )
    rf_buf = ops.refract(d, nm, eta, check=check)
    rf_out = Case(
        op="refract+out",
        n=n,
        device=device,
        eyefast=lambda: ops.refract(d, nm, eta, check=check, out=rf_buf),
        reference=rf.reference,
        bytes_moved=rf.bytes_moved,
        note="per-ray eta; into reused out= buffers",
    )
    return [rs, rs_out, rf, rf_out] + _trace_cases(device, quick, check)


# --------------------------------------------------------------------------------------------
# trace_eyes: fused vs composition of eyefast ops vs reference
# --------------------------------------------------------------------------------------------
def _eye_scene(n: int, device: str, seed: int = 0):
    """Two model eyes (radius 12 mm, gazing at the camera, slightly turned) and n rays from a
    camera 0.9 m away aimed at boxes around the eyes (+-1.2 radii): about half hit, a third of the
    hits on the cornea."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[-0.032, 0.03, 0.30], [0.032, 0.03, 0.30]])
    gaze = torch.tensor([[0.1, -0.05, 1.0], [-0.08, -0.05, 1.0]])
    eyes = E.pack_eyes(centers, 0.012, gaze)
    origins = torch.randn(n, 3, generator=g) * 0.01 + torch.tensor([0.0, 0.0, 1.2])
    k = torch.randint(0, 2, (n,), generator=g)
    jitter = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([1.2, 1.2, 0.0]) * 0.012
    dirs = centers[k] + jitter - origins
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    return [t.to(device).contiguous() for t in (origins, dirs, eyes)]


def _composition(o, d, eyes, check):
    """trace_eyes from separate eyefast ops (two ray_sphere_intersect, refract) plus PyTorch."""
    n = o.shape[0]
    c, r = eyes[:, 0:3], eyes[:, 3]
    g = eyes[:, 4:7] / eyes[:, 4:7].norm(dim=1, keepdim=True)
    cr, co, lr, idp, ior = eyes[:, 7], eyes[:, 8], eyes[:, 9], eyes[:, 10], eyes[:, 11]
    cc, rc = (c + g * (co * r)[:, None]).contiguous(), (cr * r).contiguous()
    tg, _, kg, ng = ops.ray_sphere_intersect(o, d, c.contiguous(), r.contiguous(), check=check)
    tc, _, kc, nc = ops.ray_sphere_intersect(o, d, cc, rc, check=check)
    corn = tc < tg  # first of the two (ties -> sclera)
    t = torch.minimum(tg, tc)
    hit = torch.isfinite(t)
    eye = torch.where(corn, kc, kg)
    normal = torch.where(corn[:, None], nc, ng)
    idx = torch.nonzero(corn)[:, 0]
    k = kc[idx]
    refr, fres, tir = ops.refract(d[idx], nc[idx], (1.0 / ior)[k], check=check)
    gk = g[k]
    ic = c[k] + gk * ((co + cr - idp) * r)[k][:, None]
    p = o[idx] + t[idx, None] * d[idx]
    den = (refr * gk).sum(1)
    s = ((ic - p) * gk).sum(1) / den
    reach = ~tir & (den < 0) & (s > 0)
    e_u, e_v = E.gaze_frame(gk)
    off = (p + s[:, None] * refr - ic) / (lr * r)[k][:, None]
    uv = torch.stack([(off * e_u).sum(1), (off * e_v).sum(1)], 1)
    on = reach & ((uv * uv).sum(1) <= 1)
    region = hit.long().index_put((idx,), torch.where(on, 2, 3))
    refr_dir = o.new_zeros(n, 3).index_put((idx,), refr)
    fresnel = o.new_zeros(n).index_put((idx,), fres)
    inf = torch.full_like(s, float("inf"))
    t_iris = torch.full_like(t, float("inf")).index_put((idx,), torch.where(on, s, inf))
    iris_uv = o.new_zeros(n, 2).index_put((idx,), torch.where(on[:, None], uv, torch.zeros_like(uv)))
    return t, eye, region, normal, refr_dir, fresnel, t_iris, iris_uv


def _trace_cases(device: str, quick: bool, check: bool):
    n = 1 << 18 if quick else 1 << 20  # the size: 1M rays, 2 eyes
    o, d, eyes = _eye_scene(n, device)
    fwd = Case(
        op="trace_eyes",
        n=n,
        device=device,
        eyefast=lambda: ops.trace_eyes(o, d, eyes, check=check),
        reference=lambda: ref.trace_eyes(o, d, eyes),
        extra={"composition": lambda: _composition(o, d, eyes, check)},
        # in: origins, dirs; out: t, eye (int64), region (int64), normal, refr_dir, fresnel, t_iris, iris_uv
        bytes_moved=n * (24 + 4 + 8 + 8 + 12 + 12 + 4 + 4 + 8),
        note="2 eyes; extra: ray_sphere_intersect x2 + refract + PyTorch iris plane",
    )
    g = torch.Generator().manual_seed(2)
    w = [torch.randn(shape, generator=g).to(device) for shape in ((n,), (n, 3), (n, 3), (n,), (n,), (n, 2))]
    leaves = [t.clone().requires_grad_(True) for t in (o, d, eyes)]

    def fwd_bwd(fn):
        # Random output gradients straight into autograd (no loss ops to time): t, normal, refr_dir,
        # fresnel, t_iris, iris_uv (on misses and off the iris t / t_iris are constants).
        def run():
            out = fn(*leaves)
            return torch.autograd.grad([out[k] for k in (0, 3, 4, 5, 6, 7)], leaves, grad_outputs=w)

        return run

    bwd = Case(
        op="trace_eyes+bwd",
        n=n,
        device=device,
        eyefast=fwd_bwd(lambda a, b, c: ops.trace_eyes(a, b, c, check=check)),
        reference=fwd_bwd(ref.trace_eyes),
        extra={"composition": fwd_bwd(lambda a, b, c: _composition(a, b, c, check))},
        bytes_moved=0,
        note="fwd+bwd (grads to origins, dirs, eyes); extra: the composition's autograd",
    )
    return [fwd, bwd]
