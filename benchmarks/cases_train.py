"""Benchmark case ``train_step``: one full training step (sampling, fwd, bwd incl. the eikonal double
backward, Adam) at the demo config, eyefast's kernels vs the PyTorch reference ops (config key
``ops_backend``). Both trainers start from the same seed and render the same fixed number of rays, so
they march the same samples; the process's malloc is tuned as the trainer's CLI tunes it
(eyefast/_malloc.py), for both."""

from __future__ import annotations

import functools
import os
import tempfile

import torch

from .common import Case

N_RAYS = 1024


@functools.lru_cache(maxsize=None)
def _capture(preset: str) -> str:
    from eyefast import synth

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", preset)
    if not os.path.isfile(os.path.join(root, "transforms.json")):
        root = os.path.join(tempfile.mkdtemp(prefix="eyefast-bench-"), preset)
        synth.generate(root, preset=preset)
    return root


@functools.lru_cache(maxsize=None)
def _trainer(preset: str, backend: str, device: str):
    from eyefast import _malloc, config
    from eyefast.train import Trainer

    # The process as `python -m eyefast.train` sets it up (malloc keeps freed activations), for
    # both backends alike: they are timed in this same process.
    _malloc.tune()

    cfg = config.load(os.path.join(_capture(preset), "config.yaml"),
                      [f"device={device}", f"ops_backend={backend}", f"workspace={tempfile.mkdtemp()}",
                       "train.warmup_steps=0", "train.mesh_render=false"])
    tr = Trainer(cfg, quiet=True)
    # A steady state like a trained run's: sharp density (beta 0.01, trained runs reach ~0.002), the
    # occupancy grid built from it once, all hash levels active, no grid refresh inside the timing.
    tr.step = 1 << 20
    assert not tr.in_stage2()
    with torch.no_grad():
        tr.model.beta_param.fill_(0.01)
    tr.grid._update(0, tr._occ_eval)
    tr.cfg.renderer.grid_update_freq = 1 << 30
    return tr


def _step(preset, backend, device):
    tr = _trainer(preset, backend, device)
    tr.n_rays = N_RAYS
    return tr.train_step()


def cases(device: str, quick: bool):
    preset = "tiny" if quick else "demo"
    return [Case(op="train_step", n=N_RAYS, device=device,
                 eyefast=lambda: _step(preset, "eyefast", device),
                 reference=lambda: _step(preset, "reference", device),
                 bytes_moved=0,
                 note=f"{preset} config, {N_RAYS} rays, all levels active, fwd+bwd+Adam")]
