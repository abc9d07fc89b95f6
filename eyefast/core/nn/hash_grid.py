"""Multi-resolution hash-grid encoding (instant-ngp / tiny-cuda-nn) on eyefast's fused kernels.

:class:`HashGrid` is a ``torch.nn.Module``; :func:`hash_grid_encode` is the functional form over
``torch.ops.eyefast.hash_grid_encode``. The op is differentiable w.r.t. the input points and the
table, and twice differentiable (``torch.autograd.grad(..., create_graph=True)`` of the output
w.r.t. the points, then a loss on that gradient, e.g. an eikonal term, trains the table).
Semantics: ``csrc/include/eyefast/hash_grid.h``; pure-PyTorch reference:
:mod:`eyefast.reference.hash_grid`.
"""

from __future__ import annotations

import math

import torch

from .. import _ext
from .._fake import register_fake
from ..hash_layout import level_layout, level_scales

_ext.load()

__all__ = ["HashGrid", "hash_grid_encode", "level_scales", "level_layout"]


def check_finite_points(x: torch.Tensor, name: str = "x", op: str = "hash_grid_encode") -> None:
    """Raises a ValueError naming the first row of ``x`` with a NaN or an infinity (a host sync on a GPU)."""
    bad = ~torch.isfinite(x.detach()).reshape(x.shape[0], -1).all(-1) if x.shape[0] else None
    if bad is not None and bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"eyefast.{op}: {name} has a non-finite value (first bad row: {name}[{row}] = "
                         f"{x[row].tolist()}); the encoding would clamp it to a finite point of the grid")


def hash_grid_encode(x: torch.Tensor, table: torch.Tensor, scales, n_active: int | None = None,
                     smoothstep: bool = False, check: bool = False) -> torch.Tensor:
    """Encodes points ``x [N, 3]`` (clamped to [0, 1]) with ``table [L, T, F]`` -> ``[N, L * F]``.

    ``scales``: L per-level scales (see :func:`level_scales`); ``n_active``: levels ``>= n_active``
    output 0 (default: all L); ``smoothstep``: smoothstep instead of linear interpolation.
    ``check``: raise a ValueError naming the first row of ``x`` with a NaN or an infinity (off by
    default: a host sync on a GPU; unchecked, such points get the features of some finite point).
    """
    if check:
        check_finite_points(x)
    if n_active is None:
        n_active = table.shape[0]
    return torch.ops.eyefast.hash_grid_encode(x, table, [float(s) for s in scales], int(n_active), bool(smoothstep))


# ---- fake (meta) implementations, for torch.compile -------------------------------------------
@register_fake("eyefast::hash_grid_encode")
def _encode_fake(x, table, scales, n_active, smoothstep):
    torch._check(x.dim() == 2 and x.shape[1] == 3, lambda: "x must have shape [N, 3]")
    torch._check(table.dim() == 3, lambda: "table must have shape [L, T, F]")
    torch._check(x.dtype == table.dtype, lambda: "table must have the dtype of x")
    return x.new_empty(x.shape[0], table.shape[0] * table.shape[2])


@register_fake("eyefast::hash_grid_backward")
def _backward_fake(grad_out, x, table, scales, n_active, smoothstep, need_x, need_table):
    gx = x.new_empty(x.shape[0], 3) if need_x else x.new_empty(0)
    gt = torch.empty_like(table) if need_table else x.new_empty(0)
    return gx, gt


@register_fake("eyefast::hash_grid_double_backward")
def _double_backward_fake(gg_x, grad_out, x, table, scales, n_active, smoothstep, need_x, need_table):
    gx = x.new_empty(x.shape[0], 3) if need_x else x.new_empty(0)
    gt = torch.empty_like(table) if need_table else x.new_empty(0)
    return torch.empty_like(grad_out), gx, gt


# ---- autograd ---------------------------------------------------------------------------------
# Registered in C++ (csrc/torch/hash_grid.cpp, Autograd key): there a node's needs_input_grad is the
# running backward pass's (autograd.grad(sdf, x) computes no table gradient; backward(inputs=params)
# no x-gradient), where torch.library.register_autograd's is fixed when the forward runs.


