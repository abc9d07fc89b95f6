"""OccupancyGrid: nerfacc 0.5 ``OccGridEstimator`` interface on eyefast kernels.

The grid holds ``levels`` nested cascades of ``resolution^3`` cells; level 0 covers
``roi_aabb`` and level l the box scaled by 2^l about its centre. ``occs`` is an exponential
moving average of the density-derived occupancy of each cell; ``binaries`` thresholds it. The
sampler (``torch.ops.eyefast.occupancy_sampling``, CPU and CUDA) reads a bitfield packed from
``binaries``, clips each ray to the grid and [near, far] and [t_min, t_max], marches with
``render_step_size`` (growing as ``t * cone_angle`` when cone_angle > 0), jumps over empty
cells, and emits the intervals whose midpoints lie in occupied cells. It never emits an interval
that ends past t_max (nerfacc issue 291).

Differences from nerfacc: the stratified jitter is ``u * dt(t_lo)`` applied AFTER clipping (in
nerfacc it is added to the near plane before the box clip, so rays that enter the box later get
no jitter), and it can come from a ``torch.Generator``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from . import _ext
from ._fake import register_fake
from .volrend import render_transmittance_from_alpha, render_transmittance_from_density

_ext.load()

__all__ = ["OccupancyGrid", "occupancy_sampling"]


@register_fake("eyefast::occupancy_sampling")
def _sampling_fake(rays_o, rays_d, t_min, t_max, u, bitfield, coarse, block, level_aabbs, resolution, near_plane, far_plane,
                   render_step_size, cone_angle, check=True):
    s = torch.library.get_ctx().new_dynamic_size()
    return (rays_o.new_empty(s, dtype=torch.long), rays_o.new_empty(s), rays_o.new_empty(s),
            rays_o.new_empty(rays_o.shape[0] + 1, dtype=torch.long))


def pack_bitfield(binaries: torch.Tensor) -> torch.Tensor:
    """uint8 [ceil(numel / 8)] bitfield of a bool tensor (flattened, bit j of byte i = element 8i + j)."""
    flat = binaries.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    shifts = torch.arange(8, device=flat.device, dtype=torch.uint8)
    return (flat.view(-1, 8) << shifts).sum(-1, dtype=torch.uint8)


def coarse_binaries(binaries: torch.Tensor, block: int) -> torch.Tensor:
    """[L, Rc, Rc, Rc] bool, Rc = ceil(R / block): whether any cell of each block^3 block is occupied."""
    r = binaries.shape[-1]
    pad = (-r) % block
    x = binaries.to(torch.float32)
    if pad:
        x = torch.nn.functional.pad(x, (0, pad, 0, pad, 0, pad))
    return torch.nn.functional.max_pool3d(x[:, None], block)[:, 0] > 0


def occupancy_sampling(rays_o, rays_d, bitfield, level_aabbs, resolution, *, near_plane=0.0, far_plane=1e10,
                       render_step_size=1e-3, cone_angle=0.0, t_min=None, t_max=None, u=None, coarse=None,
                       block=8, check=True):
    """The raw marcher (see csrc/include/eyefast/occupancy.h for the exact contract).

    Args:
        rays_o, rays_d: [N, 3] (rays_d need not be unit length; t is in its units).
        bitfield: uint8 from :func:`pack_bitfield` of binaries [L, R, R, R].
        level_aabbs: [L, 6] boxes of the levels (dtype of rays_o).
        t_min, t_max, u: optional [N] per-ray range and jitter in [0, 1).
        coarse: optional uint8 bitfield of :func:`coarse_binaries` (block ``block``) for long
            jumps over empty space; it changes the speed, never the result.

    Returns:
        ray_indices [S] int64 (sorted), t_starts [S], t_ends [S], offsets [N + 1] int64 (ray r owns the
        samples offsets[r]:offsets[r + 1]; what the volume-rendering ops take).
    """
    return torch.ops.eyefast.occupancy_sampling(
        rays_o, rays_d, t_min, t_max, u, bitfield, coarse, int(block), level_aabbs.to(rays_o.dtype).contiguous(), int(resolution),
        float(near_plane), float(far_plane), float(render_step_size), float(cone_angle), check,
    )


def _kernel_transmittance(t_starts, t_ends, sigmas, alphas, ray_indices, offsets):
    """(transmittance, alphas) of packed samples on eyefast's kernels (from densities or alphas)."""
    n = offsets.shape[0] - 1
    if sigmas is not None:
        return render_transmittance_from_density(t_starts, t_ends, sigmas, ray_indices, n, check=False,
                                                 offsets=offsets)
    return render_transmittance_from_alpha(alphas, ray_indices, n, check=False, offsets=offsets), alphas


