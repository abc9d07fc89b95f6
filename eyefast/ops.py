"""eyefast's kernels as PyTorch functions (``torch.ops.eyefast.*``).

Every op runs on CPU and CUDA tensors (float32 or float64, contiguous), is differentiable
(backward kernels, registered with :func:`torch.library.register_autograd`) and has a fake
implementation, so ``torch.compile(fullgraph=True)`` traces through it. Pure-PyTorch references
with the same contracts live in :mod:`eyefast.reference`.

Data checks: by default each op also checks its input values (non-finite numbers, zero-length
directions, radius <= 0, ...) inside the kernel and raises a ``ValueError`` naming the argument
and the first bad row. On CUDA reading that verdict back costs one device-to-host
synchronisation: pass ``check=False`` in hot loops where the inputs are known to be valid.
"""

from __future__ import annotations

import torch

from . import _ext

_ext.load()

__all__ = ["ray_sphere_intersect", "refract"]


# --------------------------------------------------------------------------------------------
# ray_sphere_intersect
# --------------------------------------------------------------------------------------------
def ray_sphere_intersect(
    origins: torch.Tensor, dirs: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor, *, check: bool = True
):
    """First sphere each ray enters.

    Args:
        origins: [N, 3] ray origins.
        dirs: [N, 3] ray directions, not necessarily unit length (t is in units of ``dirs``).
        centers: [S, 3] sphere centres.
        radii: [S] sphere radii (> 0).
        check: check the input values (see the module docstring).

    Returns:
        t_near: [N] entry distance (0 when the ray starts inside the sphere), +inf on a miss.
        t_far: [N] exit distance of the same sphere, +inf on a miss.
        index: [N] int64 index of that sphere, -1 on a miss. Ties go to the lower index.
        normal: [N, 3] outward unit normal at the entry point; 0 on a miss or when the ray
            starts inside.

    Differentiable w.r.t. origins, dirs, centers and radii (through t_near, t_far and normal).
    At exactly tangent rays the derivative is unbounded and is returned as 0.
    """
    return torch.ops.eyefast.ray_sphere_intersect(origins, dirs, centers, radii, check)


@torch.library.register_fake("eyefast::ray_sphere_intersect")
def _ray_sphere_fake(origins, dirs, centers, radii, check=True):
    torch._check(origins.dim() == 2 and origins.shape[1] == 3, lambda: "origins must have shape [N, 3]")
    torch._check(dirs.shape == origins.shape, lambda: "dirs must have the shape of origins")
    torch._check(centers.dim() == 2 and centers.shape[1] == 3, lambda: "centers must have shape [S, 3]")
    torch._check(radii.dim() == 1 and radii.shape[0] == centers.shape[0], lambda: "radii must have shape [S]")
    n = origins.shape[0]
    return (
        origins.new_empty(n),
        origins.new_empty(n),
        origins.new_empty(n, dtype=torch.long),
        origins.new_empty(n, 3),
    )


@torch.library.register_fake("eyefast::ray_sphere_intersect_backward")
def _ray_sphere_bwd_fake(origins, dirs, centers, radii, index, grad_t_near, grad_t_far, grad_normal):
    return (
        torch.empty_like(origins),
        torch.empty_like(dirs),
        torch.empty_like(centers),
        torch.empty_like(radii),
    )


def _ray_sphere_setup(ctx, inputs, output):
    origins, dirs, centers, radii, _check = inputs
    ctx.save_for_backward(origins, dirs, centers, radii, output[2])


def _ray_sphere_backward(ctx, g_t_near, g_t_far, _g_index, g_normal):
    origins, dirs, centers, radii, index = ctx.saved_tensors
    if not any(ctx.needs_input_grad[:4]):
        return None, None, None, None, None
    g_o, g_d, g_c, g_r = torch.ops.eyefast.ray_sphere_intersect_backward(
        origins, dirs, centers, radii, index, g_t_near, g_t_far, g_normal
    )
    need = ctx.needs_input_grad
    return (g_o if need[0] else None, g_d if need[1] else None, g_c if need[2] else None,
            g_r if need[3] else None, None)


torch.library.register_autograd(
    "eyefast::ray_sphere_intersect", _ray_sphere_backward, setup_context=_ray_sphere_setup
)


# --------------------------------------------------------------------------------------------
# refract
# --------------------------------------------------------------------------------------------
def refract(dirs: torch.Tensor, normals: torch.Tensor, eta, *, check: bool = True):
    """Refracts rays through a dielectric interface (Snell) with the exact Fresnel reflectance.

    Args:
        dirs: [N, 3] travel directions (any length > 0; normalised inside).
        normals: [N, 3] surface normals (any length > 0, either orientation: the side facing the
            incoming ray is used).
        eta: n_from / n_to, the index of the medium the ray travels in over the index of the
            medium it enters: a float, a 0-d tensor or an [N] tensor.
        check: check the input values (see the module docstring).

    Returns:
        out: [N, 3] unit refracted direction; on total internal reflection the mirror direction.
        reflectance: [N] unpolarised Fresnel reflectance (1 on total internal reflection).
        tir: [N] bool, total internal reflection.

    Differentiable w.r.t. dirs, normals and eta (when it is a tensor).
    """
    if not isinstance(eta, torch.Tensor):
        eta = torch.full((), float(eta), dtype=dirs.dtype, device=dirs.device)
    return torch.ops.eyefast.refract(dirs, normals, eta, check)


@torch.library.register_fake("eyefast::refract")
def _refract_fake(dirs, normals, eta, check=True):
    torch._check(dirs.dim() == 2 and dirs.shape[1] == 3, lambda: "dirs must have shape [N, 3]")
    torch._check(normals.shape == dirs.shape, lambda: "normals must have the shape of dirs")
    n = dirs.shape[0]
    return dirs.new_empty(n, 3), dirs.new_empty(n), dirs.new_empty(n, dtype=torch.bool)


@torch.library.register_fake("eyefast::refract_backward")
def _refract_bwd_fake(dirs, normals, eta, grad_out, grad_reflectance):
    return torch.empty_like(dirs), torch.empty_like(normals), torch.empty_like(eta)


def _refract_setup(ctx, inputs, output):
    dirs, normals, eta, _check = inputs
    ctx.save_for_backward(dirs, normals, eta)


def _refract_backward(ctx, g_out, g_refl, _g_tir):
    dirs, normals, eta = ctx.saved_tensors
    need = ctx.needs_input_grad
    if not any(need[:3]):
        return None, None, None, None
    g_d, g_n, g_e = torch.ops.eyefast.refract_backward(dirs, normals, eta, g_out, g_refl)
    return g_d if need[0] else None, g_n if need[1] else None, g_e if need[2] else None, None


torch.library.register_autograd("eyefast::refract", _refract_backward, setup_context=_refract_setup)
