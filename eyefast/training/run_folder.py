"""The run folder ``<workspace>/<name>/``: what a run writes there, and the rule that a new training
never replaces an earlier run unless asked to."""

from __future__ import annotations

import os
import shutil

__all__ = ["RunExistsError", "RUN_FILES", "holds_run", "prepare_run_folder"]

#: what a training (and the export and evaluation of it) writes into its run folder
RUN_FILES = ("config.yaml", "latest.pth", "checkpoints", "scalars.csv", "tb", "vis", "val.json", "export",
             "eval.json", "eval")


class RunExistsError(FileExistsError):
    """The run folder already holds a run, and neither resuming nor overwriting it was asked for."""


def holds_run(folder: str) -> bool:
    """True when ``folder`` holds a trained run: ``latest.pth`` or a checkpoint in ``checkpoints/`` (a
    training that stopped before its first checkpoint left nothing to lose)."""
    ck = os.path.join(folder, "checkpoints")
    return os.path.isfile(os.path.join(folder, "latest.pth")) or (
        os.path.isdir(ck) and any(f.endswith(".pth") for f in os.listdir(ck)))


def prepare_run_folder(folder: str, resumed: bool, overwrite: bool) -> None:
    """Creates ``folder`` for a training. A fresh training (``resumed`` False) into a folder that holds a
    run is refused (:class:`RunExistsError`) unless ``overwrite``, which first deletes that run's
    :data:`RUN_FILES`."""
    if not resumed and holds_run(folder):
        if not overwrite:
            raise RunExistsError(
                f"run folder '{folder}' already holds a run; continue it with --resume, replace it with "
                "--overwrite, or train under another name (--set name=NAME)")
        for f in RUN_FILES:
            p = os.path.join(folder, f)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            elif os.path.lexists(p):
                os.remove(p)
    os.makedirs(folder, exist_ok=True)
