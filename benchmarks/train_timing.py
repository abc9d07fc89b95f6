"""Whole training runs, timed: ms per step, host syncs per step and peak memory, on any device.

    python -m benchmarks.train_timing --device cuda --steps 300 --json OUT.json              # the demo
    python -m benchmarks.train_timing --device cuda --views 300 --size 720x960 --rays 8192 \\
        --steps 50 --json OUT.json                                                         # CoRA's scale

The demo case trains the built-in demo capture (``data/demo`` when it exists, else generated) with
its own config. The CoRA-scale case makes a synthetic capture of ``--views`` views at ``--size``
(rendered at 1/``--upscale`` of the size and upscaled, so that making it takes seconds, not an hour:
the step's cost depends on the rays and samples, not on the pixels' detail) and trains it with
``--rays`` rays per step (``renderer.max_num_ray``; CoRA trains with 8192).

Each record: the device, the capture (views, size, load time, the memory its pixels take), the steps
timed (after ``--warmup`` steps; the scalars read every ``train.log_every`` steps as in a run),
``ms_per_step``, ``host_syncs_per_step`` (eyefast.core.syncs.HostSyncCounter on one step), the
samples and rays of the last step, and the peak memory (``torch.cuda.max_memory_allocated`` on a GPU,
the process's peak resident set on the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch

from .common import device_name, sync


def _demo_capture() -> str:
    from eyefast.data import synth

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "demo")
    if not os.path.isfile(os.path.join(root, "transforms.json")):
        root = os.path.join(tempfile.mkdtemp(prefix="eyefast-timing-"), "demo")
        synth.generate(root, preset="demo")
    return root


def upscaled_capture(views: int, size: tuple[int, int], upscale: int, out: str) -> str:
    """A synthetic capture of ``views`` views at ``size`` (W, H): rendered at ``size / upscale`` and
    upscaled (images bilinear, masks nearest; the intrinsics scaled alike)."""
    import imageio.v3 as iio

    from eyefast.data import synth

    W, H = size
    small = os.path.join(out, "small")
    synth.generate(small, preset="demo", views=views, resolution=(W // upscale, H // upscale))
    big = os.path.join(out, "capture")
    with open(os.path.join(small, "transforms.json")) as fh:
        meta = json.load(fh)
    k = upscale
    meta.update(w=meta["w"] * k, h=meta["h"] * k, fl_x=meta["fl_x"] * k, fl_y=meta["fl_y"] * k, cx=meta["cx"] * k,
                cy=meta["cy"] * k)
    for sub in ("image", "mask", "hair_mask", "leye_mask", "reye_mask", "specular_bfm"):
        os.makedirs(os.path.join(big, sub), exist_ok=True)
        for f in sorted(os.listdir(os.path.join(small, sub))):
            a = torch.from_numpy(np.asarray(iio.imread(os.path.join(small, sub, f)))).float()
            a = a[..., None] if a.dim() == 2 else a
            mode = "bilinear" if sub in ("image", "specular_bfm") else "nearest"
            kw = {"align_corners": False} if mode == "bilinear" else {}
            b = torch.nn.functional.interpolate(a.permute(2, 0, 1)[None], scale_factor=k, mode=mode, **kw)[0]
            b = b.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
            iio.imwrite(os.path.join(big, sub, f), b[..., 0] if b.shape[-1] == 1 else b, compress_level=1)
    with open(os.path.join(big, "transforms.json"), "w") as fh:
        json.dump(meta, fh)
    with open(os.path.join(small, "config.yaml")) as fh:
        cfg = fh.read()
    with open(os.path.join(big, "config.yaml"), "w") as fh:
        fh.write(cfg)
    return big


def _peak_memory(device: str) -> dict:
    if device.startswith("cuda"):
        return {"peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)}
    return {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)}


def time_training(capture: str, device: str, steps: int, warmup: int, sets=()) -> dict:
    from eyefast.core.syncs import HostSyncCounter
    from eyefast.data import config as config_mod
    from eyefast.training import Trainer

    ws = tempfile.mkdtemp(prefix="eyefast-timing-ws-")
    cfg = config_mod.load(os.path.join(capture, "config.yaml"),
                          [f"data.meta_path={json.dumps(capture)}", f"device={device}", f"workspace={ws}",
                           "train.val_freq=0", "train.vis_freq=0", "train.save_freq=0", "train.mesh_render=false",
                           *sets])
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    tr = Trainer(cfg, quiet=True)
    load_s = time.perf_counter() - t0
    caps = (tr.train_cap, tr.val_cap)
    pixel_gb = sum(c.images.numel() + sum(m.numel() for m in c.masks.values()) for c in caps) / 2 ** 30
    every = int(cfg.train.log_every)
    for _ in range(warmup):
        res = tr.step_async()
    tr._read(res)
    with HostSyncCounter() as counter:
        tr.step_async()
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        res = tr.step_async()
        if (i + 1) % every == 0:
            tr._read(res)
    last = tr._read(res)
    sync(device)
    ms = (time.perf_counter() - t0) / steps * 1e3
    return {
        "device": device, "device_name": device_name(device), "torch": torch.__version__,
        "capture": {"views": len(tr.train_cap) + len(tr.val_cap), "size": f"{tr.train_cap.W}x{tr.train_cap.H}",
                    "load_s": round(load_s, 2), "pixels_and_masks_gb": round(pixel_gb, 3)},
        "max_num_ray": cfg.renderer.max_num_ray, "sample_batch_size": cfg.renderer.sample_batch_size,
        "warmup_steps": warmup, "steps": steps, "ms_per_step": round(ms, 2),
        "host_syncs_per_step": counter.count, "host_syncs": dict(counter.by_op),
        "last_step": {"n_rays": last["n_rays"], "n_samples": last["n_samples"], "loss": round(last["loss"], 5),
                      "psnr": round(last["psnr"], 3)},
        **_peak_memory(device),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.train_timing", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=100, help="timed steps")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    ap.add_argument("--capture", help="a capture folder with its config.yaml (default: the demo)")
    ap.add_argument("--views", type=int, help="make a synthetic capture of this many views (CoRA's scale: 300)")
    ap.add_argument("--size", default="720x960", help="its images' WxH (default 720x960)")
    ap.add_argument("--upscale", type=int, default=8, help="render at size / UPSCALE, then upscale (default 8)")
    ap.add_argument("--rays", type=int, help="renderer.max_num_ray (CoRA: 8192)")
    ap.add_argument("--set", action="append", default=[], help="config overrides")
    ap.add_argument("--json", help="write the record here")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda but no CUDA device is available")
    sets = list(a.set)
    if a.rays:
        sets += [f"renderer.max_num_ray={a.rays}"]
    t0 = time.perf_counter()
    if a.views:
        W, H = (int(v) for v in a.size.lower().split("x"))
        capture = upscaled_capture(a.views, (W, H), a.upscale, tempfile.mkdtemp(prefix="eyefast-cora-scale-"))
    else:
        capture = a.capture or _demo_capture()
    make_s = time.perf_counter() - t0
    rec = time_training(capture, a.device, a.steps, a.warmup, sets)
    rec["case"] = f"{a.views} views at {a.size}" if a.views else ("demo" if not a.capture else a.capture)
    rec["capture"]["make_s"] = round(make_s, 1)
    print(json.dumps(rec, indent=1))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as fh:
            json.dump(rec, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
