"""The op set the trainer renders with: eyefast's kernels, or the pure-PyTorch references.

``get("eyefast")`` and ``get("reference")`` return objects with the same methods and the same
contracts, so one training loop runs on either (config key ``ops_backend``). The reference
backend is what the kernels are tested against; the trainer uses it for the parity test and
the end-to-end benchmark (``train_step``).
"""

from __future__ import annotations

import torch

__all__ = ["Backend", "get"]


class Backend:
    """Methods: ``hash_encode``, ``sh_encode``, ``softplus``, ``sdf_network``, ``ray_sphere``, ``trace_eyes``, ``sampling``,
    ``weights_from_density``, ``accumulate``. ``name`` is ``"eyefast"`` or ``"reference"``."""

    name = "?"

    def hash_encode(self, x, table, scales, n_active, smoothstep):  # pragma: no cover - interface
        raise NotImplementedError

    def sh_encode(self, dirs, degree=4):  # pragma: no cover - interface
        raise NotImplementedError

    def softplus(self, z, beta):  # pragma: no cover - interface
        """``torch.nn.functional.softplus(z, beta)`` (threshold 20), twice differentiable."""
        raise NotImplementedError

    def sdf_network(self, x, table, scales, n_active, smoothstep, weights, biases, beta, include_x=True,
                    need_grad=True):  # pragma: no cover - interface
        """``(out, grad)`` of :func:`eyefast.nn.sdf_network` (hash grid + Softplus MLP + d out_0 / dx)."""
        raise NotImplementedError

    def ray_sphere(self, origins, dirs, centers, radii):  # pragma: no cover - interface
        """(t_near, t_far, index, normal) of :func:`eyefast.ops.ray_sphere_intersect`."""
        raise NotImplementedError

    def trace_eyes(self, origins, dirs, eyes):  # pragma: no cover - interface
        """The 8 outputs of :func:`eyefast.ops.trace_eyes` as a tuple."""
        raise NotImplementedError

    def sampling(self, grid, rays_o, rays_d, **kw):  # pragma: no cover - interface
        """:meth:`eyefast.OccupancyGrid.sampling_packed` semantics: ``(ray_indices, t_starts, t_ends,
        offsets)``."""
        raise NotImplementedError

    def weights_from_density(self, t_starts, t_ends, sigmas, ray_indices, offsets):  # pragma: no cover
        """(weights, transmittance, alphas); ``offsets [n_rays + 1]`` the samples' ray segments."""
        raise NotImplementedError

    def accumulate(self, weights, values, ray_indices, offsets):  # pragma: no cover - interface
        """[n_rays, C] per-ray sums (see :func:`eyefast.core.volrend.accumulate_along_rays`)."""
        raise NotImplementedError

    def __repr__(self):
        return f"Backend({self.name!r})"


class _Eyefast(Backend):
    name = "eyefast"

    def __init__(self):
        from ..core import nn as enn, ops, volrend

        self._enn, self._ops, self._vr = enn, ops, volrend

    def hash_encode(self, x, table, scales, n_active, smoothstep):
        return self._enn.hash_grid_encode(x, table, scales, n_active, smoothstep)

    def sh_encode(self, dirs, degree=4):
        return self._enn.sh_encode(dirs, degree)

    def softplus(self, z, beta):
        return self._enn.softplus(z, beta)

    def sdf_network(self, x, table, scales, n_active, smoothstep, weights, biases, beta, include_x=True,
                    need_grad=True):
        return self._enn.sdf_network(x, table, scales, n_active, smoothstep, weights, biases, beta, include_x,
                                     need_grad)

    def ray_sphere(self, origins, dirs, centers, radii):
        return self._ops.ray_sphere_intersect(origins, dirs, centers, radii)

    def trace_eyes(self, origins, dirs, eyes):
        return tuple(self._ops.trace_eyes(origins, dirs, eyes, check=False))

    def sampling(self, grid, rays_o, rays_d, **kw):
        return grid.sampling_packed(rays_o, rays_d, **kw)

    def weights_from_density(self, t_starts, t_ends, sigmas, ray_indices, offsets):
        return self._vr.render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, offsets.shape[0] - 1,
                                                   check=False, offsets=offsets)

    def accumulate(self, weights, values, ray_indices, offsets):
        return self._vr.accumulate_along_rays(weights, values, ray_indices, offsets.shape[0] - 1, check=False,
                                              offsets=offsets)


