"""Training driver: ``python -m eyefast.train CONFIG [options]`` (SPEC sections 2-5).

Usage::

    python -m eyefast.train data/demo/config.yaml
    python -m eyefast.train CONFIG --device cuda:0 --workspace runs --max-steps 500
    python -m eyefast.train CONFIG --resume runs/synth_demo/latest.pth
    python -m eyefast.train CONFIG --set train.max_steps=100 --set renderer.max_num_ray=2048

CoRA's spelling works too (``trainer.py`` replaced by ``-m eyefast.train``)::

    python -m eyefast.train --config_path CONFIG --device 0 [--ckpt_path CKPT] [--chunk_size N]
    python -m eyefast.train --config_path CONFIG --mode export_eyeball --ckpt_path CKPT --save_visual_dir OUT

Writes ``<workspace>/<name>/``: ``config.yaml`` (the config used), ``checkpoints/step_XXXXXX.pth``
every ``train.save_freq`` steps and ``latest.pth`` (atomic writes), ``scalars.csv`` (``step,tag,value``;
also TensorBoard event files when ``tensorboard`` is installed), ``val.json`` (last validation),
``vis/step_XXXXXX.png`` previews (prediction | truth | normal | diffuse | specular | eye opacities).
Ctrl-C finishes the current step, saves ``latest.pth`` and exits; ``--resume`` continues with the same
step, optimiser, occupancy grid and random state.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from . import backend as backends
from . import config as config_mod
from .data import Capture
from .metrics import psnr as psnr_fn, ssim as ssim_fn
from .model import TEXTURE_LR_SCALE, HeadModel
from .reference import shading as S
from .render import render_image, render_rays, step_size

__all__ = ["Trainer", "main", "parse_device", "atomic_save", "load_checkpoint"]


def _dist():
    """``torch.distributed`` when a process group is initialised (torchrun), else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def parse_device(dev) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"``, an index ``N`` (-> ``cuda:N``) or ``"auto"`` (CUDA if available)."""
    s = str(dev).strip()
    if s == "auto":
        s = "cuda" if torch.cuda.is_available() else "cpu"
    if s.isdigit():
        s = f"cuda:{s}"
    try:
        d = torch.device(s)
    except RuntimeError:
        raise ValueError(f"--device: expected cpu, cuda, cuda:N, N or auto, got {dev!r}") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {dev!r}: CUDA is not available on this machine (use --device cpu)")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise ValueError(f"--device {dev!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if d.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected cpu, cuda, cuda:N or N, got {dev!r}")
    return d


def atomic_save(obj, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:  # the rename itself durable too
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Loads a checkpoint written by :class:`Trainer` (``weights_only=True``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"checkpoint '{path}' cannot be read: {e}") from None
    for k in ("step", "model", "grid"):
        if k not in ck:
            raise ValueError(f"checkpoint '{path}' is not an eyefast checkpoint (no '{k}' entry)")
    return ck


def _to_srgb(lin: torch.Tensor, gamma: float) -> torch.Tensor:
    return lin.clamp(0.0, 1.0) ** (1.0 / gamma)


def _shrink_hair(cap: Capture, ks: int) -> None:
    """``data.dilate_ks``: hair pixels next to skin are not hair (dilate the skin mask by ks x ks)."""
    if ks <= 1:
        return
    out = cap.masks["hair_mask"]
    for i in range(out.shape[0]):  # a frame at a time: real captures hold hundreds of 1080p masks
        mask = cap.masks["mask"][i].float() / 255.0
        hair = out[i].float() / 255.0
        skin = (mask * (1.0 - hair))[None, None]
        grown = F.max_pool2d(skin, ks, stride=1, padding=ks // 2)[0, 0, : hair.shape[0], : hair.shape[1]]
        out[i] = (hair * (1.0 - grown) * 255.0).round().to(torch.uint8)


class _Scalars:
    """``scalars.csv`` (long format ``step,tag,value``) plus TensorBoard when installed."""

    def __init__(self, folder: str, resume_step: int | None):
        self.resume_step = resume_step
        self.path = os.path.join(folder, "scalars.csv")
        if resume_step is not None and os.path.isfile(self.path):  # drop rows after the checkpoint
            with open(self.path, newline="") as f:
                rows = [r for r in csv.reader(f)][1:]
            rows = [r for r in rows if len(r) == 3 and int(r[0]) <= resume_step]
        else:
            rows = []
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "tag", "value"])
            w.writerows(rows)
        self._f = open(self.path, "a", newline="")
        self._w = csv.writer(self._f)
        self.tb = None
        try:  # optional dependency
            from torch.utils.tensorboard import SummaryWriter

            kw = {} if self.resume_step is None else {"purge_step": self.resume_step + 1}
            self.tb = SummaryWriter(os.path.join(folder, "tb"), **kw)
        except Exception:  # noqa: BLE001 - tensorboard not installed
            self.tb = None

    def log(self, step: int, values: dict) -> None:
        for k, v in values.items():
            self._w.writerow([step, k, f"{float(v):.7g}"])
            if self.tb is not None:
                self.tb.add_scalar(k, float(v), step)
        self._f.flush()

    def close(self):
        self._f.close()
        if self.tb is not None:
            self.tb.close()


class Trainer:
    """Trains :class:`eyefast.model.HeadModel` on a capture (see the module docstring).

    Args:
        cfg: :class:`eyefast.config.Config`. device: torch device (default ``cfg.device``).
        quiet: no progress bar and no prints (tests).
    """

    def __init__(self, cfg, device=None, quiet: bool = False):
        self.cfg = cfg
        self.device = parse_device(cfg.device if device is None else device)
        dist = _dist()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
        self.quiet = quiet or self.rank != 0
        self.ops = backends.get(cfg.ops_backend)
        if cfg.loss.w_lpips > 0:  # config.load warns as well; stated once more where it matters
            self._say("loss.w_lpips: LPIPS weights cannot be downloaded here; the perceptual term is skipped")
        self.train_cap = Capture.from_config(cfg, "train", device=self.device)
        self.val_cap = Capture.from_config(cfg, "val", device=self.device)  # frame 0 is always a validation frame
        _shrink_hair(self.train_cap, cfg.data.dilate_ks)
        n_frames_all = int(max(self.train_cap.frame_ids.max(), self.val_cap.frame_ids.max())) + 1
        torch.manual_seed(cfg.train.seed)
        self.model = HeadModel(cfg, self.ops, n_frames_all).to(self.device)
        b = cfg.data.bound
        from .occupancy import OccupancyGrid

        self.grid = OccupancyGrid([-b, -b, -b, b, b, b], resolution=cfg.renderer.grid_resolution).to(self.device)
        cap = self.train_cap  # space no training camera sees stays empty
        self.grid.mark_invisible_cells(cap.K, cap.c2w[:, :3, :], cap.W, cap.H)
        self.step_size = step_size(cfg)
        self.light = {"color": list(cfg.light.color), "intensity": float(cfg.light.intensity)}
        if self.world > 1:  # every rank starts from rank 0's weights and grid
            for tsr in list(self.model.state_dict().values()) + list(self.grid.state_dict().values()):
                dist.broadcast(tsr, 0)
        fast = {id(p) for p in self.model.texture_parameters()}
        params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in fast]
        groups = [{"params": params}]
        if fast:
            groups.append({"params": self.model.texture_parameters(), "lr": cfg.train.lr * TEXTURE_LR_SCALE})
        # fused: one multi-tensor kernel per step instead of ~10 ops per parameter (CPU and CUDA)
        self.optimizer = torch.optim.Adam(groups, lr=cfg.train.lr, eps=1e-15, fused=True)
        # What backward differentiates for: the optimised parameters only. Without `inputs` autograd
        # would also compute the gradient of every leaf in the graph, e.g. the sample points that the
        # normals were differentiated against (a Hessian term in the hash grid's double backward).
        self._trained = [p for g in groups for p in g["params"]]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda)
        self.seed = cfg.train.seed  # a resumed run keeps its checkpoint's seed
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.step = 0
        self.n_rays = min(cfg.renderer.max_num_ray, max(64, cfg.renderer.sample_batch_size // 64 // 64 * 64))
        self.metrics: dict = {}
        self.ldm = {}
        for k, key in ((0, "left_eye_ldm"), (1, "right_eye_ldm")):
            v = getattr(cfg.data, key)
            if v is not None:
                self.ldm[k] = torch.tensor(v, dtype=torch.float32, device=self.device)
        self.run_dir = os.path.join(cfg.workspace, cfg.name)
        self._stop = False
        self.stage2 = None  # dict once stage 2 (mesh rendering) has started
        self._grad_norm = None  # the last step's gradient norm (set by _check_grads)

    # ------------------------------------------------------------------ helpers
    def _say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[eyefast.train] {msg}", file=sys.stderr, flush=True)

    def _lr_lambda(self, step: int) -> float:
        t = self.cfg.train
        if t.warmup_steps > 0 and step < t.warmup_steps:
            f = 0.01 + 0.99 * step / t.warmup_steps
        else:
            f = 1.0
        return f * 0.33 ** sum(1 for m in t.milestones if step >= m)

    def _occ_eval(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, x.shape[0], 1 << 18):
            out.append(self.model.density(self.model.scene_sdf(x[s:s + (1 << 18)])) * self.step_size)
        return torch.cat(out)

    # ------------------------------------------------------------------ one step
    def in_stage2(self) -> bool:
        t = self.cfg.train
        return bool(t.mesh_render) and self.step >= t.mesh_render_iter

    def train_step(self) -> dict:
        """One optimisation step; returns its scalars (floats)."""
        # every random draw of a step comes from (seed, step, rank): resumable without per-rank RNG state
        self.generator.manual_seed(self.seed * 1_000_003 + self.step * 64 + self.rank)
        if self.in_stage2():
            return self._stage2_step()
        cfg, model = self.cfg, self.model
        L = cfg.loss
        model.train()
        self.grid.train()
        model.set_progress(self.step, cfg.train.init_level, cfg.train.level_grow_iter)
        self.grid.update_every_n_steps(self.step, self._occ_eval, occ_thre=1e-2,
                                       n=cfg.renderer.grid_update_freq)
        if self.world > 1 and self.step % cfg.renderer.grid_update_freq == 0:  # identical grids on all ranks
            _dist().broadcast(self.grid.occs, 0)
            _dist().broadcast(self.grid.binaries, 0)
        cap = self.train_cap
        b = cap.sample_batch(self._local_rays(self.n_rays), self.generator)
        fids = cap.frame_ids.to(self.device)[b["frame_idx"]]
        model.frame_seen[fids] = True
        out = render_rays(model, self.grid, self.ops, b["rays_o"], b["rays_d"], fids, self.light,
                          step=self.step_size, train=True, stratified=True, generator=self.generator,
                          shading=cfg.renderer.shading)
        target = b["rgb"]
        mask, hair, leye, reye = b["mask"], b["hair_mask"], b["leye_mask"], b["reye_mask"]
        face_t = (mask - leye - reye).clamp(0.0, 1.0)
        terms = {}
        terms["l1"] = (out["rgb"] - target).abs().mean() + (out["rgb_rad"] - target).abs().mean()
        mask_t = face_t if model.ignore_eyeball else mask
        terms["mask"] = (out["opacity"].clamp(0.0, 1.0) - mask_t).abs().mean()
        terms["eikonal"] = out["eikonal"]
        if not model.ignore_eyeball:
            oo = out["obj_opacity"].clamp(0.0, 1.0)
            terms["sdf_mask"] = ((oo[:, 0] - face_t).abs().mean() + (oo[:, 1] - leye).abs().mean()
                                 + (oo[:, 2] - reye).abs().mean())
        terms["reg_diff"] = (out["specular"] * hair).mean()
        m = mask * (1.0 - hair)
        terms["abdmm"] = (out["specular"] * model.light_scale * m - b["specular_bfm"] * m).abs().mean()
        terms["normal"] = self._normal_smoothness(b, out)
        if not model.ignore_eyeball and self.ldm:
            r = model.eye_radius
            ldm = sum(((self.ldm[k] - model.eye_centers[k]).norm(dim=-1) - r).abs().mean() for k in self.ldm)
            terms["ldm"] = ldm
        weights = {"l1": L.w_l1, "mask": L.w_mask, "eikonal": L.w_eikonal, "sdf_mask": L.w_sdf_mask,
                   "reg_diff": L.w_reg_diff, "abdmm": L.w_abdmm, "normal": 1.0, "ldm": L.w_ldm}
        loss = sum(weights[k] * v for k, v in terms.items())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {self.step}: the loss is not finite ({ {k: float(v) for k, v in terms.items()} })")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=[p for p in self._trained if p.requires_grad])
        self._allreduce_grads()
        self._check_grads()
        self._clip_eye_grads()
        self.optimizer.step()
        self.scheduler.step()
        n_samples = self._sum_over_ranks(out["n_samples"])
        # adaptive ray count: samples per step near renderer.sample_batch_size (SPEC 4)
        target_s = cfg.renderer.sample_batch_size
        nr = int(self.n_rays * target_s / max(n_samples, 1))
        self.n_rays = int(min(cfg.renderer.max_num_ray, max(64, nr // 64 * 64)))
        with torch.no_grad():
            mse = float(((out["rgb"].clamp(0, 1) ** (1 / cfg.light.gamma) - target ** (1 / cfg.light.gamma)) ** 2).mean())
        res = {"loss": loss.item(), **{f"loss_{k}": v.item() for k, v in terms.items()},
               "psnr": -10.0 * math.log10(max(mse, 1e-10)), "n_rays": out["rgb"].shape[0],
               "n_samples": n_samples, "lr": self.scheduler.get_last_lr()[0], "beta": model.beta.item(),
               "eye_radius": model.eye_radius.item(), "light_scale": model.light_scale.item()}
        if self._grad_norm is not None:  # before the eye clipping: what the loss produced
            res["grad_norm"] = float(self._grad_norm)
        self.step += 1
        return res

    def _local_rays(self, n: int) -> int:
        """This rank's share of a step's ``n`` rays."""
        return max(1, n // self.world + (1 if self.rank < n % self.world else 0))

    def _sum_over_ranks(self, v: int) -> int:
        if self.world == 1:
            return int(v)
        t = torch.tensor([float(v)], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        _dist().all_reduce(t)
        return int(t.item())

    def _allreduce_grads(self) -> None:
        """Data parallelism (torchrun): average the gradients of all ranks in one flat buffer. (DDP's reducer
        hooks cannot follow the eikonal term's double backward through ``autograd.grad(create_graph=True)``;
        this is what DDP computes, done after ``backward``.) Parameters without a gradient on every rank stay
        without one, so Adam skips them as in one process."""
        if self.world == 1:
            return
        dist = _dist()
        params = [p for p in self.model.parameters() if p.requires_grad]
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                           device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(has)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        off = 0
        for p, h in zip(params, has.tolist()):
            n = p.numel()
            p.grad = flat[off:off + n].view_as(p).clone() if h > 0 else None
            off += n

    def _check_grads(self) -> None:
        named = [(n, p.grad) for n, p in self.model.named_parameters() if p.grad is not None]
        self._grad_norm = None
        if not named:
            return
        # one host sync for all parameters (on a GPU, one per parameter stalled the step 30 times)
        # A screen first: the 2-norms in one multi-tensor reduction (a non-finite element makes its norm
        # non-finite); only if one is not finite (a huge finite gradient can overflow the norm too), the
        # exact per-parameter check.
        norms = torch.stack(torch._foreach_norm([g for _, g in named]))
        self._grad_norm = torch.linalg.vector_norm(norms)  # logged as grad_norm (diagnoses spikes)
        ok = torch.isfinite(norms)
        if bool(ok.all()):
            return
        bad = [n for (n, g), good in zip(named, ok.tolist()) if not good and not bool(torch.isfinite(g).all())]
        if bad:
            raise FloatingPointError(f"step {self.step}: non-finite gradients in {', '.join(bad)}")

    def _clip_eye_grads(self) -> None:
        """Clip each eye centre's gradient (a row of 3) and the radius parameter's to ``train.eye_grad_clip``
        times its running RMS, the square root of Adam's bias-corrected second moment.

        Why: the eyes are glossy (roughness 0.05), so a sample that lands in the flash's glint moves the
        colour steeply with the normal, and so with the centre. In the demo such a step's centre gradient
        was 2000x its median (132 against 0.07). Adam's step is bounded, but the spike fills the second
        moment, which forgets over ~1/(1 - beta2) = 1000 steps: the momentum carried the eye ~0.5 r along the
        spike's direction in the next 20 steps, and the landmark and mask terms' ordinary gradients then
        moved it back at a fraction of the learning rate. Clipping relative to the RMS bounds what one step
        can do without a scale to tune: Adam normalises by that RMS anyway. Parameters without a second
        moment yet (the first step), and rows whose second moment is still 0, are not clipped."""
        k = float(self.cfg.train.eye_grad_clip)
        if k <= 0 or self.model.ignore_eyeball:
            return
        beta2 = self.optimizer.param_groups[0]["betas"][1]  # the eye parameters' group
        with torch.no_grad():
            for p in (self.model.eye_centers, self.model.eye_s):
                st = self.optimizer.state.get(p)
                if p.grad is None or not st or "exp_avg_sq" not in st:
                    continue
                v = st["exp_avg_sq"] / (1.0 - beta2 ** st["step"])  # a tensor: no host sync on a GPU
                rows = p.grad.reshape(-1, 3) if p.dim() == 2 else p.grad.reshape(1, -1)
                lim = k * v.reshape(rows.shape).sum(-1).double().sqrt()
                lim = torch.where(lim > 0, lim, torch.inf)  # no gradient yet: nothing to compare with
                norm = rows.double().norm(dim=-1)  # float64: a huge finite float32 row does not overflow
                scale = (lim / norm.clamp_min(1e-300)).clamp(max=1.0).to(rows.dtype)
                p.grad.copy_((rows * scale[:, None]).reshape(p.grad.shape))

    def _normal_smoothness(self, b, out) -> torch.Tensor:
        """SPEC 5: 1 - n(x) . n(x + eps t) at the rays' expected surface points (random tangent t)."""
        cfg, model = self.cfg, self.model
        op = out["opacity"].detach()
        sel = (b["mask"] > 0.5) & (op > 0.5)
        if not bool(sel.any()) or (cfg.loss.w_eps_n == 0 and cfg.loss.w_eps_n_smooth == 0):
            return out["eikonal"] * 0.0
        depth = (out["depth"].detach() / op.clamp_min(1e-6))[sel]
        x = b["rays_o"][sel] + b["rays_d"][sel] * depth[:, None]
        n1 = model.scene_normal(x, create_graph=True)
        r = torch.randn(x.shape, generator=self.generator).to(x.device)
        t = F.normalize(torch.cross(n1.detach(), r, dim=-1), dim=-1)
        n2 = model.scene_normal(x + cfg.network.neighbor_eps * t, create_graph=True)
        w = torch.where(b["hair_mask"][sel] > 0.5, cfg.loss.w_eps_n_smooth, cfg.loss.w_eps_n)
        return (w * (1.0 - (n1 * n2).sum(-1))).sum() / max(1, b["mask"].shape[0])

    # ------------------------------------------------------------------ stage 2: mesh rendering
    STAGE2_VIEWS = 4  # training views rasterised per stage-2 step

    def _stage2_prepare(self, mesh_verts=None, mesh_faces=None) -> None:
        """SPEC 5, stage 2: the face mesh (marching cubes at ``train.mesh_resolution``^3, decimated by half,
        only faces seen inside the training masks, largest component, small holes filled). Each stage-2 step
        rasterises it in a few random training views (memory independent of the capture's size)."""
        cap = self.train_cap
        if mesh_verts is None:
            from .export import clipped_face_mesh

            self._say(f"stage 2: extracting the face mesh at {self.cfg.train.mesh_resolution}^3")
            mesh, stats = clipped_face_mesh(self.model, cap, self.cfg.data.bound, self.cfg.train.mesh_resolution,
                                            quiet=self.quiet)
            mesh_verts = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
            mesh_faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64)
            self._say(f"stage 2: {stats['faces']} faces; training the material on the mesh")
        v = mesh_verts.to(self.device).contiguous()
        dist = float((cap.cam_centers - v.mean(0)).norm(dim=-1).max())
        self.stage2 = {"verts": mesh_verts.cpu(), "faces": mesh_faces.cpu(), "v": v,
                       "f": mesh_faces.to(self.device).contiguous(),
                       "near": 1e-3 * dist, "far": 1e3 * dist + 10.0 * self.cfg.data.bound}

    def _stage2_pixels(self, n: int):
        """``n`` random (frame, pixel, surface point) triples: pixels covered by the mesh inside the mask and
        outside the eyes of ``STAGE2_VIEWS`` random training views."""
        from . import ops

        cap, st = self.train_cap, self.stage2
        frames = torch.randint(0, cap.n_frames, (self.STAGE2_VIEWS,), generator=self.generator).tolist()
        fr, pix, pts = [], [], []
        for i in frames:
            clip = ops.project_to_clip(st["v"], cap.K, cap.w2c[i], cap.H, cap.W, near=st["near"], far=st["far"])
            p2f, bary, _ = ops.rasterize(clip, st["f"], cap.H, cap.W)
            keep = ((p2f >= 0) & (cap.masks["mask"][i] > 127) & (cap.masks["leye_mask"][i] <= 127)
                    & (cap.masks["reye_mask"][i] <= 127))
            yx = torch.nonzero(keep)
            fr.append(torch.full((yx.shape[0],), i, dtype=torch.long, device=self.device))
            pix.append(yx.flip(-1))
            pts.append(ops.interpolate(st["v"], st["f"], p2f, bary)[keep])
        fr, pix, pts = torch.cat(fr), torch.cat(pix), torch.cat(pts)
        if fr.shape[0] == 0:
            raise RuntimeError(f"stage 2: the face mesh covers no masked pixel of training views {frames}")
        sel = torch.randint(0, fr.shape[0], (n,), generator=self.generator).to(self.device)
        return fr[sel], pix[sel], pts[sel]

    def _stage2_step(self) -> dict:
        """Stage 2: only the material network trains (SPEC 5), on the fixed mesh, with the SDF normals:
        L1 + the hair and specular-prior (``w_abdmm_refine``) terms."""
        if self.stage2 is None:
            self._stage2_prepare()
        cfg, model = self.cfg, self.model
        L = cfg.loss
        model.train()
        fr, pix, x = self._stage2_pixels(self._local_rays(cfg.renderer.max_num_ray))
        nrm = F.normalize(model.face_with_gradient(x, create_graph=False)[2], dim=-1)
        cap = self.train_cap
        b = cap.gather(fr, pix)
        fids = cap.frame_ids.to(self.device)[fr]
        albedo, spec, rough = model.material(x)
        with torch.no_grad():
            occ = model.occlusion(fids)[:, None]
        shade = S.shade_colocated(x, nrm, b["rays_o"], albedo, spec[:, None], rough[:, None], self.light["color"],
                                  self.light["intensity"], model.light_scale.detach(), model.sh_coeffs.detach(),
                                  model.sh_beta, occ, model.sh_scale)
        target, hair = b["rgb"], b["hair_mask"]
        m = b["mask"] * (1.0 - hair)
        terms = {"l1": (shade["rgb"] - target).abs().mean(), "reg_diff": (spec * hair).mean(),
                 "abdmm_refine": (spec * model.light_scale.detach() * m - b["specular_bfm"] * m).abs().mean()}
        loss = L.w_l1 * terms["l1"] + L.w_reg_diff * terms["reg_diff"] + L.w_abdmm_refine * terms["abdmm_refine"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {self.step} (stage 2): the loss is not finite")
        self.optimizer.zero_grad(set_to_none=True)
        # only the material is in the graph: Adam leaves parameters with grad None untouched
        loss.backward(inputs=[p for p in self._trained if p.requires_grad])
        self._allreduce_grads()
        self._check_grads()
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            g = 1.0 / cfg.light.gamma
            mse = float(((shade["rgb"].clamp(0, 1) ** g - target ** g) ** 2).mean())
        self.step += 1
        n = x.shape[0]
        extra = {} if self._grad_norm is None else {"grad_norm": float(self._grad_norm)}
        return {**extra, "loss": loss.item(), **{f"loss_{k}": v.item() for k, v in terms.items()},
                "psnr": -10.0 * math.log10(max(mse, 1e-10)), "n_rays": n, "n_samples": n,
                "lr": self.scheduler.get_last_lr()[0], "stage": 2}

    # ------------------------------------------------------------------ validation / previews
    @torch.no_grad()
    def render_view(self, cap: Capture, i: int) -> dict:
        self.model.eval()
        self.grid.eval()
        return render_image(self.model, self.grid, self.ops, cap, i, self.light, self.step_size,
                            self.cfg.renderer.chunk_size, self.cfg.renderer.shading)

    def validate(self, max_views: int | None = None) -> dict:
        cap, g = self.val_cap, self.cfg.light.gamma
        ids = range(cap.n_frames if max_views is None else min(max_views, cap.n_frames))
        ps, ss, pe = [], [], []
        for i in ids:
            r = self.render_view(cap, i)
            pred = _to_srgb(r["rgb"], g).cpu()
            gt = cap.full_image(i).cpu()
            ps.append(psnr_fn(pred, gt))
            ss.append(ssim_fn(pred, gt))
            eye = (cap.full_mask(i, "leye_mask") + cap.full_mask(i, "reye_mask")).cpu()
            if bool((eye > 0.5).any()):
                pe.append(psnr_fn(pred, gt, eye))
        res = {"val/psnr": float(np.mean(ps)), "val/ssim": float(np.mean(ss))}
        if pe:
            res["val/psnr_eye"] = float(np.mean(pe))
        return res

    def preview(self, path: str, i: int = 0) -> None:
        """PNG: prediction | truth | normal | diffuse | specular | eye opacities (R left, G right, B face)."""
        import imageio.v3 as iio

        cap, g = self.val_cap, self.cfg.light.gamma
        r = self.render_view(cap, i)
        obj = r["obj_opacity"]
        if obj.shape[-1] == 1:
            eyes = torch.cat([torch.zeros_like(obj), torch.zeros_like(obj), obj], -1)
        else:
            eyes = torch.stack([obj[..., 1], obj[..., 2], obj[..., 0] * 0.3], -1)
        panels = [_to_srgb(r["rgb"], g), cap.full_image(i).to(r["rgb"].device), (r["normal"] * 0.5 + 0.5) * r["opacity"][..., None],
                  _to_srgb(r["diffuse"], g), _to_srgb(r["spec_rgb"], g), eyes.clamp(0, 1)]
        img = torch.cat([p.clamp(0, 1).cpu() for p in panels], 1)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        iio.imwrite(path, (img.numpy() * 255).round().astype(np.uint8))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "grid": self.grid.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "n_rays": self.n_rays,
            "metrics": dict(self.metrics),
            "config": self.cfg.to_dict(),
            "stage2_mesh": None if self.stage2 is None else {"verts": self.stage2["verts"],
                                                              "faces": self.stage2["faces"]},
        }

    def save(self, path: str) -> None:
        atomic_save(self.state_dict(), path)

    #: config keys a checkpoint's model and grid depend on: loading it with other values is an error
    STRUCTURAL_KEYS = ("data.bound", "data.ignore_eyeball", "data.fix_eyeball_center", "data.fix_eye_gaze",
                       "eye_model", "network.num_levels", "network.level_dim", "network.geo_feat_dim",
                       "renderer.grid_resolution")

    @staticmethod
    def _get(d, key):
        for part in key.split("."):
            if not isinstance(d, dict) or part not in d:
                return None
            d = d[part]
        return d

    def _check_structure(self, ck: dict, path: str) -> None:
        old, now = ck.get("config"), self.cfg.to_dict()
        if not isinstance(old, dict):
            return
        for key in self.STRUCTURAL_KEYS:
            if key == "data.fix_eye_gaze" and now.get("eye_model") != "cornea":
                continue  # the gaze exists only in the refractive eye model
            a, b = self._get(old, key), self._get(now, key)
            if a is not None and a != b:
                raise ValueError(f"checkpoint '{path}' was trained with {key}={a!r}, the config says {b!r}; "
                                 "use the run's config.yaml (or a matching --set)")

    def _apply_lr(self, ck: dict) -> None:
        """A --set train.lr=... on resume takes effect (the optimiser state would keep the old rate)."""
        old = self._get(ck.get("config"), "train.lr")
        if old is None or old == self.cfg.train.lr:
            return
        self._say(f"train.lr {self.cfg.train.lr} replaces the checkpoint's {old}")
        base = [self.cfg.train.lr * (1.0 if i == 0 else TEXTURE_LR_SCALE)
                for i in range(len(self.optimizer.param_groups))]
        for g, lr in zip(self.optimizer.param_groups, base):
            g["initial_lr"] = lr
            g["lr"] = lr * self._lr_lambda(self.step)
        self.scheduler.base_lrs = base

    def load(self, path: str, weights_only_model: bool = False) -> None:
        ck = load_checkpoint(path, map_location=self.device)
        self._check_structure(ck, path)
        try:
            self.model.load_state_dict(ck["model"])
            self.grid.load_state_dict(ck["grid"])
        except RuntimeError as e:
            raise ValueError(f"checkpoint '{path}' does not match this config's model: {e}") from None
        self.step = int(ck["step"])
        self.metrics = dict(ck.get("metrics", {}))
        seed = self._get(ck.get("config"), "train.seed")
        if seed is not None:
            self.seed = int(seed)
        # the hash levels the last completed step trained with (rendering, export and resume agree)
        t = self.cfg.train
        self.model.set_progress(max(self.step - 1, 0), t.init_level, t.level_grow_iter)
        self.stage2 = None
        if ck.get("stage2_mesh") is not None and not weights_only_model:
            self._stage2_prepare(ck["stage2_mesh"]["verts"], ck["stage2_mesh"]["faces"])
        if weights_only_model:
            return
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self._apply_lr(ck)
        self.n_rays = min(self.cfg.renderer.max_num_ray, max(64, int(ck.get("n_rays", self.n_rays))))
        rng = ck.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"].cpu())
        if "generator" in rng:
            self.generator.set_state(rng["generator"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)

    # ------------------------------------------------------------------ the loop
    def _collective_stop(self) -> bool:
        """Ctrl-C on any rank stops all ranks after the same step."""
        if self.world > 1:
            t = torch.tensor([1.0 if self._stop else 0.0], device=self.device if self.device.type == "cuda" else "cpu")
            _dist().all_reduce(t, op=_dist().ReduceOp.MAX)
            self._stop = bool(t.item() > 0)
        return self._stop

    def fit(self, max_steps: int | None = None) -> dict:
        """Trains until ``max_steps`` (default ``train.max_steps``); returns the last metrics."""
        cfg = self.cfg
        t = cfg.train
        max_steps = t.max_steps if max_steps is None else max_steps
        self._stop = False
        lead = self.rank == 0  # only rank 0 writes checkpoints, logs, previews
        if lead:
            os.makedirs(self.run_dir, exist_ok=True)
            config_mod.save(cfg, os.path.join(self.run_dir, "config.yaml"))
        log = _Scalars(self.run_dir, self.step if self.step > 0 else None) if lead else None
        from tqdm import tqdm

        bar = tqdm(total=max_steps, initial=self.step, disable=self.quiet, desc="train", dynamic_ncols=True)
        prev = signal.getsignal(signal.SIGINT)
        in_main = _is_main_thread()

        def on_sigint(signum, frame):
            if self._stop:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop = True
            self._say("Ctrl-C: finishing this step, saving latest.pth (press again to abort)")

        if in_main:
            signal.signal(signal.SIGINT, on_sigint)
        t0 = time.perf_counter()
        rays_done = 0
        gmax = 0.0  # the largest gradient norm since the last logged step (a spike between logs shows)
        try:
            while self.step < max_steps and not self._collective_stop():
                res = self.train_step()
                rays_done += res["n_rays"] * self.world
                step = self.step
                el = time.perf_counter() - t0
                res["rays_per_s"] = rays_done / max(el, 1e-9)
                self.metrics = {k: v for k, v in res.items()}
                if not lead:
                    continue
                gmax = max(gmax, res.get("grad_norm", 0.0))
                if step % 10 == 0 or step == max_steps:
                    log.log(step, {f"train/{k}": v for k, v in res.items()})
                    if "grad_norm" in res:
                        log.log(step, {"train/grad_norm_max": gmax})
                    gmax = 0.0
                bar.update(1)
                bar.set_postfix(loss=f"{res['loss']:.4f}", psnr=f"{res['psnr']:.2f}",
                                rays_s=f"{res['rays_per_s']:.0f}", refresh=False)
                if t.val_freq > 0 and (step % t.val_freq == 0 or step == max_steps):
                    v = self.validate(max_views=8)
                    self.metrics.update(v)
                    log.log(step, v)
                    with open(os.path.join(self.run_dir, "val.json"), "w") as f:
                        json.dump({"step": step, **v}, f, indent=1)
                    bar.write(f"step {step}: " + ", ".join(f"{k} {x:.3f}" for k, x in v.items()))
                if t.vis_freq > 0 and (step % t.vis_freq == 0 or step == max_steps):
                    self.preview(os.path.join(self.run_dir, "vis", f"step_{step:06d}.png"))
                if t.save_freq > 0 and step % t.save_freq == 0:
                    self.save(os.path.join(self.run_dir, "checkpoints", f"step_{step:06d}.pth"))
                latest_every = min(t.save_freq, 100) if t.save_freq > 0 else 100
                if step % latest_every == 0 or step == max_steps:
                    self.save(os.path.join(self.run_dir, "latest.pth"))
            if self._stop and lead:
                self.save(os.path.join(self.run_dir, "latest.pth"))
                self._say(f"stopped at step {self.step}; resume with --resume {os.path.join(self.run_dir, 'latest.pth')}")
        finally:
            bar.close()
            if log is not None:
                log.close()
            if in_main:
                signal.signal(signal.SIGINT, prev)
        return self.metrics


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ---------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eyefast.train", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", help="config.yaml (CoRA keys; see eyefast.config)")
    ap.add_argument("--config_path", dest="config_path", help="CoRA spelling of CONFIG")
    ap.add_argument("--device", help="cpu, cuda, cuda:N or N (default: the config's device)")
    ap.add_argument("--workspace", help="output root (default: the config's workspace)")
    ap.add_argument("--max-steps", type=int, dest="max_steps", help="override train.max_steps")
    ap.add_argument("--resume", help="checkpoint to continue from (latest.pth)")
    ap.add_argument("--ckpt_path", help="CoRA spelling: checkpoint to resume from (train) or export (export_eyeball)")
    ap.add_argument("--mode", choices=["train", "export_eyeball"], default="train")
    ap.add_argument("--save_visual_dir", help="export_eyeball: output folder")
    ap.add_argument("--chunk_size", type=int, help="override renderer.chunk_size")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config key (repeatable)")
    ap.add_argument("--threads", type=int, help="CPU threads (torch and eyefast kernels; default: all cores). "
                    "On a machine busy with other work, fewer threads than cores avoids stalls")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def _init_distributed(cfg):
    """Under ``torchrun`` (WORLD_SIZE > 1): one process group (NCCL on CUDA, Gloo on the CPU), and this
    rank's device (``cuda:LOCAL_RANK``). Returns the device to train on, or None for the config's."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or _dist() is not None:
        return None
    import torch.distributed as dist

    dev = parse_device(cfg.device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


def main(argv=None) -> int:
    from . import _malloc

    _malloc.tune()  # keep freed activations for reuse: fewer page faults per step (eyefast/_malloc.py)
    ap = build_parser()
    a = ap.parse_args(argv)
    path = a.config or a.config_path
    if path is None:
        ap.error("a config file is needed (CONFIG or --config_path)")
    if a.config and a.config_path and os.path.abspath(a.config) != os.path.abspath(a.config_path):
        ap.error("give the config once (CONFIG or --config_path)")
    if a.threads is not None:
        if a.threads < 1:
            ap.error(f"--threads must be >= 1, got {a.threads}")
        torch.set_num_threads(a.threads)
    overrides = list(a.set)
    if a.workspace:
        overrides.append(f"workspace={json.dumps(a.workspace)}")  # a JSON string is a YAML string
    if a.max_steps is not None:
        overrides.append(f"train.max_steps={a.max_steps}")
    if a.chunk_size is not None:
        overrides.append(f"renderer.chunk_size={a.chunk_size}")
    if a.device is not None:
        overrides.append(f"device={a.device}")
    try:
        cfg = config_mod.load(path, overrides)
        if a.mode == "export_eyeball":
            ckpt = a.ckpt_path or a.resume
            if not ckpt or not a.save_visual_dir:
                ap.error("--mode export_eyeball needs --ckpt_path and --save_visual_dir")
            from . import export

            return export.main([path, "--ckpt", ckpt, "--out", a.save_visual_dir, *sum((["--set", s] for s in overrides), [])])
        device = _init_distributed(cfg)
        trainer = Trainer(cfg, device=device, quiet=a.quiet)
        if a.resume and a.ckpt_path and os.path.abspath(a.resume) != os.path.abspath(a.ckpt_path):
            ap.error("--resume and --ckpt_path name different checkpoints; give one")
        resume = a.resume or a.ckpt_path
        if resume:
            trainer.load(resume)
            trainer._say(f"resumed from {resume} at step {trainer.step}")
        trainer._say(f"{trainer.train_cap} -> {trainer.run_dir} on {trainer.device} ({cfg.ops_backend} ops)")
        m = trainer.fit()
    except (config_mod.ConfigError, ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as e:
        print(f"eyefast.train: error: {e}", file=sys.stderr)
        if isinstance(e, FloatingPointError):
            print("eyefast.train: the last good checkpoint is latest.pth in the run folder (--resume it, e.g. with "
                  "a lower train.lr)", file=sys.stderr)
        return 2
    finally:
        if _dist() is not None:
            try:
                _dist().barrier()  # every rank done (rank 0 may still be writing) before the group goes
            finally:
                _dist().destroy_process_group()
    if not a.quiet and trainer.rank == 0:
        keys = [k for k in ("val/psnr", "val/ssim", "val/psnr_eye") if k in m]
        print(f"done: step {trainer.step}; " + ", ".join(f"{k} {m[k]:.3f}" for k in keys) +
              f"; checkpoints in {trainer.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
