"""Reference of :func:`eyefast.nn.sdf_network`: the composition it fuses, in plain PyTorch.

``u = [2 x - 1 | hash_grid_encode(x)]``, ``a_{k+1} = softplus_beta(W_k a_k + b_k)``,
``out = W_{K-1} a_{K-1} + b_{K-1}``, and ``grad = d out[:, 0] / d x`` by ``torch.autograd.grad``
(``create_graph`` while grad mode is on, so the loss can differentiate it once more).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .hash_grid import hash_grid_encode

__all__ = ["sdf_network"]


def sdf_network(x, table, scales, n_active, smoothstep, weights, biases, beta, include_x=True, need_grad=True):
    """``(out [N, n_out], grad [N, 3] or [0, 3])``; see the module docstring."""
    graph = torch.is_grad_enabled()
    with torch.enable_grad():
        xg = x
        if need_grad and not x.requires_grad:
            xg = x.detach().requires_grad_(True)
        enc = hash_grid_encode(xg, table, scales, n_active, smoothstep)
        h = torch.cat([2.0 * xg - 1.0, enc], -1) if include_x else enc
        for k, (w, b) in enumerate(zip(weights, biases)):
            h = F.linear(h, w, b)
            if k + 1 < len(weights):
                h = F.softplus(h, beta)
        if need_grad:
            (grad,) = torch.autograd.grad(h[:, 0], xg, torch.ones_like(h[:, 0]), create_graph=graph)
        else:
            grad = x.new_empty(0, 3)
    if not graph:
        h, grad = h.detach(), grad.detach()
    return h, grad
