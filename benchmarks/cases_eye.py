"""Benchmark cases of the eye kernels: ray_sphere_intersect and refract."""

from __future__ import annotations

import torch

from eyefast import ops
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
    return [rs, rf]
