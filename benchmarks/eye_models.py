"""Sphere vs refractive eye on the refractive synthetic capture (issue target: ``psnr_eye`` at least
2 dB higher with ``eye_model: cornea``).

    python -m benchmarks.eye_models [--data data/refr] [--workspace workspace/eye_models]
                                    [--threads N] [--json benchmarks/results/....json]

Generates ``python -m eyefast.synth DATA --preset demo --refractive`` when DATA has no capture,
trains the demo schedule twice on it (``--set eye_model=sphere`` and ``eye_model=cornea``, same
seed), evaluates both on the validation views and prints one table (runs: ``benchmarks.training_runs``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import torch

from .training_runs import run_cmd, train_and_evaluate, write_json

MODELS = ("sphere", "cornea")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.eye_models", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/refr")
    ap.add_argument("--workspace", default="workspace/eye_models")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of each training (default: all)")
    ap.add_argument("--max-steps", type=int, default=None, help="shorter schedule (default: the capture's config)")
    ap.add_argument("--seed", type=int, default=None, help="train.seed of both runs (default: the config's)")
    ap.add_argument("--json", default=None, help="write the table's numbers here")
    a = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(a.data, "transforms.json")):
        run_cmd([sys.executable, "-m", "eyefast.synth", a.data, "--preset", "demo", "--refractive"])
    res = {}
    for m in MODELS:
        # one folder per seed: an existing run is resumed (a finished one returns at once) and keeps its seed
        ws = os.path.join(a.workspace, m) if a.seed is None else os.path.join(a.workspace, f"seed{a.seed}", m)
        sets = [f"eye_model={m}"] + ([f"train.seed={a.seed}"] if a.seed is not None else [])
        res[m] = train_and_evaluate(os.path.join(a.data, "config.yaml"), ws, sets, a.threads, a.max_steps)
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
        write_json(a.json, {"data": a.data, "results": res, "psnr_eye_gain_db": d, "torch": torch.__version__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
