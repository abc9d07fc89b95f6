"""Spherical-harmonics direction encoding (degree 1..4, tcnn basis) on eyefast's fused kernel.

Same values as :func:`eyefast.reference.sh.sh_encode` (unit directions in, not renormalised).
Differentiable once w.r.t. the directions (the backward kernel is not itself differentiable).
"""

from __future__ import annotations

import torch

from .. import _ext
from .._fake import register_fake

_ext.load()

__all__ = ["sh_encode", "SHEncoding"]


def sh_encode(dirs: torch.Tensor, degree: int = 4) -> torch.Tensor:
    """``dirs [..., 3]`` unit directions -> ``[..., degree**2]``."""
    lead = dirs.shape[:-1]
    out = torch.ops.eyefast.sh_encode(dirs.reshape(-1, 3).contiguous(), int(degree))
    return out.reshape(*lead, int(degree) ** 2)


@register_fake("eyefast::sh_encode")
def _sh_fake(dirs, degree=4):
    torch._check(dirs.dim() == 2 and dirs.shape[1] == 3, lambda: "dirs must have shape [N, 3]")
    return dirs.new_empty(dirs.shape[0], degree * degree)


@register_fake("eyefast::sh_encode_backward")
def _sh_bwd_fake(grad_out, dirs, degree):
    return torch.empty_like(dirs)


def _sh_setup(ctx, inputs, output):
    dirs, degree = inputs
    ctx.save_for_backward(dirs)
    ctx.degree = degree


def _sh_backward(ctx, grad_out):
    (dirs,) = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None
    return torch.ops.eyefast.sh_encode_backward(grad_out, dirs, ctx.degree), None


torch.library.register_autograd("eyefast::sh_encode", _sh_backward, setup_context=_sh_setup)


class SHEncoding(torch.nn.Module):
    """``[..., 3]`` unit directions -> ``[..., degree**2]`` real SH coefficients."""

    def __init__(self, degree: int = 4):
        super().__init__()
        if degree not in (1, 2, 3, 4):
            raise ValueError(f"SHEncoding: degree must be 1..4, got {degree}")
        self.degree = degree

    @property
    def n_output_dims(self) -> int:
        return self.degree ** 2

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        return sh_encode(dirs, self.degree)
