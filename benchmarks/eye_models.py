"""Sphere vs refractive eye on the refractive synthetic capture (issue target: ``psnr_eye`` at least
2 dB higher with ``eye_model: cornea``).

    python -m benchmarks.eye_models [--data data/refr] [--workspace workspace/eye_models]
                                    [--threads N] [--json benchmarks/results/....json]

Generates ``python -m eyefast.synth DATA --preset demo --refractive`` when DATA has no capture,
trains the demo schedule twice on it (``--set eye_model=sphere`` and ``eye_model=cornea``, same
seed), evaluates both on the validation views and prints one table. Each training is a separate
``python -m eyefast.train`` process (the command a user runs); an existing finished run is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

MODELS = ("sphere", "cornea")


def _run(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.eye_models", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/refr")
    ap.add_argument("--workspace", default="workspace/eye_models")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of each training (default: all)")
    ap.add_argument("--max-steps", type=int, default=None, help="shorter schedule (default: the capture's config)")
    ap.add_argument("--seed", type=int, default=None, help="train.seed of both runs (default: the config's)")
    ap.add_argument("--json", default=None, help="write the table's numbers here")
    a = ap.parse_args(argv)
    py = sys.executable
    if not os.path.isfile(os.path.join(a.data, "transforms.json")):
        _run([py, "-m", "eyefast.synth", a.data, "--preset", "demo", "--refractive"])
    res = {}
    for m in MODELS:
        # one folder per seed: an existing run is resumed (a finished one returns at once) and keeps its seed
        ws = os.path.join(a.workspace, m) if a.seed is None else os.path.join(a.workspace, f"seed{a.seed}", m)
        run = os.path.join(ws, "run")
        cmd = [py, "-m", "eyefast.train", os.path.join(a.data, "config.yaml"), "--workspace", ws, "--quiet",
               "--set", f"eye_model={m}", "--set", "name=run"]
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        if a.max_steps:
            cmd += ["--max-steps", str(a.max_steps)]
        if a.seed is not None:
            cmd += ["--set", f"train.seed={a.seed}"]
        wall = os.path.join(ws, "train_wall.json")
        if os.path.isfile(os.path.join(run, "latest.pth")):  # resumes an interrupted run, or returns at once
            cmd += ["--resume", os.path.join(run, "latest.pth")]
        t0 = time.time()
        _run(cmd)
        train_s = time.time() - t0
        if os.path.isfile(wall):  # the time of the earlier sessions of this run
            with open(wall) as fh:
                train_s += json.load(fh)["train_wall_s"]
        with open(wall, "w") as fh:
            json.dump({"train_wall_s": train_s}, fh)
        out = os.path.join(ws, "eval.json")
        _run([py, "-m", "eyefast.evaluate", "--workspace", run, "--json", out])
        with open(out) as fh:
            res[m] = {**json.load(fh), "train_wall_s": round(train_s, 1)}
    d = res["cornea"]["psnr_eye"] - res["sphere"]["psnr_eye"]
    rows = [("PSNR [dB]", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.4f}"), ("PSNR eye pixels [dB]", "psnr_eye", "{:.2f}"),
            ("eye centre error / r", "eye_center_error_rel", "{:.1%}"), ("train wall s", "train_wall_s", "{:.0f}")]
    print(f"\nrefractive capture {a.data}: eye_model sphere vs cornea ({platform.machine()}, torch {torch.__version__})")
    print(f"{'':24s}{'sphere':>10s}{'cornea':>10s}")
    for name, key, fmt in rows:
        vals = [res[m].get(key) for m in MODELS]
        print(f"{name:24s}" + "".join(f"{(fmt.format(v) if v is not None else '-'):>10s}" for v in vals))
    print(f"cornea - sphere on eye pixels: {d:+.2f} dB (target +2 dB: {'met' if d >= 2.0 else 'NOT met'})")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as fh:
            json.dump({"data": a.data, "results": res, "psnr_eye_gain_db": d, "torch": torch.__version__}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
