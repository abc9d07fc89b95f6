"""Volume rendering on packed samples (nerfacc 0.5 names and semantics), on eyefast kernels.

Samples are packed: sample ``j`` belongs to ray ``ray_indices[j]`` (int64, sorted ascending,
``0 <= ray < n_rays``). One kernel thread handles one ray's segment: a forward scan for the
transmittance, a reverse scan for the gradients. Every function is differentiable (backward
kernels registered with :func:`torch.library.register_autograd`), has a fake implementation for
``torch.compile(fullgraph=True)`` and runs on CPU and CUDA, float32 or float64.

With ``check=True`` (default) the kernels also verify that ``ray_indices`` is sorted and in
range, raising a ``ValueError`` naming it (one device-to-host read on CUDA).
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
    "render_weight_per_object",
    "accumulate_along_rays",
]


def _n_rays(ray_indices: torch.Tensor, n_rays: Optional[int]) -> int:
    if n_rays is not None:
        return int(n_rays)
    return int(ray_indices.max().item()) + 1 if ray_indices.numel() else 0


def render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays=None, *, check: bool = True):
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
        t_starts, t_ends, sigmas, ray_indices, _n_rays(ray_indices, n_rays), check
    )


def render_transmittance_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays=None, *, check: bool = True):
    """(transmittance [M], alphas [M]) of :func:`render_weight_from_density` (nerfacc order)."""
    _, trans, alphas = render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays, check=check)
    return trans, alphas


def render_weight_from_alpha(alphas, ray_indices, n_rays=None, *, check: bool = True):
    """Weights of packed samples from their opacity.

    Args:
        alphas: [M] per-sample opacity in [0, 1].
        ray_indices: [M] int64 ray of each sample, sorted.
        n_rays: number of rays (default: ``ray_indices.max() + 1``).

    Returns:
        weights [M] = T * alpha and transmittance [M] = prod of (1 - alpha) over the earlier
        samples of the ray. Differentiable w.r.t. alphas (alpha = 1 is safe).
    """
    return torch.ops.eyefast.render_weight_from_alpha(alphas, ray_indices, _n_rays(ray_indices, n_rays), check)


def render_transmittance_from_alpha(alphas, ray_indices, n_rays=None, *, check: bool = True):
    """Transmittance [M] of :func:`render_weight_from_alpha`."""
    return render_weight_from_alpha(alphas, ray_indices, n_rays, check=check)[1]


def render_weight_per_object(t_starts, t_ends, sigmas, ray_indices, n_rays=None, *, check: bool = True):
    """Scene weights and per-object opacity (SPEC section 4: face, left eye, right eye).

    Args:
        t_starts, t_ends: [M] interval bounds.
        sigmas: [M, K] density of each of K objects; the scene density is their sum.
        ray_indices: [M] int64 ray of each sample, sorted.
        n_rays: number of rays (default: ``ray_indices.max() + 1``).

    Returns:
        weights [M]: scene weights T_j (1 - exp(-sum_k sigma_jk dt_j)).
        transmittance [M]: T_j = exp(-sum over earlier samples of the scene sigma * dt).
        opacity [n_rays, K]: sum_j T_j (1 - exp(-sigma_jk dt_j)), each object's alpha from its
            own density under the scene transmittance.
    Differentiable w.r.t. t_starts, t_ends and sigmas.
    """
    return torch.ops.eyefast.render_weight_per_object(
        t_starts, t_ends, sigmas, ray_indices, _n_rays(ray_indices, n_rays), check
    )


def accumulate_along_rays(weights, values, ray_indices, n_rays=None, *, check: bool = True):
    """Per-ray weighted sum: out[r] = sum over the samples j of ray r of weights[j] * values[j].

    Args:
        weights: [M].
        values: [M, C], or None (sums the weights: C = 1, the opacity).
        ray_indices: [M] int64 ray of each sample, sorted.
        n_rays: number of rays (default: ``ray_indices.max() + 1``).

    Returns:
        [n_rays, C]; rays without samples give 0. Differentiable w.r.t. weights and values.
    """
    return torch.ops.eyefast.accumulate_along_rays(weights, values, ray_indices, _n_rays(ray_indices, n_rays), check)


# --------------------------------------------------------------------------------------------
# fake kernels
# --------------------------------------------------------------------------------------------
@torch.library.register_fake("eyefast::render_weight_from_density")
def _density_fake(t_starts, t_ends, sigmas, ray_indices, n_rays, check=True):
    torch._check(sigmas.dim() == 1 and sigmas.shape == t_starts.shape == t_ends.shape == ray_indices.shape,
                 lambda: "t_starts, t_ends, sigmas and ray_indices must have shape [M]")
    return torch.empty_like(sigmas), torch.empty_like(sigmas), torch.empty_like(sigmas)


@torch.library.register_fake("eyefast::render_weight_from_density_backward")
def _density_bwd_fake(t_starts, t_ends, sigmas, ray_indices, n_rays, trans, g_w, g_t, g_a, t_grads=True):
    if not t_grads:
        return t_starts.new_empty(0), t_ends.new_empty(0), torch.empty_like(sigmas)
    return torch.empty_like(t_starts), torch.empty_like(t_ends), torch.empty_like(sigmas)


@torch.library.register_fake("eyefast::render_weight_from_alpha")
def _alpha_fake(alphas, ray_indices, n_rays, check=True):
    torch._check(alphas.dim() == 1 and alphas.shape == ray_indices.shape,
                 lambda: "alphas and ray_indices must have shape [M]")
    return torch.empty_like(alphas), torch.empty_like(alphas)


@torch.library.register_fake("eyefast::render_weight_from_alpha_backward")
def _alpha_bwd_fake(alphas, ray_indices, n_rays, trans, g_w, g_t):
    return torch.empty_like(alphas)


@torch.library.register_fake("eyefast::render_weight_per_object")
def _object_fake(t_starts, t_ends, sigmas, ray_indices, n_rays, check=True):
    torch._check(sigmas.dim() == 2 and sigmas.shape[0] == t_starts.shape[0], lambda: "sigmas must have shape [M, K]")
    return torch.empty_like(t_starts), torch.empty_like(t_starts), sigmas.new_empty(n_rays, sigmas.shape[1])


@torch.library.register_fake("eyefast::render_weight_per_object_backward")
def _object_bwd_fake(t_starts, t_ends, sigmas, ray_indices, n_rays, trans, g_w, g_t, g_op, t_grads=True):
    if not t_grads:
        return t_starts.new_empty(0), t_ends.new_empty(0), torch.empty_like(sigmas)
    return torch.empty_like(t_starts), torch.empty_like(t_ends), torch.empty_like(sigmas)


@torch.library.register_fake("eyefast::accumulate_along_rays")
def _acc_fake(weights, values, ray_indices, n_rays, check=True):
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
    t_starts, t_ends, sigmas, ray_indices, n_rays, _check = inputs
    ctx.n_rays = n_rays
    ctx.save_for_backward(t_starts, t_ends, sigmas, ray_indices, output[1])


def _density_backward(ctx, g_w, g_t, g_a):
    t_starts, t_ends, sigmas, ray_indices, trans = ctx.saved_tensors
    need = ctx.needs_input_grad
    if not any(need[:3]):
        return None, None, None, None, None, None
    g_ts, g_te, g_s = torch.ops.eyefast.render_weight_from_density_backward(
        t_starts, t_ends, sigmas, ray_indices, ctx.n_rays, trans, g_w, g_t, g_a, bool(need[0] or need[1])
    )
    return (g_ts if need[0] else None, g_te if need[1] else None, g_s if need[2] else None, None, None, None)


torch.library.register_autograd(
    "eyefast::render_weight_from_density", _density_backward, setup_context=_density_setup
)


def _alpha_setup(ctx, inputs, output):
    alphas, ray_indices, n_rays, _check = inputs
    ctx.n_rays = n_rays
    ctx.save_for_backward(alphas, ray_indices, output[1])


def _alpha_backward(ctx, g_w, g_t):
    alphas, ray_indices, trans = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None, None
    g_a = torch.ops.eyefast.render_weight_from_alpha_backward(alphas, ray_indices, ctx.n_rays, trans, g_w, g_t)
    return g_a, None, None, None


torch.library.register_autograd("eyefast::render_weight_from_alpha", _alpha_backward, setup_context=_alpha_setup)


def _object_setup(ctx, inputs, output):
    t_starts, t_ends, sigmas, ray_indices, n_rays, _check = inputs
    ctx.n_rays = n_rays
    ctx.save_for_backward(t_starts, t_ends, sigmas, ray_indices, output[1])


def _object_backward(ctx, g_w, g_t, g_op):
    t_starts, t_ends, sigmas, ray_indices, trans = ctx.saved_tensors
    need = ctx.needs_input_grad
    if not any(need[:3]):
        return None, None, None, None, None, None
    g_ts, g_te, g_s = torch.ops.eyefast.render_weight_per_object_backward(
        t_starts, t_ends, sigmas, ray_indices, ctx.n_rays, trans, g_w, g_t, g_op, bool(need[0] or need[1])
    )
    return (g_ts if need[0] else None, g_te if need[1] else None, g_s if need[2] else None, None, None, None)


torch.library.register_autograd("eyefast::render_weight_per_object", _object_backward, setup_context=_object_setup)


def _acc_setup(ctx, inputs, output):
    weights, values, ray_indices, n_rays, _check = inputs
    ctx.n_rays = n_rays
    ctx.has_values = values is not None
    ctx.save_for_backward(weights, values, ray_indices)


def _acc_backward(ctx, g_out):
    weights, values, ray_indices = ctx.saved_tensors
    need = ctx.needs_input_grad
    if not (need[0] or need[1]):
        return None, None, None, None, None
    g_w, g_v = torch.ops.eyefast.accumulate_along_rays_backward(
        weights, values if ctx.has_values else None, ray_indices, ctx.n_rays, g_out
    )
    return (g_w if need[0] else None, g_v if (need[1] and ctx.has_values) else None, None, None, None)


torch.library.register_autograd("eyefast::accumulate_along_rays", _acc_backward, setup_context=_acc_setup)
