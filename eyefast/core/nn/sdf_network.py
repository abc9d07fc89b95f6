"""A hash-grid encoding and a Softplus MLP with the x-gradient of its first output, fused
(``torch.ops.eyefast.sdf_network``): the SDF network of SPEC 2 and its normals in one op, and
the training loss's backward through both (value and gradient) in one op.

What it computes (its reference is :func:`eyefast.reference.sdf_network.sdf_network`)::

    u    = [2 x - 1 (include_x) | hash_grid_encode(x, table, scales, n_active, smoothstep)]
    a_0  = u;  a_{k+1} = softplus_beta(a_k W_k^T + b_k)   (k < K - 1)
    out  = a_{K-1} W_{K-1}^T + b_{K-1}                      [N, n_out]
    grad = d out[:, 0] / d x                                [N, 3]

``x`` lies in ``[0, 1]^3`` (the hash grid's domain; the encoding clamps, as
:func:`eyefast.nn.hash_grid_encode` does). Differentiable once w.r.t. ``x``, the table, the
weights and the biases, through both outputs (so an eikonal or normal loss on ``grad`` trains all
of them); differentiating the backward again raises. Why fused: see ``csrc/torch/sdf_network.cpp``.
"""

from __future__ import annotations

import torch

from .. import _ext
from .._fake import register_fake

_ext.load()

__all__ = ["sdf_network"]


def sdf_network(x: torch.Tensor, table: torch.Tensor, scales, n_active: int, smoothstep: bool, weights, biases,
                beta: float, include_x: bool = True, need_grad: bool = True):
    """``(out [N, n_out], grad [N, 3])`` (``grad`` is ``[0, 3]`` without ``need_grad``).

    ``weights[k] [H_k, H_{k-1}]`` and ``biases[k] [H_k]`` as ``torch.nn.Linear`` holds them
    (``H_{-1} = (3 if include_x else 0) + L * F``); Softplus(``beta``, threshold 20) between layers.
    """
    out, grad, _ = torch.ops.eyefast.sdf_network(x, table, [float(s) for s in scales], int(n_active),
                                                 bool(smoothstep), list(weights), list(biases), float(beta),
                                                 bool(include_x), bool(need_grad), False)
    return out, grad


def _saved_shapes(x, table, weights, include_x, need_grad):
    n = x.shape[0]
    m = table.shape[0] * table.shape[2]
    n_u = m + (3 if include_x else 0) + 1  # the network's inputs and a ones column (the first bias)
    def e():  # an absent tensor: a fresh empty one per slot, as the op returns (outputs do not alias)
        return x.new_empty(0)

    # J: [N, L*F, 3]; on CUDA stored feature-major (strides 1, 3N, N), as the op allocates it
    jac = x.new_empty(m, 3, n).permute(2, 0, 1) if x.device.type == "cuda" else x.new_empty(n, m, 3)
    saved = [x.new_empty(n, n_u), jac if need_grad else e(), x.new_empty(n, n_u) if need_grad else e()]
    for j in range(len(weights) - 1):
        h = weights[j].shape[0]
        top = j + 2 == len(weights)
        saved += [x.new_empty(n, h), x.new_empty(n, h), x.new_empty(n, h),
                  x.new_empty(n, h) if need_grad and not top else e(), x.new_empty(n, h) if need_grad else e()]
    return saved


@register_fake("eyefast::sdf_network")
def _sdf_network_fake(x, table, scales, n_active, smoothstep, weights, biases, beta, include_x, need_grad, save):
    torch._check(x.dim() == 2 and x.shape[1] == 3, lambda: "x must have shape [N, 3]")
    torch._check(table.dim() == 3 and table.dtype == x.dtype, lambda: "table must be [L, T, F] with the dtype of x")
    torch._check(len(weights) >= 1 and len(biases) == len(weights), lambda: "one bias per weight")
    out = x.new_empty(x.shape[0], weights[-1].shape[0])
    grad = x.new_empty(x.shape[0] if need_grad else 0, 3)
    return out, grad, _saved_shapes(x, table, weights, include_x, need_grad) if save else []


@register_fake("eyefast::sdf_network_backward")
def _sdf_network_backward_fake(g_out, g_grad, x, table, scales, n_active, smoothstep, weights, biases, beta,
                               include_x, saved, need_x, need_table, need_params):
    gx = x.new_empty(x.shape[0], 3) if need_x else x.new_empty(0)
    gt = torch.empty_like(table, memory_format=torch.contiguous_format) if need_table else x.new_empty(0)
    gw = [torch.empty_like(w, memory_format=torch.contiguous_format) for w in weights] if need_params else []
    gb = [torch.empty_like(b, memory_format=torch.contiguous_format) for b in biases] if need_params else []
    return gx, gt, gw, gb
