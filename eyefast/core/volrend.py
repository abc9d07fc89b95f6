"""Volume rendering on packed samples (nerfacc 0.5 names and semantics), on eyefast kernels.

Samples are packed: sample ``j`` belongs to ray ``ray_indices[j]`` (int64, sorted ascending,
``0 <= ray < n_rays``). One kernel thread handles one ray's segment: a forward scan for the
transmittance, a reverse scan for the gradients. Every function is differentiable (backward
kernels registered with :func:`torch.library.register_autograd`), has a fake implementation for
``torch.compile(fullgraph=True)`` and runs on CPU and CUDA, float32 or float64.

With ``check=True`` (default) the kernels also verify that ``ray_indices`` is sorted and in
range, raising a ``ValueError`` naming it (one device-to-host read on CUDA).

``offsets`` (optional, every function): the per-ray segment offsets ``[n_rays + 1]`` (int64; ray ``r``
owns samples ``offsets[r]:offsets[r + 1]``), as :meth:`eyefast.core.occupancy.OccupancyGrid.sampling_packed`
returns them (nerfacc's ``packed_info``). Without them every op finds them in ``ray_indices`` with a
binary search per ray; with them (and ``check=False``) it uses them as they are. With ``check=True``
given offsets must equal the ones ``ray_indices`` imply.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _ext

_ext.load()

__all__ = [
    "render_weight_from_density",
    "render_weight_from_alpha",
    "render_transmittance_from_density",
    "render_transmittance_from_alpha",
    "accumulate_along_rays",
]


def _n_rays(ray_indices: torch.Tensor, n_rays: Optional[int], offsets=None) -> int:
    if n_rays is not None:
        return int(n_rays)
    if offsets is not None:
        return int(offsets.shape[0]) - 1
    return int(ray_indices.max().item()) + 1 if ray_indices.numel() else 0


def render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays=None, *, check: bool = True,
                               offsets=None):
    """Weights of packed samples from their density.

    Args:
        t_starts, t_ends: [M] interval bounds along each sample's ray.
        sigmas: [M] densities.
        ray_indices: [M] int64 ray of each sample, sorted.
        n_rays: number of rays (default: ``ray_indices.max() + 1``).

    Returns:
        weights [M] = T * alpha, transmittance [M] = exp(-sum of sigma*dt over the earlier
        samples of the ray), alphas [M] = 1 - exp(-sigma*dt). Differentiable w.r.t. t_starts,
        t_ends and sigmas.
    """
    return torch.ops.eyefast.render_weight_from_density(
        t_starts, t_ends, sigmas, ray_indices, _n_rays(ray_indices, n_rays, offsets), check, offsets
    )


def render_transmittance_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays=None, *, check: bool = True,
                                      offsets=None):
    """(transmittance [M], alphas [M]) of :func:`render_weight_from_density` (nerfacc order)."""
    _, trans, alphas = render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays, check=check,
                                                  offsets=offsets)
    return trans, alphas


def render_weight_from_alpha(alphas, ray_indices, n_rays=None, *, check: bool = True, offsets=None):
    """Weights of packed samples from their opacity.

    Args:
        alphas: [M] per-sample opacity in [0, 1].
        ray_indices: [M] int64 ray of each sample, sorted.
        n_rays: number of rays (default: ``ray_indices.max() + 1``).

    Returns:
        weights [M] = T * alpha and transmittance [M] = prod of (1 - alpha) over the earlier
        samples of the ray. Differentiable w.r.t. alphas (alpha = 1 is safe).
    """
    return torch.ops.eyefast.render_weight_from_alpha(alphas, ray_indices, _n_rays(ray_indices, n_rays, offsets), check,
                                                      offsets)


def render_transmittance_from_alpha(alphas, ray_indices, n_rays=None, *, check: bool = True, offsets=None):
    """Transmittance [M] of :func:`render_weight_from_alpha`."""
    return render_weight_from_alpha(alphas, ray_indices, n_rays, check=check, offsets=offsets)[1]


def accumulate_along_rays(weights, values, ray_indices, n_rays=None, *, check: bool = True, offsets=None):
    """Per-ray weighted sum: out[r] = sum over the samples j of ray r of weights[j] * values[j].

    Args:
        weights: [M].
        values: [M, C], or None (sums the weights: C = 1, the opacity).
        ray_indices: [M] int64 ray of each sample, sorted.
        n_rays: number of rays (default: ``ray_indices.max() + 1``).

    Returns:
        [n_rays, C]; rays without samples give 0. Differentiable w.r.t. weights and values.
    """
    return torch.ops.eyefast.accumulate_along_rays(weights, values, ray_indices, _n_rays(ray_indices, n_rays, offsets),
                                                   check, offsets)


# --------------------------------------------------------------------------------------------
# fake kernels
# --------------------------------------------------------------------------------------------
@torch.library.register_fake("eyefast::render_weight_from_density")
def _density_fake(t_starts, t_ends, sigmas, ray_indices, n_rays, check=True, offsets=None):
    torch._check(sigmas.dim() == 1 and sigmas.shape == t_starts.shape == t_ends.shape == ray_indices.shape,
                 lambda: "t_starts, t_ends, sigmas and ray_indices must have shape [M]")
    return torch.empty_like(sigmas), torch.empty_like(sigmas), torch.empty_like(sigmas)


@torch.library.register_fake("eyefast::render_weight_from_density_backward")
def _density_bwd_fake(t_starts, t_ends, sigmas, ray_indices, n_rays, trans, g_w, g_t, g_a, t_grads=True, offsets=None):
    if not t_grads:
        return t_starts.new_empty(0), t_ends.new_empty(0), torch.empty_like(sigmas)
    return torch.empty_like(t_starts), torch.empty_like(t_ends), torch.empty_like(sigmas)


@torch.library.register_fake("eyefast::render_weight_from_alpha")
def _alpha_fake(alphas, ray_indices, n_rays, check=True, offsets=None):
    torch._check(alphas.dim() == 1 and alphas.shape == ray_indices.shape,
                 lambda: "alphas and ray_indices must have shape [M]")
    return torch.empty_like(alphas), torch.empty_like(alphas)


@torch.library.register_fake("eyefast::render_weight_from_alpha_backward")
def _alpha_bwd_fake(alphas, ray_indices, n_rays, trans, g_w, g_t, offsets=None):
    return torch.empty_like(alphas)


@torch.library.register_fake("eyefast::accumulate_along_rays")
def _acc_fake(weights, values, ray_indices, n_rays, check=True, offsets=None):
    torch._check(weights.dim() == 1 and weights.shape == ray_indices.shape,
                 lambda: "weights and ray_indices must have shape [M]")
    c = 1 if values is None else values.shape[1]
    return weights.new_empty(n_rays, c)


@torch.library.register_fake("eyefast::accumulate_along_rays_backward")
def _acc_bwd_fake(weights, values, ray_indices, n_rays, grad_out):
    return torch.empty_like(weights), (weights.new_empty(0) if values is None else torch.empty_like(values))


# --------------------------------------------------------------------------------------------
# autograd
# --------------------------------------------------------------------------------------------
def _density_setup(ctx, inputs, output):
    t_starts, t_ends, sigmas, ray_indices, n_rays, _check, offsets = inputs
    ctx.n_rays = n_rays
    ctx.save_for_backward(t_starts, t_ends, sigmas, ray_indices, output[1], offsets)


def _density_backward(ctx, g_w, g_t, g_a):
    t_starts, t_ends, sigmas, ray_indices, trans, offsets = ctx.saved_tensors
    need = ctx.needs_input_grad
    if not any(need[:3]):
        return None, None, None, None, None, None, None
    g_ts, g_te, g_s = torch.ops.eyefast.render_weight_from_density_backward(
        t_starts, t_ends, sigmas, ray_indices, ctx.n_rays, trans, g_w, g_t, g_a, bool(need[0] or need[1]), offsets
    )
    return (g_ts if need[0] else None, g_te if need[1] else None, g_s if need[2] else None, None, None, None, None)


torch.library.register_autograd(
    "eyefast::render_weight_from_density", _density_backward, setup_context=_density_setup
)


def _alpha_setup(ctx, inputs, output):
    alphas, ray_indices, n_rays, _check, offsets = inputs
    ctx.n_rays = n_rays
    ctx.save_for_backward(alphas, ray_indices, output[1], offsets)


def _alpha_backward(ctx, g_w, g_t):
    alphas, ray_indices, trans, offsets = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None, None, None
    g_a = torch.ops.eyefast.render_weight_from_alpha_backward(alphas, ray_indices, ctx.n_rays, trans, g_w, g_t,
                                                              offsets)
    return g_a, None, None, None, None


torch.library.register_autograd("eyefast::render_weight_from_alpha", _alpha_backward, setup_context=_alpha_setup)


def _acc_setup(ctx, inputs, output):
    weights, values, ray_indices, n_rays, _check, _offsets = inputs
    ctx.n_rays = n_rays
    ctx.has_values = values is not None
    ctx.save_for_backward(weights, values, ray_indices)


def _acc_backward(ctx, g_out):
    weights, values, ray_indices = ctx.saved_tensors
    need = ctx.needs_input_grad
    if not (need[0] or need[1]):
        return None, None, None, None, None, None
    g_w, g_v = torch.ops.eyefast.accumulate_along_rays_backward(
        weights, values if ctx.has_values else None, ray_indices, ctx.n_rays, g_out
    )
    return (g_w if need[0] else None, g_v if (need[1] and ctx.has_values) else None, None, None, None, None)


torch.library.register_autograd("eyefast::accumulate_along_rays", _acc_backward, setup_context=_acc_setup)