class _Reference(Backend):
    name = "reference"

    def __init__(self):
        from ..reference import eye, hash_grid, occupancy, sdf_network, sh, volrend

        self._eye, self._hg, self._occ, self._sh, self._vr = eye, hash_grid, occupancy, sh, volrend
        self._sdf = sdf_network

    def hash_encode(self, x, table, scales, n_active, smoothstep):
        return self._hg.hash_grid_encode(x, table, scales, n_active, smoothstep)

    def sh_encode(self, dirs, degree=4):
        return self._sh.sh_encode(dirs, degree)

    def softplus(self, z, beta):
        return torch.nn.functional.softplus(z, beta)

    def sdf_network(self, x, table, scales, n_active, smoothstep, weights, biases, beta, include_x=True,
                    need_grad=True):
        return self._sdf.sdf_network(x, table, scales, n_active, smoothstep, weights, biases, beta, include_x,
                                     need_grad)

    def ray_sphere(self, origins, dirs, centers, radii):
        return self._eye.ray_sphere_intersect(origins, dirs, centers, radii)

    def trace_eyes(self, origins, dirs, eyes):
        return self._eye.trace_eyes(origins, dirs, eyes)

    @torch.no_grad()
    def sampling(self, grid, rays_o, rays_d, sigma_fn=None, near_plane=0.0, far_plane=1e10, t_min=None,
                 t_max=None, render_step_size=1e-3, early_stop_eps=1e-4, alpha_thre=0.0, stratified=False,
                 cone_angle=0.0, generator=None):
        u = None
        if stratified:
            u = torch.rand(rays_o.shape[0], generator=generator, dtype=rays_o.dtype,
                           device=rays_o.device if generator is None else generator.device).to(rays_o.device)
        ri, ts, te = self._occ.sampling(rays_o, rays_d, grid.binaries, grid.aabbs.to(rays_o.dtype), near_plane,
                                        far_plane, render_step_size, cone_angle, t_min, t_max, u)
        offsets = torch.searchsorted(ri, torch.arange(rays_o.shape[0] + 1, device=ri.device))
        return grid.prune(ri, ts, te, offsets, sigma_fn, None, early_stop_eps, alpha_thre,
                          transmittance_fn=self._transmittance)

    def _transmittance(self, t_starts, t_ends, sigmas, alphas, ray_indices, offsets):
        _, trans, alphas = self._vr.render_weight_from_density(t_starts, t_ends, sigmas, ray_indices,
                                                               offsets.shape[0] - 1)
        return trans, alphas

    def weights_from_density(self, t_starts, t_ends, sigmas, ray_indices, offsets):
        return self._vr.render_weight_from_density(t_starts, t_ends, sigmas, ray_indices, offsets.shape[0] - 1)

    def accumulate(self, weights, values, ray_indices, offsets):
        return self._vr.accumulate_along_rays(weights, values, ray_indices, offsets.shape[0] - 1)


_CACHE: dict[str, Backend] = {}


def get(name: str) -> Backend:
    """The backend called ``name`` (``"eyefast"`` or ``"reference"``)."""
    if name not in ("eyefast", "reference"):
        raise ValueError(f"ops_backend must be 'eyefast' or 'reference', got {name!r}")
    if name not in _CACHE:
        _CACHE[name] = _Eyefast() if name == "eyefast" else _Reference()
    return _CACHE[name]
