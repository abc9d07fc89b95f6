"""Benchmark cases of the hash-grid encoding (fwd + bwd to the table and the input) and SH."""

from __future__ import annotations

import torch

from eyefast.nn import HashGrid, sh_encode
from eyefast.reference.hash_grid import hash_grid_encode as ref_encode
from eyefast.reference.sh import sh_encode as sh_ref

from .common import Case


def cases(device: str, quick: bool):
    n = 1 << 17 if quick else 1 << 20  # issue 4's size: 1M points, 16 levels x 2, 2^19 rows
    torch.manual_seed(0)
    grid = HashGrid(n_levels=16, n_features_per_level=2, log2_hashmap_size=19, device=device)
    x = torch.rand(n, 3, device=device, requires_grad=True)
    w = torch.randn(n, grid.n_output_dims, device=device)

    def kernel():
        return torch.autograd.grad((grid(x) * w).sum(), (x, grid.params))

    def reference():
        return torch.autograd.grad((ref_encode(x, grid.params, grid.scales) * w).sum(), (x, grid.params))

    hg = Case(op="hash_grid", n=n, device=device, eyefast=kernel, reference=reference, bytes_moved=0,
              note="fwd+bwd (grads to x and table), 16 levels x 2 features, 2^19 rows")
    d = torch.nn.functional.normalize(torch.randn(n, 3, device=device), dim=-1).requires_grad_(True)
    ws = torch.randn(n, 16, device=device)
    sh = Case(op="sh_encode", n=n, device=device,
              eyefast=lambda: torch.autograd.grad((sh_encode(d) * ws).sum(), d),
              reference=lambda: torch.autograd.grad((sh_ref(d) * ws).sum(), d),
              bytes_moved=0, note="degree 4, fwd+bwd")
    return [hg, sh]
