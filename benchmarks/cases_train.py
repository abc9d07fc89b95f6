"""Benchmark cases ``train_step``: one full training step (sampling with pruning, fwd, bwd incl. the
eikonal double backward, Adam) at the demo config, eyefast's kernels vs the PyTorch reference ops
(config key ``ops_backend``).

Both backends time the identical step: one state is prepared, loaded into an eyefast and a reference
trainer, and restored (untimed) before every repetition, so every repetition of either backend
marches and shades the same samples. (Timing consecutive steps instead times a different step each
repetition: from the sphere initialisation the sample count per ray grows step after step.)

* ``train_step``: the working point of a demo run. From the setup state below, 12 training steps
  with the trainer's adaptive ray count (docs/method.md section 4: rays per step such that a step has about
  ``renderer.sample_batch_size`` = 65536 samples), then the 13th step is timed.
* ``train_step+init``: the first step from the setup state with 1024 rays (about 40k samples, a
  still-spherical SDF): less work per step, more of it fixed cost.

``host_syncs_per_step``: the host syncs of the eyefast step (eyefast.core.syncs.HostSyncCounter).

Setup state: sharp density (beta 0.01; trained runs reach ~0.002), the occupancy grid built from it
once, all hash levels active, no grid refresh inside the timing. The process's malloc is tuned as
the trainer's CLI tunes it (eyefast/core/_malloc.py), for both backends.
"""

from __future__ import annotations

import copy
import functools
import os
import tempfile

import torch

from .common import Case

N_RAYS_INIT = 1024
WARM_STEPS = 12


@functools.lru_cache(maxsize=None)
def _capture(preset: str) -> str:
    from eyefast.data import synth

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", preset)
    if not os.path.isfile(os.path.join(root, "transforms.json")):
        root = os.path.join(tempfile.mkdtemp(prefix="eyefast-bench-"), preset)
        synth.generate(root, preset=preset)
    return root


@functools.lru_cache(maxsize=None)
def _trainer(preset: str, backend: str, device: str):
    from eyefast.core import _malloc
    from eyefast.data import config
    from eyefast.training import Trainer

    # The process as `python -m eyefast.train` sets it up (malloc keeps freed activations), for
    # both backends alike: they are timed in this same process.
    _malloc.tune()

    cfg = config.load(os.path.join(_capture(preset), "config.yaml"),
                      [f"device={device}", f"ops_backend={backend}", f"workspace={tempfile.mkdtemp()}",
                       "train.warmup_steps=0", "train.mesh_render=false"])
    tr = Trainer(cfg, quiet=True)
    tr.step = 1 << 20
    assert not tr.in_stage2()
    with torch.no_grad():
        tr.model.beta_param.fill_(0.01)
    tr.grid._update(0, tr._occ_eval)
    tr.cfg.renderer.grid_update_freq = 1 << 30
    return tr


def _snapshot(tr) -> dict:
    return copy.deepcopy({"model": tr.model.state_dict(), "optimizer": tr.optimizer.state_dict(),
                          "scheduler": tr.scheduler.state_dict(), "grid": tr.grid.state_dict(), "step": tr.step,
                          "n_rays": tr.n_rays})


def _restore(tr, s: dict) -> None:
    tr.model.load_state_dict(s["model"])  # copies into the parameters
    # Adam's load_state_dict keeps the given tensors (no copy) when dtype and device match: a copy,
    # or the timed steps would update the snapshot's moments in place.
    tr.optimizer.load_state_dict(copy.deepcopy(s["optimizer"]))
    tr.scheduler.load_state_dict(s["scheduler"])
    tr.grid.load_state_dict(s["grid"])
    # Loading bumps the grid's version, which invalidates eyefast's packed bitfield cache: repack it
    # here, untimed (a training step between grid refreshes finds it packed).
    tr.grid.bitfield, tr.grid.coarse_bitfield
    tr.step, tr.n_rays = s["step"], s["n_rays"]


@functools.lru_cache(maxsize=None)
def _setup_state(preset: str, device: str) -> dict:
    return _snapshot(_trainer(preset, "eyefast", device))  # before any step


@functools.lru_cache(maxsize=None)
def _state(preset: str, device: str, which: str) -> dict:
    """The state a timed step starts from (prepared on the eyefast trainer from the setup state)."""
    setup = _setup_state(preset, device)
    tr = _trainer(preset, "eyefast", device)
    _restore(tr, setup)
    tr.n_rays = N_RAYS_INIT
    if which == "steady":
        for _ in range(WARM_STEPS):
            tr.train_step()
    return _snapshot(tr)


def _case(preset: str, device: str, which: str, op: str, note: str) -> Case:
    def setup(backend):
        return lambda: _restore(_trainer(preset, backend, device), _state(preset, device, which))

    def step(backend):
        return lambda: _trainer(preset, backend, device).train_step()

    info = {}

    def samples():  # filled on first use (building the state trains WARM_STEPS steps)
        from eyefast.core.syncs import HostSyncCounter

        tr = _trainer(preset, "eyefast", device)
        _restore(tr, _state(preset, device, which))
        info["n_rays"] = tr.n_rays
        with HostSyncCounter() as c:  # what a GPU would wait for in this step (the same count on any device)
            res = tr.step_async()
        info["n_samples"] = res["n_samples"]
        info["host_syncs_per_step"] = c.count

    c = Case(op=op, n=0, device=device, eyefast=step("eyefast"), reference=step("reference"), bytes_moved=0,
             note=note, info=info, eyefast_setup=setup("eyefast"), reference_setup=setup("reference"))
    first = c.eyefast_setup

    def setup_once():
        if not info:
            samples()
            c.n = info["n_rays"]
        first()

    c.eyefast_setup = setup_once
    return c


def cases(device: str, quick: bool):
    preset = "tiny" if quick else "demo"
    return [
        _case(preset, device, "steady", "train_step",
              f"{preset} config, identical restored step after {WARM_STEPS} adaptive-ray steps (~sample_batch_size "
              "samples), all levels active, fwd+bwd+Adam"),
        _case(preset, device, "init", "train_step+init",
              f"{preset} config, identical restored first step, {N_RAYS_INIT} rays, all levels active, fwd+bwd+Adam"),
    ]
