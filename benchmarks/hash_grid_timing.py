"""CPU timing of HashGrid fwd+bwd (kernel vs the PyTorch reference) and of the SH encoding.

Usage: python benchmarks/hash_grid_timing.py [--n 1000000] [--reps 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from eyefast.core.nn import HashGrid, sh_encode
from eyefast.reference.hash_grid import hash_grid_encode as ref_encode
from eyefast.reference.sh import sh_encode as sh_ref


def timeit(fn, reps):
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--interp", default="linear")
    a = ap.parse_args()
    torch.manual_seed(0)
    g = HashGrid(n_levels=16, n_features_per_level=2, log2_hashmap_size=19, interpolation=a.interp)
    x = torch.rand(a.n, 3, requires_grad=True)
    w = torch.randn(a.n, g.n_output_dims)
    smooth = a.interp == "smoothstep"

    def k_fwd():
        with torch.no_grad():
            g(x)

    def k_fb():
        g.params.grad = None
        x.grad = None
        (g(x) * w).sum().backward()

    def k_fb_table():  # the usual training case: no input gradient
        g.params.grad = None
        (g(x.detach()) * w).sum().backward()

    def r_fb():
        g.params.grad = None
        x.grad = None
        (ref_encode(x, g.params, g.scales, smoothstep=smooth) * w).sum().backward()

    print(f"threads={torch.get_num_threads()} N={a.n} L=16 F=2 T=2^19 interp={a.interp}")
    tf = timeit(k_fwd, a.reps)
    tk = timeit(k_fb, a.reps)
    tkt = timeit(k_fb_table, a.reps)
    tr = timeit(r_fb, max(1, a.reps - 2))
    print(f"kernel fwd          {tf * 1e3:8.1f} ms")
    print(f"kernel fwd+bwd      {tk * 1e3:8.1f} ms  (grads to x and table)")
    print(f"kernel fwd+bwd      {tkt * 1e3:8.1f} ms  (table only)")
    print(f"reference fwd+bwd   {tr * 1e3:8.1f} ms  -> speed-up {tr / tk:.1f}x")

    d = torch.nn.functional.normalize(torch.randn(a.n, 3), dim=-1).requires_grad_(True)
    ws = torch.randn(a.n, 16)
    ts = timeit(lambda: torch.autograd.grad((sh_encode(d) * ws).sum(), d), a.reps)
    tsr = timeit(lambda: torch.autograd.grad((sh_ref(d) * ws).sum(), d), a.reps)
    print(f"SH deg4 fwd+bwd: kernel {ts * 1e3:.1f} ms, torch reference {tsr * 1e3:.1f} ms -> {tsr / ts:.1f}x")


if __name__ == "__main__":
    main()
