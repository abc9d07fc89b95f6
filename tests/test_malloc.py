"""eyefast._malloc: the trainer's glibc malloc settings."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, **env):
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tune_applies_once_and_can_be_turned_off():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    code = "from eyefast.core import _malloc; print(_malloc.tune(), _malloc.tune())"
    assert _run(code) == "True True"
    assert _run(code, EYEFAST_MALLOC_TUNING="0") == "False False"


def test_train_cli_tunes_malloc(monkeypatch):
    from eyefast.cli import train
    from eyefast.core import _malloc

    calls = []
    monkeypatch.setattr(_malloc, "tune", lambda: calls.append(1) or True)
    with pytest.raises(SystemExit):
        train.main(["--help"])
    assert calls == [1]