class OccupancyGrid(torch.nn.Module):
    """Occupancy grid estimator (nerfacc 0.5 ``OccGridEstimator`` interface).

    Args:
        roi_aabb: [6] (min xyz, max xyz) of level 0.
        resolution: cells per axis (int).
        levels: number of cascades; level l covers roi_aabb scaled by 2^l about its centre.

    Buffers: ``aabbs`` [L, 6], ``occs`` [L R^3] (EMA occupancy), ``binaries`` [L, R, R, R] bool,
    ``grid_coords`` [R^3, 3], ``grid_indices`` [R^3].
    """

    def __init__(self, roi_aabb, resolution: int = 128, levels: int = 1):
        super().__init__()
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"OccupancyGrid: resolution must be a positive int, got {resolution!r}")
        if levels < 1:
            raise ValueError(f"OccupancyGrid: levels must be >= 1, got {levels}")
        roi = torch.as_tensor(roi_aabb, dtype=torch.float32).reshape(-1)
        if roi.numel() != 6 or not bool((roi[3:] > roi[:3]).all()):
            raise ValueError(f"OccupancyGrid: roi_aabb must be [min xyz, max xyz] with max > min, got {roi_aabb!r}")
        self.resolution = resolution
        self.levels = levels
        self.cells_per_lvl = resolution ** 3
        centre, half = (roi[:3] + roi[3:]) / 2, (roi[3:] - roi[:3]) / 2
        aabbs = torch.stack([torch.cat([centre - half * 2 ** i, centre + half * 2 ** i]) for i in range(levels)])
        self.register_buffer("aabbs", aabbs)
        self.register_buffer("occs", torch.zeros(levels * self.cells_per_lvl))
        self.register_buffer("binaries", torch.zeros(levels, resolution, resolution, resolution, dtype=torch.bool))
        r = torch.arange(resolution)
        coords = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("grid_coords", coords, persistent=False)
        self.register_buffer("grid_indices", torch.arange(self.cells_per_lvl), persistent=False)
        self.block = 8 if resolution >= 32 else 2
        self._bitfield_key = None
        self._bitfield = None
        self._coarse = None
        self._visible: dict = {}  # level -> indices of the cells some camera sees (see _visible_cells)

    # ------------------------------------------------------------------------------------------
    @property
    def bitfield(self) -> torch.Tensor:
        """uint8 bitfield packed from ``binaries`` (cached until binaries change)."""
        b = self.binaries
        if torch.compiler.is_compiling():  # traced: no Python-side cache
            return pack_bitfield(b)
        key = (b.data_ptr(), b._version, b.device)
        if self._bitfield_key != key:
            self._bitfield = pack_bitfield(b)
            self._coarse = pack_bitfield(coarse_binaries(b, self.block))
            self._bitfield_key = key
        return self._bitfield

    def changed(self) -> None:
        """Call after writing ``binaries`` or ``occs`` other than through this class's methods (e.g. a
        ``torch.distributed.broadcast``): the packed bitfields are made again on next use."""
        self._bitfield_key = None

    @property
    def coarse_bitfield(self) -> torch.Tensor:
        """uint8 bitfield of the block^3 empty-space mip (see :func:`coarse_binaries`)."""
        if torch.compiler.is_compiling():
            return pack_bitfield(coarse_binaries(self.binaries, self.block))
        self.bitfield
        return self._coarse

    @torch.no_grad()
    def sampling(self, rays_o: torch.Tensor, rays_d: torch.Tensor, sigma_fn: Optional[Callable] = None,
                 alpha_fn: Optional[Callable] = None, near_plane: float = 0.0, far_plane: float = 1e10,
                 t_min: Optional[torch.Tensor] = None, t_max: Optional[torch.Tensor] = None,
                 render_step_size: float = 1e-3, early_stop_eps: float = 1e-4, alpha_thre: float = 0.0,
                 stratified: bool = False, cone_angle: float = 0.0, generator: Optional[torch.Generator] = None):
        """Samples along rays in occupied space.

        Args:
            rays_o, rays_d: [N, 3] origins and directions (t is in units of rays_d).
            sigma_fn: optional (t_starts [S], t_ends [S], ray_indices [S]) -> sigmas [S] for pruning.
            alpha_fn: optional (t_starts, t_ends, ray_indices) -> alphas [S] for pruning.
            near_plane, far_plane: global range; t_min, t_max: optional [N] per-ray range.
            render_step_size: marching step; cone_angle: step grows as t * cone_angle.
            early_stop_eps: drop samples with transmittance below this (with sigma_fn/alpha_fn).
            alpha_thre: drop samples with alpha below min(alpha_thre, occs.mean()).
            stratified: jitter the first step by u * step, u ~ U[0, 1) drawn from ``generator``.

        Returns:
            ray_indices [S] int64 sorted, t_starts [S], t_ends [S].
        """
        return self.sampling_packed(rays_o, rays_d, sigma_fn, alpha_fn, near_plane, far_plane, t_min, t_max,
                                    render_step_size, early_stop_eps, alpha_thre, stratified, cone_angle,
                                    generator)[:3]

    @torch.no_grad()
    def sampling_packed(self, rays_o: torch.Tensor, rays_d: torch.Tensor, sigma_fn: Optional[Callable] = None,
                        alpha_fn: Optional[Callable] = None, near_plane: float = 0.0, far_plane: float = 1e10,
                        t_min: Optional[torch.Tensor] = None, t_max: Optional[torch.Tensor] = None,
                        render_step_size: float = 1e-3, early_stop_eps: float = 1e-4, alpha_thre: float = 0.0,
                        stratified: bool = False, cone_angle: float = 0.0,
                        generator: Optional[torch.Generator] = None):
        """:meth:`sampling`, and the per-ray segment offsets of what it returns: ``(ray_indices,
        t_starts, t_ends, offsets [N + 1])`` (nerfacc's packed_info): the volume-rendering ops
        (:mod:`eyefast.core.volrend`) take them and skip finding them again."""
        u = None
        if stratified:
            u = torch.rand(rays_o.shape[0], generator=generator, dtype=rays_o.dtype,
                           device=rays_o.device if generator is None else generator.device).to(rays_o.device)
        ray_indices, t_starts, t_ends, offsets = occupancy_sampling(
            rays_o, rays_d, self.bitfield, self.aabbs, self.resolution, near_plane=near_plane,
            far_plane=far_plane, render_step_size=render_step_size, cone_angle=cone_angle,
            t_min=t_min, t_max=t_max, u=u, coarse=self.coarse_bitfield, block=self.block,
        )
        return self.prune(ray_indices, t_starts, t_ends, offsets, sigma_fn, alpha_fn, early_stop_eps, alpha_thre)

    @torch.no_grad()
    def prune(self, ray_indices, t_starts, t_ends, offsets, sigma_fn: Optional[Callable] = None,
              alpha_fn: Optional[Callable] = None, early_stop_eps: float = 1e-4, alpha_thre: float = 0.0,
              transmittance_fn: Optional[Callable] = None):
        """Drops marched samples (nerfacc's pruning): those behind ``early_stop_eps`` of transmittance
        and, with ``alpha_thre > 0``, those with alpha below ``min(alpha_thre, mean occupancy)``.

        ``offsets [n_rays + 1]``: the segments of the samples. ``sigma_fn`` or ``alpha_fn`` as in
        :meth:`sampling` (neither: nothing is pruned). ``transmittance_fn(t_starts, t_ends, sigmas,
        alphas, ray_indices, offsets) -> (trans, alphas)`` (one of ``sigmas``/``alphas`` is None) computes
        the transmittance: eyefast's kernels by default; the reference backend passes the pure-PyTorch
        one. Returns ``(ray_indices, t_starts, t_ends, offsets)`` of the kept samples: one compaction,
        whose size is the one value the host reads; the new offsets come from a prefix count of the
        kept samples, read at the old ones.
        """
        if not (alpha_thre > 0.0 or early_stop_eps > 0.0) or (sigma_fn is None and alpha_fn is None):
            return ray_indices, t_starts, t_ends, offsets
        if alpha_thre > 0.0:
            alpha_thre = min(alpha_thre, self.occs.mean().item())
        if t_starts.shape[0] == 0:
            return ray_indices, t_starts, t_ends, offsets
        fn = transmittance_fn or _kernel_transmittance
        if sigma_fn is not None:
            sigmas = sigma_fn(t_starts, t_ends, ray_indices).reshape(-1).to(t_starts.dtype).contiguous()
            trans, alphas = fn(t_starts, t_ends, sigmas, None, ray_indices, offsets)
        else:
            alphas = alpha_fn(t_starts, t_ends, ray_indices).reshape(-1).to(t_starts.dtype).contiguous()
            trans, alphas = fn(t_starts, t_ends, None, alphas, ray_indices, offsets)
        keep = trans >= early_stop_eps
        if alpha_thre > 0.0:
            keep &= alphas >= alpha_thre
        kept_before = torch.cat([keep.new_zeros(1, dtype=torch.long), torch.cumsum(keep, 0)])  # [M + 1]
        idx = torch.nonzero(keep).squeeze(-1)
        return (ray_indices.index_select(0, idx), t_starts.index_select(0, idx), t_ends.index_select(0, idx),
                kept_before.index_select(0, offsets))

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update_every_n_steps(self, step: int, occ_eval_fn: Callable, occ_thre: float = 1e-2,
                             ema_decay: float = 0.95, warmup_steps: int = 256, n: int = 16) -> None:
        """Refreshes ``occs``/``binaries`` every ``n`` steps (module must be in training mode).

        occ_eval_fn: x [P, 3] world points -> occupancy [P] or [P, 1] (e.g. density * step).
        During the first ``warmup_steps`` all cells are evaluated, later R^3/4 random cells plus
        as many occupied ones per level. occs = max(occs * ema_decay, new); binaries =
        occs > min(mean(occs), occ_thre).
        """
        if not self.training:
            raise RuntimeError("OccupancyGrid.update_every_n_steps: call it in training mode (module.train())")
        if step % n == 0:
            self._update(step, occ_eval_fn, occ_thre, ema_decay, warmup_steps)

    def _sample_uniform_and_occupied_cells(self, n: int, lvl: int, generator=None) -> torch.Tensor:
        """``n`` random cells of level ``lvl`` and ``n`` random occupied ones (drawn with replacement by
        inverting the cumulative count: no host sync; where no cell is occupied, the second half are
        uniform too)."""
        dev = self.occs.device
        uniform = torch.randint(self.cells_per_lvl, (n,), device=dev, generator=generator)
        cdf = torch.cumsum(self.binaries[lvl].reshape(-1).to(torch.int64), 0)
        r = (torch.rand(n, device=dev, generator=generator) * cdf[-1]).to(torch.int64)
        occupied = torch.searchsorted(cdf, r, right=True).clamp_max(self.cells_per_lvl - 1)
        occupied = torch.where(cdf[-1] > 0, occupied, torch.randint(self.cells_per_lvl, (n,), device=dev,
                                                                    generator=generator))
        return torch.cat([uniform, occupied])

    def _visible_cells(self, lvl: int) -> torch.Tensor:
        """The cells of level ``lvl`` some camera sees (all, unless :meth:`mark_invisible_cells` ran); one
        host sync the first time, then cached (marked cells stay marked)."""
        key = (lvl, self.occs.device)
        if self._visible.get(key) is None:
            lv = self.occs[lvl * self.cells_per_lvl:(lvl + 1) * self.cells_per_lvl]
            self._visible[key] = torch.nonzero(lv >= 0).squeeze(-1)
        return self._visible[key]

    def _load_from_state_dict(self, *args, **kwargs):
        self._visible = {}  # new occupancy values: the visible cells are found again
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def _update(self, step, occ_eval_fn, occ_thre=1e-2, ema_decay=0.95, warmup_steps=256, generator=None):
        for lvl in range(self.levels):
            if step < warmup_steps:
                indices = self._visible_cells(lvl)
            else:
                indices = self._sample_uniform_and_occupied_cells(self.cells_per_lvl // 4, lvl, generator)
            cell_ids = lvl * self.cells_per_lvl + indices
            old = self.occs[cell_ids]
            coords = self.grid_coords[indices].to(torch.float32)
            jitter = torch.rand(coords.shape, device=coords.device, generator=generator)
            x = (coords + jitter) / self.resolution
            box = self.aabbs[lvl]
            x = box[:3] + x * (box[3:] - box[:3])
            occ = occ_eval_fn(x).reshape(-1).to(self.occs.dtype) if indices.numel() else old
            # cells marked invisible (-1) stay out
            self.occs[cell_ids] = torch.where(old >= 0, torch.maximum(old * ema_decay, occ), old)
        valid = self.occs >= 0
        mean = (self.occs * valid).sum() / valid.sum().clamp_min(1)
        thre = torch.where(valid.any(), mean.clamp(max=occ_thre), torch.full_like(mean, occ_thre))
        self.binaries.copy_((self.occs > thre).view(self.binaries.shape))

    @torch.no_grad()
    def mark_invisible_cells(self, K: torch.Tensor, c2w: torch.Tensor, width: int, height: int,
                             near_plane: float = 0.0, chunk: int = 32 ** 3) -> None:
        """Marks the cells no camera sees (nerfacc 0.5 semantics): their ``occs`` become -1, so
        they are never evaluated, never occupied and never sampled.

        Args:
            K: ``[3, 3]`` or ``[n_cams, 3, 3]`` pinhole intrinsics.
            c2w: ``[n_cams, 3, 4]`` (or ``[n_cams, 4, 4]``) camera-to-world, OpenCV convention
                (x right, y down, z forward: eyefast's converted cameras).
            width, height: image size in pixels.
            near_plane: cells with camera depth below this are not seen by that camera.
            chunk: cells per batch.

        A cell counts as seen when its centre projects inside the image of a camera, in front of
        its near plane (as nerfacc: centres only, no occlusion).
        """
        c2w = torch.as_tensor(c2w, dtype=torch.float32, device=self.occs.device)
        K = torch.as_tensor(K, dtype=torch.float32, device=self.occs.device)
        if c2w.dim() != 3 or c2w.shape[1] not in (3, 4) or c2w.shape[2] != 4:
            raise ValueError(f"mark_invisible_cells: c2w must be [n_cams, 3, 4], got {tuple(c2w.shape)}")
        if K.dim() == 2:
            K = K.expand(c2w.shape[0], 3, 3)
        if K.shape != (c2w.shape[0], 3, 3):
            raise ValueError(f"mark_invisible_cells: K must be [3, 3] or [n_cams, 3, 3], got {tuple(K.shape)}")
        if not (torch.isfinite(c2w).all() and torch.isfinite(K).all()):
            raise ValueError("mark_invisible_cells: K and c2w must be finite")
        R, t = c2w[:, :3, :3], c2w[:, :3, 3]
        w2c_R = R.transpose(1, 2)
        w2c_t = -(w2c_R @ t[:, :, None])[:, :, 0]
        P = K @ w2c_R  # [C, 3, 3]: world point -> homogeneous pixel (up to the translation)
        Pt = (K @ w2c_t[:, :, None])[:, :, 0]  # [C, 3]
        lvl_indices = self.grid_indices
        cams = max(1, (1 << 22) // max(1, chunk))  # cameras a batch: chunk x cams projections at once
        for lvl in range(self.levels):
            box = self.aabbs[lvl]
            for s in range(0, self.cells_per_lvl, chunk):
                idx = lvl_indices[s:s + chunk]
                x = box[:3] + (self.grid_coords[idx].to(torch.float32) + 0.5) / self.resolution * (box[3:] - box[:3])
                seen = torch.zeros(idx.shape[0], dtype=torch.bool, device=x.device)
                for c0 in range(0, c2w.shape[0], cams):  # the cameras in batches, not one by one
                    z = torch.einsum("cj,pj->cp", w2c_R[c0:c0 + cams, 2], x) + w2c_t[c0:c0 + cams, 2:3]
                    uvw = torch.einsum("cij,pj->cpi", P[c0:c0 + cams], x) + Pt[c0:c0 + cams, None]
                    uv = uvw[..., :2] / z.clamp_min(1e-12)[..., None]
                    seen |= ((z > near_plane) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0)
                             & (uv[..., 1] < height)).any(0)
                cell_ids = lvl * self.cells_per_lvl + idx
                self.occs[cell_ids] = torch.where(seen, self.occs[cell_ids], torch.full_like(self.occs[cell_ids], -1.0))
        self._visible = {}
        self.binaries &= (self.occs >= 0).view(self.binaries.shape)
