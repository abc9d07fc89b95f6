"""The `eyefast` command: every subcommand's --help, --print-config, the seed's `python -m eyefast.X`
spellings, and training's refusal to replace an existing run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from eyefast.checkpoint import load_checkpoint
from eyefast.cli import COMMANDS, main as eyefast_main
from eyefast.data import config as config_mod

QUIET_TRAIN = ["--device", "cpu", "--quiet", "--set", "train.val_freq=0", "--set", "train.vis_freq=0"]


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_every_subcommand_has_help(cmd, capsys):
    assert eyefast_main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage" in out.lower() and len(out.splitlines()) > 3


def test_top_level_help_lists_the_commands_and_rejects_unknown_ones(capsys):
    assert eyefast_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)
    assert eyefast_main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
    assert eyefast_main([]) == 2  # no command: the usage, and a failure status


def test_the_console_script_and_python_m_spellings_run():
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    for cmd in (["-m", "eyefast", "--help"], ["-m", "eyefast.train", "--help"], ["-m", "eyefast.export", "--help"],
                ["-m", "eyefast.evaluate", "--help"], ["-m", "eyefast.synth", "--help"], ["-m", "eyefast.tools", "--help"]):
        r = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0 and "usage" in r.stdout.lower(), (cmd, r.stderr)
    assert "python -m eyefast.train" in subprocess.run([sys.executable, "-m", "eyefast.train", "--help"],
                                                       capture_output=True, text=True, env=env).stdout


def test_print_config_fills_in_the_defaults(tiny, capsys):
    cfgp = os.path.join(tiny, "config.yaml")
    assert eyefast_main(["train", cfgp, "--print-config", "--set", "train.max_steps=7"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    full = config_mod.load(cfgp, ["train.max_steps=7"]).to_dict()
    assert printed == full
    assert printed["train"]["max_steps"] == 7 and "eye_grad_clip" in printed["train"]  # a default the file lacks
    with open(cfgp) as fh:
        assert "eye_grad_clip" not in fh.read()
    # a bad key is an error naming it, not a printout
    assert eyefast_main(["train", cfgp, "--print-config", "--set", "train.max_step=7"]) == 2
    assert "max_step" in capsys.readouterr().err


def test_training_refuses_to_replace_an_existing_run(tiny, tmp_path, capsys):
    cfgp = os.path.join(tiny, "config.yaml")
    common = ["--workspace", str(tmp_path), *QUIET_TRAIN]
    assert eyefast_main(["train", cfgp, "--max-steps", "2", *common]) == 0
    run = tmp_path / "synth_tiny"
    scalars = (run / "scalars.csv").read_text()
    config = (run / "config.yaml").read_text()
    # a second training into the same run: refused, nothing touched
    assert eyefast_main(["train", cfgp, "--max-steps", "3", *common]) == 2
    err = capsys.readouterr().err
    assert str(run) in err and "--resume" in err and "--overwrite" in err
    assert load_checkpoint(str(run / "latest.pth"))["step"] == 2
    assert (run / "scalars.csv").read_text() == scalars and (run / "config.yaml").read_text() == config
    # --resume continues it (no value: the run the config names)
    assert eyefast_main(["train", cfgp, "--max-steps", "3", "--resume", *common]) == 0
    assert load_checkpoint(str(run / "latest.pth"))["step"] == 3
    # --resume RUN (a folder) works too
    assert eyefast_main(["train", cfgp, "--max-steps", "4", "--resume", str(run), *common]) == 0
    assert load_checkpoint(str(run / "latest.pth"))["step"] == 4
    # --overwrite replaces it: a fresh run from step 0
    (run / "export").mkdir()
    (run / "export" / "mesh.obj").write_text("old")
    assert eyefast_main(["train", cfgp, "--max-steps", "1", "--overwrite", *common]) == 0
    assert load_checkpoint(str(run / "latest.pth"))["step"] == 1
    assert not (run / "export").exists()  # the old run's export went with it
    # --resume and --overwrite together make no sense
    assert eyefast_main(["train", cfgp, "--resume", "--overwrite", *common]) == 2
    assert "give one" in capsys.readouterr().err


def test_resume_of_a_run_without_a_checkpoint_names_it(tiny, tmp_path, capsys):
    cfgp = os.path.join(tiny, "config.yaml")
    assert eyefast_main(["train", cfgp, "--resume", "--workspace", str(tmp_path), *QUIET_TRAIN]) == 2
    assert "latest.pth" in capsys.readouterr().err


def test_bench_outside_a_checkout_says_where_to_run_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from eyefast.cli import bench

    assert bench.main(["--source", str(tmp_path)]) == 2
    assert "benchmarks/" in capsys.readouterr().err
