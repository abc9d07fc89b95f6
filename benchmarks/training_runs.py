"""Train-and-evaluate runs for the quality studies (``benchmarks.eye_models``, ``benchmarks.demo_seeds``).

Each training is a separate ``python -m eyefast.train`` process (the command a user runs). A run
folder that already holds ``latest.pth`` is resumed: an interrupted study continues, a finished run
returns at once. The wall time of every session of a run adds up in ``train_wall.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def run_cmd(cmd) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def train_and_evaluate(config: str, ws: str, sets=(), threads: int | None = None,
                       max_steps: int | None = None, eval_capture: str | None = None, export: bool = False) -> dict:
    """Train ``config`` into ``ws/run`` (``--set`` overrides ``sets``), evaluate it on the validation
    views (of ``eval_capture`` when given, else the run's capture) and return ``eval.json``'s numbers plus
    ``train_wall_s``. ``export``: export the run first (a small texture), so that the evaluation has the
    surface error of its mesh."""
    py = sys.executable
    run = os.path.join(ws, "run")
    cmd = [py, "-m", "eyefast.train", config, "--workspace", ws, "--quiet", "--set", "name=run"]
    for s in sets:
        cmd += ["--set", s]
    if threads:
        cmd += ["--threads", str(threads)]
    if max_steps:
        cmd += ["--max-steps", str(max_steps)]
    if os.path.isfile(os.path.join(run, "latest.pth")):  # resumes an interrupted run, or returns at once
        cmd += ["--resume", os.path.join(run, "latest.pth")]
    wall = os.path.join(ws, "train_wall.json")
    t0 = time.time()
    run_cmd(cmd)
    train_s = time.time() - t0
    if os.path.isfile(wall):  # the time of the earlier sessions of this run
        with open(wall) as fh:
            train_s += json.load(fh)["train_wall_s"]
    with open(wall, "w") as fh:
        json.dump({"train_wall_s": train_s}, fh)
    if export and not os.path.isfile(os.path.join(run, "export", "mesh.obj")):
        run_cmd([py, "-m", "eyefast.export", "--run", run, "--uv-size", "256", "--mc-res", "128", "--quiet"])
    out = os.path.join(ws, "eval.json")
    run_cmd([py, "-m", "eyefast.evaluate", "--run", run, "--json", out,
             *(["--capture", eval_capture] if eval_capture else [])])
    with open(out) as fh:
        return {**json.load(fh), "train_wall_s": round(train_s, 1)}


def write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=1)
