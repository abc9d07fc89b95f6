"""The training loop (docs/method.md sections 2-5): :class:`Trainer`.

A run writes ``<workspace>/<name>/``: ``config.yaml`` (the config used), ``checkpoints/step_XXXXXX.pth``
every ``train.save_freq`` steps and ``latest.pth`` (atomic writes), ``scalars.csv`` (``step,tag,value``;
also TensorBoard event files when ``tensorboard`` is installed), ``val.json`` (last validation),
``vis/step_XXXXXX.png`` previews (prediction | truth | normal | diffuse | specular | eye opacities).
Ctrl-C finishes the current step, saves ``latest.pth`` and stops; :meth:`Trainer.load` of a checkpoint
continues with the same step, optimiser, occupancy grid and random state. A new training never
replaces an earlier run in its folder unless asked to (``overwrite``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import torch

from ..checkpoint import atomic_save, check_structure, config_value, load_checkpoint
from ..scene import backend as backends
from ..core.device import parse_device
from ..data import config as config_mod
from ..data.capture import Capture, shrink_hair
from ..evaluation.views import preview_image, view_metrics, write_preview
from ..run import Run
from ..scene.model import HeadModel
from ..scene.render import light_of, make_grid, render_rays, render_view, step_size
from . import distributed
from .losses import stage1_terms, weighted_sum
from .optim import base_lr, clip_eye_grads, grad_health, lr_factor, make_optimizer
from .run_folder import RunLock, prepare_run_folder, remove_stale_temporaries
from .scalars import Scalars
from .stage2 import Stage2

__all__ = ["Trainer"]

log = logging.getLogger("eyefast.training")


def _psnr(rgb: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """PSNR (dB, 0-dim device tensor) of linear ``rgb`` against linear ``target``, compared as stored
    (``** (1 / gamma)``)."""
    with torch.no_grad():
        g = 1.0 / gamma
        mse = ((rgb.clamp(0, 1) ** g - target ** g) ** 2).mean()
        return -10.0 * torch.log10(mse.clamp_min(1e-10))


class Trainer:
    """Trains :class:`eyefast.scene.HeadModel` on a capture (see the module docstring).

    Args:
        cfg: :class:`eyefast.data.config.Config`. device: torch device (default ``cfg.device``).
        quiet: no progress bar and no messages (tests).
    """

    def __init__(self, cfg, device=None, quiet: bool = False):
        self.cfg = cfg
        self.device = parse_device(cfg.device if device is None else device)
        d = distributed.dist()
        self.rank, self.world = (d.get_rank(), d.get_world_size()) if d else (0, 1)
        self.quiet = quiet or self.rank != 0
        self.ops = backends.get(cfg.ops_backend)
        if cfg.loss.w_lpips > 0:  # config.load warns as well; stated once more where it matters
            self._say("loss.w_lpips: eyefast ships no LPIPS network weights; the perceptual term is skipped")
        self.train_cap = Capture.from_config(cfg, "train", device=self.device)
        self.val_cap = Capture.from_config(cfg, "val", device=self.device)  # frame 0 is always a validation frame
        shrink_hair(self.train_cap, cfg.data.dilate_ks)
        n_frames_all = int(max(self.train_cap.frame_ids.max(), self.val_cap.frame_ids.max())) + 1
        torch.manual_seed(cfg.train.seed)
        self.model = HeadModel(cfg, self.ops, n_frames_all).to(self.device)
        self.grid = make_grid(cfg).to(self.device)
        cap = self.train_cap  # space no training camera sees stays empty
        self.grid.mark_invisible_cells(cap.K, cap.c2w[:, :3, :], cap.W, cap.H)
        self.step_size = step_size(cfg)
        self.light = light_of(cfg, self.device)
        if self.world > 1:  # every rank starts from rank 0's weights and grid
            for tsr in list(self.model.state_dict().values()) + list(self.grid.state_dict().values()):
                d.broadcast(tsr, 0)
        if self.model.cameras is not None:  # the training frames are the ones the corrections move
            self.model.cameras.trained[self.train_cap.frame_ids.to(self.model.cameras.trained.device)] = True
        self.optimizer, self._trained = make_optimizer(self.model, cfg.train)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [self._group_lambda(g["name"]) for g in self.optimizer.param_groups])
        self.seed = cfg.train.seed  # a resumed run keeps its checkpoint's seed
        # on the training device: the step's random draws are made where they are used
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.train.seed)
        self.step = 0
        self.n_rays = min(cfg.renderer.max_num_ray, max(64, cfg.renderer.sample_batch_size // 64 // 64 * 64))
        self.metrics: dict = {}
        self.ldm = {}
        for k, key in ((0, "left_eye_ldm"), (1, "right_eye_ldm")):
            v = getattr(cfg.data, key)
            if v is not None:
                self.ldm[k] = torch.tensor(v, dtype=torch.float32, device=self.device)
        self.run_dir = os.path.join(cfg.workspace, cfg.name)
        self.resumed_from = None  # the checkpoint load() continued from
        self._stop = False
        self.interrupted = False  # the last fit() stopped early on Ctrl-C (after saving latest.pth)
        self.stage2: Stage2 | None = None  # once stage 2 (mesh rendering) has started
        self._grad_norm = None  # the last step's gradient norm (before the eye clipping), a device tensor
        # the training's health, kept on the device (read with the scalars): the first step whose loss or
        # gradients were not finite, whether a loss was, and which parameters' gradients were
        self._named = [p for p in self.model.parameters() if p.requires_grad]
        self._param_names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self._have_idx: dict = {}
        self._bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self._bad_loss = torch.zeros((), dtype=torch.bool, device=self.device)
        self._bad_params = torch.zeros(len(self._named), dtype=torch.bool, device=self.device)

    # ------------------------------------------------------------------ helpers
    def _say(self, msg: str) -> None:
        if not self.quiet:
            log.info(msg)

    def _group_lambda(self, name: str):
        def f(step: int) -> float:
            return lr_factor(self.cfg.train, step, name)

        return f

    def _occ_eval(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, x.shape[0], 1 << 18):
            out.append(self.model.density(self.model.scene_sdf(x[s:s + (1 << 18)])) * self.step_size)
        return torch.cat(out)

    def _local_rays(self, n: int) -> int:
        """This rank's share of a step's ``n`` rays."""
        return max(1, n // self.world + (1 if self.rank < n % self.world else 0))

    def _optimize(self, loss: torch.Tensor, clip_eyes: bool) -> None:
        """zero_grad, backward (for the optimised parameters only), all-reduce, the gradient health check,
        the eye clipping (stage 1), the Adam and scheduler steps; no host sync. A step whose loss or
        gradients are not finite changes no weight (fused Adam's ``found_inf``) and is reported when the
        scalars are next read (:meth:`_read`)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=[p for p in self._trained if p.requires_grad])
        distributed.allreduce_grads(self.model.parameters(), self.device)
        with torch.no_grad():
            have = tuple(i for i, p in enumerate(self._named) if p.grad is not None)
            if have not in self._have_idx:  # the index tensor made once per set of parameters (stage 1, 2)
                self._have_idx[have] = torch.tensor(have, dtype=torch.long, device=self.device)
            norm, nonfinite = grad_health([self._named[i].grad for i in have])
            bad_loss = ~torch.isfinite(loss.detach())
            bad = bad_loss | nonfinite.any()
            self._bad_params.index_put_((self._have_idx[have],), nonfinite, accumulate=True)
            self._bad_loss |= bad_loss
            self._bad_step = torch.where((self._bad_step < 0) & bad, self.step, self._bad_step)
            self._grad_norm = norm
        if clip_eyes:
            clip_eye_grads(self.model, self.optimizer, float(self.cfg.train.eye_grad_clip))
        self.optimizer.found_inf = bad.to(torch.float32)  # fused Adam skips the step when 1
        self.optimizer.step()
        self.scheduler.step()

    def _read(self, res: dict) -> dict:
        """The step scalars ``res`` as Python numbers, read from the device in one transfer (a host sync
        on a GPU) with the health flags; raises FloatingPointError naming the first step whose loss or
        gradients were not finite (that step, and the ones after it, left the weights unchanged)."""
        keys = [k for k, v in res.items() if torch.is_tensor(v)]
        vals = torch.stack([res[k].detach().to(torch.float64).reshape(()) for k in keys]
                           + [self._bad_step.to(torch.float64)]).tolist()
        bad_step = int(vals.pop())
        if bad_step >= 0:
            if bool(self._bad_loss):
                raise FloatingPointError(f"step {bad_step}: the loss is not finite")
            names = [n for n, b in zip(self._param_names, self._bad_params.tolist()) if b]
            raise FloatingPointError(f"step {bad_step}: non-finite gradients in {', '.join(names)}")
        return {**res, **dict(zip(keys, vals))}

    # ------------------------------------------------------------------ one step
    def in_stage2(self) -> bool:
        t = self.cfg.train
        return bool(t.mesh_render) and self.step >= t.mesh_render_iter

    def train_step(self) -> dict:
        """One optimisation step; returns its scalars as Python numbers (one host sync to read them;
        :meth:`fit` reads them only every ``train.log_every`` steps)."""
        return self._read(self.step_async())

    def step_async(self) -> dict:
        """One optimisation step without reading anything back from the device: its scalars are 0-dim
        tensors (``loss``, ``loss_*``, ``psnr``, ``beta``, ``eye_radius``, ``light_scale``, ``grad_norm``)
        or Python numbers known on the host (``n_rays``, ``n_samples``, ``lr``, ``stage``); read them with
        :meth:`_read`. The occupancy sampler's count is the step's one host sync."""
        # every random draw of a step comes from (seed, step, rank): resumable without per-rank RNG state
        self.generator.manual_seed(self.seed * 1_000_003 + self.step * 64 + self.rank)
        if self.in_stage2():
            return self._stage2_step()
        cfg, model = self.cfg, self.model
        model.train()
        self.grid.train()
        model.set_progress(self.step, cfg.train.init_level, cfg.train.level_grow_iter)
        if self.rank == 0:  # rank 0 refreshes the grid, the others receive it: identical grids on all ranks
            self.grid.update_every_n_steps(self.step, self._occ_eval, occ_thre=1e-2,
                                           n=cfg.renderer.grid_update_freq)
        if self.world > 1 and self.step % cfg.renderer.grid_update_freq == 0:
            distributed.dist().broadcast(self.grid.occs, 0)
            distributed.dist().broadcast(self.grid.binaries, 0)
            self.grid.changed()
        cap = self.train_cap
        b = cap.sample_batch(self._local_rays(self.n_rays), self.generator)
        fids = cap.frame_ids[b["frame_idx"]]
        model.frame_seen.index_fill_(0, fids, True)
        if model.cameras is not None:  # train.camera_refine: the rays of the corrected cameras
            b["rays_o"], b["rays_d"] = model.cameras.correct_rays(b["rays_o"], b["rays_d"], fids,
                                                                  cap.c2w[b["frame_idx"], :3, :3])
        out = render_rays(model, self.grid, self.ops, b["rays_o"], b["rays_d"], fids, self.light,
                          step=self.step_size, train=True, stratified=True, generator=self.generator,
                          shading=cfg.renderer.shading)
        terms = stage1_terms(model, out, b, self.ldm, cfg, self.generator)
        loss = weighted_sum(terms, cfg.loss)
        self._optimize(loss, clip_eyes=True)
        n_samples = distributed.sum_over_ranks(out["n_samples"], self.device)
        # adaptive ray count: samples per step near renderer.sample_batch_size (docs/method.md section 4);
        # the sample count is known on the host (the sampler's output size)
        target_s = cfg.renderer.sample_batch_size
        nr = int(self.n_rays * target_s / max(n_samples, 1))
        self.n_rays = int(min(cfg.renderer.max_num_ray, max(64, nr // 64 * 64)))
        res = {"loss": loss.detach(), **{f"loss_{k}": v.detach() for k, v in terms.items()},
               "psnr": _psnr(out["rgb"], b["rgb"], cfg.light.gamma), "n_rays": out["rgb"].shape[0],
               "n_samples": n_samples, "lr": self.scheduler.get_last_lr()[0], "beta": model.beta.detach(),
               "eye_radius": model.eye_radius.detach(), "light_scale": model.light_scale.detach(),
               "grad_norm": self._grad_norm}  # before the eye clipping: what the loss produced
        self.step += 1
        return res

    def _stage2_step(self) -> dict:
        """Stage 2: only the material network trains, on the fixed face mesh (see :class:`Stage2`)."""
        cfg = self.cfg
        if self.stage2 is None:
            self._start_stage2()
        self.model.train()
        loss, terms, rgb, target = self.stage2.terms(self.model, self.light, self._local_rays(cfg.renderer.max_num_ray),
                                                     self.generator, cfg.loss)
        # only the material is in the graph: Adam leaves parameters with grad None untouched
        self._optimize(loss, clip_eyes=False)
        self.step += 1
        n = rgb.shape[0]
        return {"grad_norm": self._grad_norm, "loss": loss.detach(), **{f"loss_{k}": v.detach() for k, v in terms.items()},
                "psnr": _psnr(rgb, target, cfg.light.gamma), "n_rays": n, "n_samples": n,
                "lr": self.scheduler.get_last_lr()[0], "stage": 2}

    def _start_stage2(self) -> None:
        """The stage-2 mesh: extracted by rank 0 and sent to the others (under torchrun)."""
        cfg, d = self.cfg, distributed.dist()
        verts = faces = None
        if self.rank == 0:
            self._say(f"stage 2: extracting the face mesh at {cfg.train.mesh_resolution}^3")
            st, stats = Stage2.extract(self.model, self._stage2_capture(), cfg.data.bound,
                                       cfg.train.mesh_resolution, quiet=self.quiet, seed=self.seed)
            self._say(f"stage 2: {stats['faces']} faces, {stats['pixels']} pixels of the training views on "
                      "them; training the material on the mesh")
            if self.world == 1:
                self.stage2 = st
                return
            verts, faces = st.verts, st.faces
        comm = self.device if self.device.type == "cuda" else torch.device("cpu")
        sizes = torch.tensor([0, 0] if verts is None else [verts.shape[0], faces.shape[0]], device=comm)
        d.broadcast(sizes, 0)
        nv, nf = sizes.tolist()
        v = verts.to(comm) if verts is not None else torch.empty(nv, 3, dtype=torch.float32, device=comm)
        f = faces.to(comm) if faces is not None else torch.empty(nf, 3, dtype=torch.int64, device=comm)
        d.broadcast(v, 0)
        d.broadcast(f, 0)
        self.stage2 = Stage2(v.cpu(), f.cpu(), self._stage2_capture(), self.seed)

    def _stage2_capture(self) -> Capture:
        """The training capture stage 2 rasterises: with camera refinement, its refined cameras (frozen from
        here on: only the material trains)."""
        cams = self.model.cameras
        if cams is None:
            return self.train_cap
        return self.train_cap.with_cameras(cams.refine(self.train_cap.c2w64.to(self.device), self.train_cap.frame_ids))

    # ------------------------------------------------------------------ validation / previews
    @torch.no_grad()
    def render_view(self, cap: Capture, i: int) -> dict:
        return render_view(self.model, self.grid, self.ops, self.cfg, cap, i)

    def validate(self, max_views: int | None = None) -> dict:
        cap = self.val_cap
        n = cap.n_frames if max_views is None else min(max_views, cap.n_frames)
        m = view_metrics(self.render_view, cap, n, self.cfg.light.gamma)
        res = {"val/psnr": m["psnr"], "val/ssim": m["ssim"]}
        if m["psnr_eye"] is not None:
            res["val/psnr_eye"] = m["psnr_eye"]
        return res

    def preview(self, path: str, i: int = 0) -> None:
        """PNG: prediction | truth | normal | diffuse | specular | eye opacities (R left, G right, B face)."""
        cap = self.val_cap
        write_preview(path, preview_image(self.render_view(cap, i), cap.full_image(i), self.cfg.light.gamma))

    def as_run(self):
        """This trainer's model as a :class:`eyefast.run.Run` (shared, not copied), with its captures:
        export or evaluate it mid-training."""
        return Run(self.cfg, self.model, self.grid, self.step, self.run_dir,
                   captures={"train": self.train_cap, "val": self.val_cap})

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
            "stage2_mesh": None if self.stage2 is None else self.stage2.state(),
        }

    def save(self, path: str) -> None:
        atomic_save(self.state_dict(), path)
        cams = self.model.cameras
        if cams is not None and os.path.basename(path) == "latest.pth":  # the refined cameras, for other tools
            cap = self.train_cap
            cap.write_transforms(os.path.join(os.path.dirname(path), "transforms_refined.json"),
                                 cams.refine(cap.c2w64.to(self.device), cap.frame_ids))

    def _apply_lr(self, ck: dict) -> None:
        """A --set train.lr=... on resume takes effect (the optimiser state would keep the old rate)."""
        old = config_value(ck.get("config"), "train.lr")
        if old is None or old == self.cfg.train.lr:
            return
        self._say(f"train.lr {self.cfg.train.lr} replaces the checkpoint's {old}")
        base = [base_lr(self.cfg.train, g["name"]) for g in self.optimizer.param_groups]
        for g, lr in zip(self.optimizer.param_groups, base):
            g["initial_lr"] = lr
            g["lr"] = lr * lr_factor(self.cfg.train, self.step, g["name"])
        self.scheduler.base_lrs = base

    def load(self, path: str) -> None:
        """Continues from checkpoint ``path``: weights, grid, step, optimiser, scheduler, random state,
        and the stage-2 mesh."""
        ck = load_checkpoint(path, map_location=self.device)
        for k in ("optimizer", "scheduler"):
            if not isinstance(ck.get(k), dict):
                raise ValueError(f"checkpoint '{path}' has no '{k}' entry, so training cannot continue from it "
                                 "(it holds the weights alone): export or evaluate it, or train a new run")
        check_structure(ck, self.cfg, path)
        try:
            self.model.load_state_dict(ck["model"])
            self.grid.load_state_dict(ck["grid"])
        except RuntimeError as e:
            raise ValueError(f"checkpoint '{path}' does not match this config's model: {e}") from None
        self.step = int(ck["step"])
        self.metrics = dict(ck.get("metrics", {}))
        seed = config_value(ck.get("config"), "train.seed")
        if seed is not None:
            self.seed = int(seed)
        # the hash levels the last completed step trained with (rendering, export and resume agree)
        t = self.cfg.train
        self.model.set_progress(max(self.step - 1, 0), t.init_level, t.level_grow_iter)
        self.stage2 = None
        if ck.get("stage2_mesh") is not None:
            self.stage2 = Stage2(ck["stage2_mesh"]["verts"], ck["stage2_mesh"]["faces"], self._stage2_capture(),
                                 self.seed)
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
        self.resumed_from = path

    # ------------------------------------------------------------------ the loop
    def fit(self, max_steps: int | None = None, overwrite: bool = False, callback=None) -> dict:
        """Trains until ``max_steps`` (default ``train.max_steps``); returns the last metrics.

        A fresh trainer (step 0, nothing loaded) refuses a run folder that already holds a run
        (:class:`eyefast.training.run_folder.RunExistsError`) unless ``overwrite``. While it trains, rank 0
        holds the folder's lock (:class:`eyefast.training.run_folder.RunLock`): a second training into the
        same folder is refused (``RunLockedError``). Checkpoint temporaries a killed training left there are
        removed first. After a Ctrl-C, ``self.interrupted`` is True (``latest.pth`` is saved). ``callback(trainer)``,
        when given, runs on rank 0 after every step, between steps (e.g. the live viewer of
        ``eyefast train --view``, which renders there); it decides itself how often to do work."""
        max_steps = self.cfg.train.max_steps if max_steps is None else max_steps
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"fit: max_steps must be an integer >= 1, got {max_steps!r}")
        self._stop = False
        self.interrupted = False
        lock = RunLock(self.run_dir).acquire() if self.rank == 0 else None
        try:
            if lock is not None:
                remove_stale_temporaries(self.run_dir)
                prepare_run_folder(self.run_dir, resumed=self.step > 0 or self.resumed_from is not None,
                                   overwrite=overwrite)
                config_mod.save(self.cfg, os.path.join(self.run_dir, "config.yaml"))
            m = self._fit_loop(max_steps, callback)
            self.interrupted = bool(self._stop) and self.step < max_steps
            return m
        finally:
            if lock is not None:
                lock.release()

    def _fit_loop(self, max_steps: int, callback=None) -> dict:
        """fit()'s loop, in a prepared and locked run folder."""
        cfg = self.cfg
        t = cfg.train
        lead = self.rank == 0  # only rank 0 writes checkpoints, logs, previews
        scalars = Scalars(self.run_dir, self.step if self.step > 0 else None) if lead else None
        from tqdm import tqdm

        bar = tqdm(total=max_steps, initial=self.step, disable=self.quiet, desc="train", dynamic_ncols=True)
        prev = signal.getsignal(signal.SIGINT)
        in_main = threading.current_thread() is threading.main_thread()

        def on_sigint(signum, frame):
            if self._stop:  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop = True
            self._say("Ctrl-C: finishing this step, saving latest.pth (press again to abort)")

        if in_main:
            signal.signal(signal.SIGINT, on_sigint)
        t0 = time.perf_counter()
        rays_done = 0
        every = int(t.log_every)
        gmax = None  # the largest gradient norm since the last read (a spike between logs shows)
        try:
            while self.step < max_steps and not self._collective_stop():
                res = self.step_async()
                rays_done += res["n_rays"] * self.world
                step = self.step
                if res.get("grad_norm") is not None:
                    gmax = res["grad_norm"] if gmax is None else torch.maximum(gmax, res["grad_norm"])
                if lead:
                    bar.update(1)
                    if callback is not None:
                        callback(self)
                latest_every = min(t.save_freq, 100) if t.save_freq > 0 else 100
                val_now = t.val_freq > 0 and (step % t.val_freq == 0 or step == max_steps)
                vis_now = t.vis_freq > 0 and (step % t.vis_freq == 0 or step == max_steps)
                save_now = (t.save_freq > 0 and step % t.save_freq == 0) or step % latest_every == 0 or step == max_steps
                if not (step % every == 0 or step == max_steps or val_now or vis_now or save_now or self._stop):
                    continue  # nothing read from the device this step
                if gmax is not None:
                    res["grad_norm_max"] = gmax
                    gmax = None
                res = self._read(res)  # one host sync; raises if a step since the last read was not finite
                res["rays_per_s"] = rays_done / max(time.perf_counter() - t0, 1e-9)
                self.metrics = dict(res)
                if not lead:
                    continue
                scalars.log(step, {f"train/{k}": v for k, v in res.items()})
                bar.set_postfix(loss=f"{res['loss']:.4f}", psnr=f"{res['psnr']:.2f}",
                                rays_s=f"{res['rays_per_s']:.0f}", refresh=False)
                if val_now:
                    v = self.validate(max_views=8)
                    self.metrics.update(v)
                    scalars.log(step, v)
                    with open(os.path.join(self.run_dir, "val.json"), "w") as f:
                        json.dump({"step": step, **v}, f, indent=1)
                    bar.write(f"step {step}: " + ", ".join(f"{k} {x:.3f}" for k, x in v.items()))
                if vis_now:
                    self.preview(os.path.join(self.run_dir, "vis", f"step_{step:06d}.png"))
                if t.save_freq > 0 and step % t.save_freq == 0:
                    self.save(os.path.join(self.run_dir, "checkpoints", f"step_{step:06d}.pth"))
                if step % latest_every == 0 or step == max_steps:
                    self.save(os.path.join(self.run_dir, "latest.pth"))
            if self._stop and lead:
                self.save(os.path.join(self.run_dir, "latest.pth"))
                self._say(f"stopped at step {self.step}; resume with --resume {os.path.join(self.run_dir, 'latest.pth')}")
        finally:
            bar.close()
            if scalars is not None:
                scalars.close()
            if in_main:
                signal.signal(signal.SIGINT, prev)
        return self.metrics

    def _collective_stop(self) -> bool:
        """Ctrl-C on any rank stops all ranks after the same step."""
        self._stop = distributed.any_rank(self._stop, self.device)
        return self._stop