# ---- module -----------------------------------------------------------------------------------
class HashGrid(torch.nn.Module):
    """Multi-resolution hash-grid encoding of points in [0, 1]^3 (instant-ngp).

    Args:
        n_input_dims: must be 3.
        n_levels: L.
        n_features_per_level: F (1..8).
        log2_hashmap_size: each level's table has ``2**log2_hashmap_size`` rows.
        base_resolution: coarsest resolution.
        per_level_scale: growth factor between levels; ``None`` derives it from
            ``finest_resolution``: ``2 ** (log2(finest / base) / (L - 1))``.
        interpolation: ``"linear"`` or ``"smoothstep"``.
        finest_resolution: see ``per_level_scale`` (1024 as in the SPEC).
        dtype, device: of the table (float32 by default; float64 for gradient checks).
        check: check the input points in every :meth:`forward` (a NaN or an infinity raises a
            ValueError naming the first bad row; a host sync on a GPU); ``forward(x, check=True)``
            checks one call.

    Level l has scale ``base * b^l - 1`` (tcnn); levels whose ``(ceil(scale) + 2)^3`` vertices fit
    the table are stored densely, finer ones are hashed with instant-ngp's primes
    (1, 2654435761, 805459861). The table is one parameter ``params [L, T, F]``, initialised
    uniform in ±1e-4 like tcnn.

    Input ``[..., 3]``, clamped to [0, 1] (outside points get the boundary's features and zero
    input gradient along the clamped axes; NaN and infinite points are errors when checked, see
    ``check``); output ``[..., L * F]`` (``n_output_dims``), level-major.
    Progressive training: :meth:`set_active_levels` (or ``n_active_levels``) zeroes the features of
    levels ``>= k``; they receive no gradient.
    """

    def __init__(self, n_input_dims: int = 3, n_levels: int = 16, n_features_per_level: int = 2,
                 log2_hashmap_size: int = 14, base_resolution: float = 16, per_level_scale: float | None = None,
                 interpolation: str = "linear", finest_resolution: float = 1024, dtype=torch.float32, device=None,
                 check: bool = False):
        super().__init__()
        if n_input_dims != 3:
            raise ValueError(f"HashGrid: n_input_dims must be 3, got {n_input_dims}")
        if not 1 <= n_levels <= 32:
            raise ValueError(f"HashGrid: n_levels must be 1..32, got {n_levels}")
        if not 1 <= n_features_per_level <= 8:
            raise ValueError(f"HashGrid: n_features_per_level must be 1..8, got {n_features_per_level}")
        if not 1 <= log2_hashmap_size <= 31:
            raise ValueError(f"HashGrid: log2_hashmap_size must be 1..31, got {log2_hashmap_size}")
        if interpolation not in ("linear", "smoothstep"):
            raise ValueError(f"HashGrid: interpolation must be 'linear' or 'smoothstep', got {interpolation!r}")
        if per_level_scale is None and n_levels > 1:
            per_level_scale = 2.0 ** (math.log2(finest_resolution / base_resolution) / (n_levels - 1))
        self.n_input_dims = 3
        self.n_levels = n_levels
        self.n_features_per_level = n_features_per_level
        self.log2_hashmap_size = log2_hashmap_size
        self.base_resolution = base_resolution
        self.per_level_scale = per_level_scale if per_level_scale is not None else 1.0
        self.interpolation = interpolation
        self.scales = level_scales(n_levels, base_resolution, self.per_level_scale)
        self.n_active_levels = n_levels
        self.check = bool(check)
        table = torch.empty(n_levels, 2 ** log2_hashmap_size, n_features_per_level, dtype=dtype, device=device)
        self.params = torch.nn.Parameter(table.uniform_(-1e-4, 1e-4))

    @property
    def n_output_dims(self) -> int:
        return self.n_levels * self.n_features_per_level

    def set_active_levels(self, k: int) -> None:
        """Only the first ``k`` levels (clamped to [0, L]) contribute; the rest output 0."""
        self.n_active_levels = max(0, min(int(k), self.n_levels))

    def level_mask(self) -> torch.Tensor:
        """Bool [L]: which levels are active."""
        return torch.arange(self.n_levels) < self.n_active_levels

    def forward(self, x: torch.Tensor, check: bool | None = None) -> torch.Tensor:
        """``x [..., 3]`` -> ``[..., L * F]``; ``check`` (default: the module's ``check``): see the class."""
        lead = x.shape[:-1]
        out = hash_grid_encode(x.reshape(-1, 3).contiguous(), self.params, self.scales, self.n_active_levels,
                               self.interpolation == "smoothstep", check=self.check if check is None else check)
        return out.reshape(*lead, self.n_output_dims)

    def extra_repr(self) -> str:
        return (f"n_levels={self.n_levels}, n_features_per_level={self.n_features_per_level}, "
                f"log2_hashmap_size={self.log2_hashmap_size}, base_resolution={self.base_resolution}, "
                f"per_level_scale={self.per_level_scale:.6g}, interpolation={self.interpolation!r}")
