"""A trained run, loaded for inference: ``Run.load("workspace/synth_demo")``.

A run folder ``<workspace>/<name>/`` is what :mod:`eyefast.training` writes: ``config.yaml``,
``latest.pth``, ``checkpoints/``. :class:`Run` holds the model and the occupancy grid of one of its
checkpoints, with no optimiser and no capture on the device; the capture's views load on first use
(:meth:`Run.capture`). Export, evaluation and rendering start from here.
"""

from __future__ import annotations

import json
import os

import torch

from .checkpoint import check_structure, load_checkpoint
from .scene import backend as backends
from .core.device import parse_device
from .data import config as config_mod
from .data.capture import Capture
from .scene.model import HeadModel
from .scene.render import light_of, make_grid, render_view, step_size

__all__ = ["Run", "RunError"]


class RunError(FileNotFoundError):
    """A folder is not a run folder, or lacks the checkpoint asked for (the message names it)."""


class Run:
    """A trained head model: ``cfg`` (the run's config), ``model`` (:class:`eyefast.scene.HeadModel`,
    eval mode), ``grid`` (its occupancy grid), ``step`` (of the checkpoint), ``device``, ``folder``
    (the run folder, or None), ``ops`` (the config's op backend), ``light`` and ``step_size``."""

    def __init__(self, cfg, model: HeadModel, grid, step: int, folder: str | None = None,
                 captures: dict | None = None):
        self.cfg, self.model, self.grid, self.step = cfg, model, grid, int(step)
        self.folder = folder
        self.device = next(model.parameters()).device
        self.ops = backends.get(cfg.ops_backend)
        self.light = light_of(cfg)
        self.step_size = step_size(cfg)
        self._captures: dict = dict(captures or {})  # split -> Capture, already loaded

    @classmethod
    def load(cls, folder: str | None = None, *, config: str | None = None, ckpt: str | None = None,
             capture: str | None = None, device=None, overrides=()) -> "Run":
        """Loads ``folder``'s ``config.yaml`` and ``latest.pth`` (or ``ckpt``); or, without a folder,
        ``config`` and ``ckpt``. ``capture`` replaces the config's ``data.meta_path``; ``overrides`` are
        ``section.key=value`` strings; ``device`` defaults to the config's."""
        ov = list(overrides)
        if folder is not None:
            folder = os.path.abspath(folder)
            if not os.path.isdir(folder):
                raise RunError(f"run folder '{folder}' does not exist")
            config = config or os.path.join(folder, "config.yaml")
            if not os.path.isfile(config):
                raise RunError(f"'{folder}' is not an eyefast run folder: no config.yaml "
                               "(expected <workspace>/<name>, written by eyefast train)")
            ckpt = ckpt or os.path.join(folder, "latest.pth")
            ov.insert(0, f"workspace={json.dumps(os.path.dirname(folder))}")
        elif config is None or ckpt is None:
            raise ValueError("Run.load: give a run folder, or both config and ckpt")
        if capture is not None:
            ov.append(f"data.meta_path={json.dumps(os.path.abspath(capture))}")
        if device is not None:
            ov.append(f"device={json.dumps(str(device))}")  # a JSON string is a YAML string
        cfg = config_mod.load(config, ov)
        dev = parse_device(cfg.device)
        ck = load_checkpoint(ckpt, map_location=dev)
        check_structure(ck, cfg, ckpt)
        n_frames = int(ck["model"]["sh_occlusion"].shape[0]) if "sh_occlusion" in ck["model"] else 1
        model = HeadModel(cfg, backends.get(cfg.ops_backend), n_frames).to(dev)
        grid = make_grid(cfg).to(dev)
        try:
            model.load_state_dict(ck["model"])
            grid.load_state_dict(ck["grid"])
        except RuntimeError as e:
            raise ValueError(f"checkpoint '{ckpt}' does not match this config's model: {e}") from None
        step = int(ck["step"])
        # the hash levels the last completed step trained with (rendering, export and resume agree)
        t = cfg.train
        model.set_progress(max(step - 1, 0), t.init_level, t.level_grow_iter)
        model.eval()
        grid.eval()
        return cls(cfg, model, grid, step, folder)

    def capture(self, split: str = "train") -> Capture:
        """The run's capture (``data.meta_path``), split ``train`` or ``val``, on the run's device;
        loaded on first use. With camera refinement (``train.camera_refine``) the training frames come
        with their refined cameras."""
        if split not in self._captures:
            cap = Capture.from_config(self.cfg, split, device=self.device)
            cams = getattr(self.model, "cameras", None)
            if cams is not None and split == "train":
                cap = cap.with_cameras(cams.refine(cap.c2w64.to(self.device), cap.frame_ids))
            self._captures[split] = cap
        return self._captures[split]

    @torch.no_grad()
    def render_view(self, cap: Capture, i: int) -> dict:
        """Frame ``i`` of ``cap`` rendered with the run's light (see :func:`eyefast.scene.render.render_image`)."""
        return render_view(self.model, self.grid, self.ops, self.cfg, cap, i)

    def __repr__(self):
        return f"Run({self.folder or self.cfg.path!r}, step={self.step}, device={self.device})"
