"""pytest-benchmark: HashGrid fwd+bwd (kernel vs PyTorch reference) and SH encoding, CPU.

Small sizes by default (EYEFAST_BENCH_N points, default 100k) so that the suite stays quick; the
full-size comparison (1M points, 2^19 rows) is benchmarks/hash_grid_timing.py.
"""

import os

import pytest
import torch

from eyefast.core.nn import HashGrid, sh_encode
from eyefast.reference.hash_grid import hash_grid_encode as ref_encode
from eyefast.reference.sh import sh_encode as sh_ref

N = int(os.environ.get("EYEFAST_BENCH_N", "100000"))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    g = HashGrid(n_levels=16, n_features_per_level=2, log2_hashmap_size=19)
    x = torch.rand(N, 3, requires_grad=True)
    w = torch.randn(N, g.n_output_dims)
    return g, x, w


def test_hash_grid_kernel_fwd_bwd(benchmark, setup):
    g, x, w = setup

    def run():
        g.params.grad = None
        x.grad = None
        (g(x) * w).sum().backward()

    benchmark(run)


def test_hash_grid_reference_fwd_bwd(benchmark, setup):
    g, x, w = setup

    def run():
        g.params.grad = None
        x.grad = None
        (ref_encode(x, g.params, g.scales) * w).sum().backward()

    benchmark.pedantic(run, rounds=3, iterations=1)


@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_sh_fwd_bwd(benchmark, impl):
    d = torch.nn.functional.normalize(torch.randn(N, 3), dim=-1).requires_grad_(True)
    w = torch.randn(N, 16)
    fn = sh_encode if impl == "kernel" else sh_ref
    benchmark(lambda: torch.autograd.grad((fn(d) * w).sum(), d))
