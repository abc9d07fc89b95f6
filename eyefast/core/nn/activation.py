"""Softplus on eyefast's fused kernels: a drop-in for ``torch.nn.Softplus`` /
``torch.nn.functional.softplus`` (same values, same ``beta`` and ``threshold`` semantics), twice
differentiable with each derivative a single elementwise pass.

Why: the SDF MLP (Softplus(beta=100), SPEC 2) is differentiated twice per training step (normals,
then the eikonal and normal losses). torch's second derivative of softplus runs seven elementwise
ops over every hidden activation; here it is one kernel. The float32 forward uses eyefast's own
vectorised exp / log1p (relative error ~1e-7 of torch's, see ``csrc/include/eyefast/activation.h``).
The reference is ``torch.nn.functional.softplus`` itself.
"""

from __future__ import annotations

import torch

from .. import _ext
from .._fake import register_fake

_ext.load()

__all__ = ["softplus", "Softplus"]


def softplus(z: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    """``log1p(exp(beta z)) / beta``, and ``z`` where ``beta z > threshold``; any shape."""
    return torch.ops.eyefast.softplus(z, float(beta), float(threshold))


class Softplus(torch.nn.Module):
    """``torch.nn.Softplus`` on eyefast's kernels."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = float(beta), float(threshold)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return softplus(z, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


@register_fake("eyefast::softplus")
def _softplus_fake(z, beta=1.0, threshold=20.0):
    return torch.empty_like(z, memory_format=torch.contiguous_format)


@register_fake("eyefast::softplus_backward")
def _softplus_backward_fake(grad, z, beta, threshold):
    torch._check(grad.shape == z.shape, lambda: "z must have the shape of grad")
    return torch.empty_like(z, memory_format=torch.contiguous_format)


@register_fake("eyefast::softplus_double_backward")
def _softplus_double_backward_fake(gg, grad, z, beta, threshold, need_grad, need_z):
    a = torch.empty_like(z, memory_format=torch.contiguous_format) if need_grad else z.new_empty(0)
    b = torch.empty_like(z, memory_format=torch.contiguous_format) if need_z else z.new_empty(0)
    return a, b
