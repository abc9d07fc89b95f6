"""Benchmarks of the volume-rendering kernels and the occupancy sampler vs the PyTorch references.

pytest benchmarks/bench_volume.py --benchmark-only   (pytest-benchmark)
python benchmarks/bench_volume.py [--rays 1000000] [--samples 16777216]   (prints ratios)

Scene: a 128^3 grid over [-1, 1]^3 whose occupied cells form a thin spherical shell (radius
0.5, 0.04 thick), rays from a sphere of radius 3 towards random points in the box, step
2 sqrt(3) / 1024 (SPEC section 4 with render_n_samples = 1024).
"""

from __future__ import annotations

import argparse
import time

import torch

from eyefast import volrend as vr
from eyefast.core.occupancy import OccupancyGrid
from eyefast.reference import occupancy as ref_occ
from eyefast.reference import volrend as ref_vr

STEP = 2 * 3 ** 0.5 / 1024


def shell_grid(res=128, device="cpu") -> OccupancyGrid:
    g = OccupancyGrid([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=res).to(device)
    centres = (g.grid_coords.float() + 0.5) / res * 2 - 1
    g.binaries.copy_(((centres.norm(dim=-1) - 0.5).abs() < 0.02).view(g.binaries.shape))
    return g


def shell_rays(n, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    o = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1) * 3
    target = (torch.rand(n, 3, generator=gen) * 2 - 1) * 0.6
    d = torch.nn.functional.normalize(target - o, dim=-1)
    return o.to(device), d.to(device)


def packed_samples(n_samples, per_ray=256, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    n_rays = n_samples // per_ray
    ray_indices = torch.arange(n_rays).repeat_interleave(per_ray)
    t_starts = torch.arange(per_ray, dtype=torch.float32).repeat(n_rays) * 0.01
    t_ends = t_starts + 0.01
    sigmas = torch.rand(n_rays * per_ray, generator=gen) * 10
    return [x.to(device) for x in (t_starts, t_ends, sigmas, ray_indices)] + [n_rays]


# ---- pytest-benchmark ----------------------------------------------------------------------
def test_sampling_kernel(benchmark):
    g = shell_grid()
    o, d = shell_rays(1 << 16)
    benchmark(lambda: g.sampling(o, d, render_step_size=STEP))


def test_render_weight_from_density_kernel(benchmark):
    ts, te, s, ri, n = packed_samples(1 << 20)
    benchmark(lambda: vr.render_weight_from_density(ts, te, s, ri, n))


def test_render_weight_from_density_reference(benchmark):
    ts, te, s, ri, n = packed_samples(1 << 20)
    benchmark(lambda: ref_vr.render_weight_from_density(ts, te, s, ri, n))


# ---- ratios --------------------------------------------------------------------------------
def _time(fn, reps=3):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rays", type=int, default=1_000_000)
    ap.add_argument("--ref-rays", type=int, default=None, help="rays for the (slow) reference sampler")
    ap.add_argument("--samples", type=int, default=1 << 24)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = args.device
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    g = shell_grid(device=dev)
    o, d = shell_rays(args.rays, device=dev)

    def k_sample():
        g.sampling(o, d, render_step_size=STEP)
        sync()

    tk = _time(k_sample)
    n_s = g.sampling(o, d, render_step_size=STEP)[0].numel()
    nr = args.ref_rays or args.rays
    o2, d2 = o[:nr], d[:nr]
    tr = _time(lambda: (ref_occ.sampling(o2, d2, g.binaries, g.aabbs, render_step_size=STEP), sync()), reps=1)
    tr_scaled = tr * args.rays / nr
    print(f"sampling {args.rays} rays, 128^3 shell ({n_s} samples): kernel {tk * 1e3:.1f} ms, "
          f"reference {tr_scaled * 1e3:.1f} ms (measured on {nr} rays, scaled), ratio {tr_scaled / tk:.1f}x")
    ts, te, s, ri, n = packed_samples(args.samples, device=dev)

    def k_w():
        vr.render_weight_from_density(ts, te, s, ri, n)
        sync()

    def r_w():
        ref_vr.render_weight_from_density(ts, te, s, ri, n)
        sync()

    a, b = _time(k_w), _time(r_w)
    print(f"render_weight_from_density {args.samples} samples: kernel {a * 1e3:.1f} ms, reference {b * 1e3:.1f} ms, "
          f"ratio {b / a:.1f}x")
    sg = s.clone().requires_grad_(True)

    def k_wb():
        w, _, _ = vr.render_weight_from_density(ts, te, sg, ri, n)
        w.sum().backward()
        sync()

    def r_wb():
        w, _, _ = ref_vr.render_weight_from_density(ts, te, sg, ri, n)
        w.sum().backward()
        sync()

    a, b = _time(k_wb), _time(r_wb)
    print(f"render_weight_from_density fwd+bwd {args.samples} samples: kernel {a * 1e3:.1f} ms, "
          f"reference {b * 1e3:.1f} ms, ratio {b / a:.1f}x")


if __name__ == "__main__":
    main()
