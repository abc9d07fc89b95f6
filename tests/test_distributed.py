"""torchrun data parallelism on the CPU (Gloo): 2 processes vs 1 at the same global ray batch."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from eyefast.data import synth
from eyefast.checkpoint import load_checkpoint

ARGS = ["--device", "cpu", "--max-steps", "40", "--quiet",
        "--set", "renderer.sample_batch_size=1048576",  # the ray count stays at max_num_ray: a fixed batch
        "--set", "renderer.max_num_ray=512", "--set", "train.val_freq=0", "--set", "train.vis_freq=0",
        "--set", "train.save_freq=40"]


def _losses(run):
    with open(os.path.join(run, "scalars.csv"), newline="") as f:
        return {int(r["step"]): float(r["value"]) for r in csv.DictReader(f) if r["tag"] == "train/loss"}


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with Gloo is not available")
def test_two_processes_match_one(tmp_path):
    cap = tmp_path / "cap"
    synth.generate(str(cap), preset="tiny")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cfg = str(cap / "config.yaml")
    one = subprocess.run([sys.executable, "-m", "eyefast.train", cfg, "--workspace", str(tmp_path / "one"), *ARGS],
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "eyefast.train",
                          cfg, "--workspace", str(tmp_path / "two"), *ARGS],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    run1, run2 = tmp_path / "one" / "synth_tiny", tmp_path / "two" / "synth_tiny"
    # only rank 0 writes: one checkpoint folder, one log
    assert sorted(os.listdir(run2 / "checkpoints")) == ["step_000040.pth"]
    ck = load_checkpoint(str(run2 / "latest.pth"))
    assert ck["step"] == 40 and ck["n_rays"] == 512
    l1, l2 = _losses(run1), _losses(run2)
    m1 = sum(l1[s] for s in (20, 30, 40)) / 3
    m2 = sum(l2[s] for s in (20, 30, 40)) / 3
    assert abs(m2 - m1) <= 0.1 * m1, (l1, l2)
    assert m2 < l2[10]  # the 2-process run learns
