"""Benchmark cases of the occupancy sampler and the volume-rendering weights.

On CUDA with nerfacc installed, each case also times nerfacc 0.5's counterpart on the same inputs
(``nerfacc_ms``), and the sampling case says whether both produced the same samples
(``identical_samples``: same count, same ray indices, and the largest |t| difference).
"""

from __future__ import annotations

import torch

from eyefast import volrend as vr
from eyefast.reference import occupancy as ref_occ
from eyefast.reference import volrend as ref_vr

from .bench_volume import STEP, packed_samples, shell_grid, shell_rays
from .common import Case


def _nerfacc():
    try:
        import nerfacc

        return nerfacc
    except Exception:  # noqa: BLE001 - optional dependency
        return None


def cases(device: str, quick: bool):
    cuda = device.startswith("cuda")
    n_rays = (1 << 16 if quick else 1 << 20) if not cuda else 1 << 20
    grid = shell_grid(128, device)
    o, d = shell_rays(n_rays, device)
    n_ref = min(n_rays, 1024 if cuda else 8192)  # the reference marches in a Python loop
    sampling = Case(
        op="occupancy_sampling",
        n=n_rays,
        device=device,
        eyefast=lambda: grid.sampling(o, d, render_step_size=STEP),
        reference=lambda: ref_occ.sampling(o[:n_ref], d[:n_ref], grid.binaries, grid.aabbs, render_step_size=STEP),
        reference_scale=n_rays / n_ref,
        bytes_moved=0,
        note=f"128^3 thin shell, step 2*sqrt(3)/1024; reference timed on {n_ref} rays and scaled",
    )
    n_samples = 1 << 20 if quick and not cuda else 1 << 24
    ts, te, sg, ri, nr = packed_samples(n_samples, device=device)
    weights = Case(
        op="render_weight_from_density",
        n=n_samples,
        device=device,
        eyefast=lambda: vr.render_weight_from_density(ts, te, sg, ri, nr, check=False),
        reference=lambda: ref_vr.render_weight_from_density(ts, te, sg, ri, nr),
        bytes_moved=n_samples * (4 * 3 + 8 + 4 * 3),  # in: t_starts, t_ends, sigmas, ray_indices; out: 3 x [M]
        note="256 samples per ray",
    )
    nerfacc = _nerfacc() if cuda else None
    if nerfacc is not None:
        est = nerfacc.OccGridEstimator(roi_aabb=[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=128, levels=1).to(device)
        est.binaries.copy_(grid.binaries)
        sampling.extra["nerfacc"] = lambda: est.sampling(o, d, render_step_size=STEP)
        a = grid.sampling(o, d, render_step_size=STEP)
        b = est.sampling(o, d, render_step_size=STEP)
        same_count = a[0].numel() == b[0].numel()
        sampling.info = {
            "eyefast_samples": int(a[0].numel()),
            "nerfacc_samples": int(b[0].numel()),
            "identical_samples": bool(same_count and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                      and torch.equal(a[2], b[2])),
            "max_abs_t_diff": float((a[1] - b[1]).abs().max()) if same_count and torch.equal(a[0], b[0]) else None,
        }
        weights.extra["nerfacc"] = lambda: nerfacc.render_weight_from_density(
            ts, te, sg, ray_indices=ri, n_rays=nr
        )
        wa = vr.render_weight_from_density(ts, te, sg, ri, nr)[0]
        wb = nerfacc.render_weight_from_density(ts, te, sg, ray_indices=ri, n_rays=nr)[0]
        weights.info = {"max_abs_weight_diff_vs_nerfacc": float((wa - wb).abs().max())}
    return [sampling, weights]
