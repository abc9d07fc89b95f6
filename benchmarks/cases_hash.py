"""Benchmark cases of the hash-grid encoding (fwd + bwd to the table and the input) and SH."""

from __future__ import annotations

import torch

from eyefast.core.nn import HashGrid, sh_encode
from eyefast.reference.hash_grid import hash_grid_encode as ref_encode
from eyefast.reference.sh import sh_encode as sh_ref

from .common import Case


def _grid_cases(device: str, quick: bool):
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


def _sdf_cases(device: str, quick: bool):
    """The SDF-gradient path of the trainer (issue 4): face SDF (smoothstep grid, 16 levels x 2, 2^14 rows,
    64-wide MLP) with an eikonal loss on its gradient, fwd + bwd. eyefast: the fused sdf_network op, which
    returns the analytic x-gradient itself (``FaceSDF.forward_with_gradient``, what the trainer uses).
    reference: the same on the PyTorch reference ops.
    extra ``numerical``: central differences (Neuralangelo style, 6 more SDF evaluations) on the kernel."""
    from eyefast.scene import backend
    from eyefast.scene.model import FaceSDF

    n = 8192 if quick else 56000  # the samples of a demo training step
    torch.manual_seed(0)
    nets = {b: FaceSDF(1.0, 16, 2, 15, backend.get(b)).to(device) for b in ("eyefast", "reference")}
    nets["reference"].load_state_dict(nets["eyefast"].state_dict())
    x = torch.rand(n, 3, device=device) - 0.5

    def analytic(net):
        s, f, g = net.forward_with_gradient(x)
        (((g.norm(dim=-1) - 1) ** 2).mean() + s.abs().mean() + f.mean()).backward()

    def numerical(net, eps=1e-3):
        s, f = net(x)
        off = torch.eye(3, device=device) * eps
        sp, _ = net(torch.cat([x + off[i] for i in range(3)] + [x - off[i] for i in range(3)]))
        sp = sp.view(6, -1)
        g = torch.stack([(sp[i] - sp[i + 3]) / (2 * eps) for i in range(3)], -1)
        (((g.norm(dim=-1) - 1) ** 2).mean() + s.abs().mean() + f.mean()).backward()

    return [Case(op="sdf_eikonal", n=n, device=device, eyefast=lambda: analytic(nets["eyefast"]),
                 reference=lambda: analytic(nets["reference"]), bytes_moved=0,
                 extra={"numerical": lambda: numerical(nets["eyefast"])},
                 note="face SDF + eikonal, fwd+bwd: the fused op's analytic gradient; extra: central differences")]


def cases(device: str, quick: bool):
    return _grid_cases(device, quick) + _sdf_cases(device, quick)
