"""The wheel: `python -m build --wheel --no-isolation` makes a wheel whose eyefast._C is prebuilt, and
that wheel, installed into a fresh virtual environment that has torch, generates a capture and trains
with no compiler on PATH (slow: it builds the wheel and a venv, ~2 minutes)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_wheel_installs_and_trains_without_a_compiler(tmp_path):
    dist = tmp_path / "dist"
    env = {**os.environ, "MAX_JOBS": os.environ.get("MAX_JOBS", str(os.cpu_count() or 2))}
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, ROOT], cwd=ROOT, env=env)
    wheels = glob.glob(str(dist / "eyefast-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert any(n.startswith("eyefast/_C") and n.endswith(".so") for n in names), "the wheel has no prebuilt _C"
    assert not any(n.startswith(("benchmarks/", "tests/")) for n in names), "benchmarks/tests are not packages"
    assert any(n.startswith("eyefast/cli/") for n in names) and any(n.endswith("entry_points.txt") for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    py, pip = venv / "bin" / "python", [venv / "bin" / "python", "-m", "pip", "install", "-q"]
    _run([*pip, f"torch=={torch.__version__.split('+')[0]}"])  # a venv that already has torch
    _run([*pip, wheels[0]])
    # no compiler, no source tree: PATH holds the venv alone, the cwd is elsewhere, no just-in-time build
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CC", "CXX", "CUDA_HOME")}
    clean.update(PATH=str(venv / "bin"), EYEFAST_NO_JIT="1", HOME=str(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    r = _run([py, "-c", "import eyefast, eyefast.core._ext as e; print(eyefast.__file__); print(e.load().__file__)"],
             cwd=work, env=clean)
    assert str(venv) in r.stdout and ROOT not in r.stdout, r.stdout
    eyefast = venv / "bin" / "eyefast"
    _run([eyefast, "synth", work / "cap", "--preset", "tiny"], cwd=work, env=clean)
    _run([eyefast, "train", work / "cap" / "config.yaml", "--max-steps", "5", "--device", "cpu", "--workspace",
          work / "runs", "--quiet", "--set", "train.val_freq=0", "--set", "train.vis_freq=0"], cwd=work, env=clean)
    ck = torch.load(work / "runs" / "synth_tiny" / "latest.pth", weights_only=True)
    assert ck["step"] == 5
