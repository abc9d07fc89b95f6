"""Checkpoints (``latest.pth``, ``checkpoints/step_XXXXXX.pth``): atomic writes, safe reads
(``weights_only=True``), and the config keys a checkpoint's model depends on.

A checkpoint is a dict: ``step``, ``model`` and ``grid`` (state dicts), ``optimizer``, ``scheduler``,
``rng``, ``n_rays``, ``metrics``, ``config`` (the run's config as a dict) and ``stage2_mesh``
(``{"verts", "faces"}`` once stage 2 has started, else None)."""

from __future__ import annotations

import os

import torch

__all__ = ["atomic_save", "load_checkpoint", "STRUCTURAL_KEYS", "config_value", "check_structure"]

#: config keys a checkpoint's model and grid depend on: loading it with other values is an error
STRUCTURAL_KEYS = ("data.bound", "data.ignore_eyeball", "data.fix_eyeball_center", "data.fix_eye_gaze",
                   "eye_model", "network.num_levels", "network.level_dim", "network.geo_feat_dim",
                   "renderer.grid_resolution", "train.camera_refine")


def atomic_save(obj, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:  # the rename itself durable too
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Loads a checkpoint written by :class:`eyefast.training.Trainer` (``weights_only=True``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"checkpoint '{path}' is empty (0 bytes): it was not written completely; use another "
                         "checkpoint (checkpoints/step_*.pth) or train anew")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, EOFError):
            reason = f"the file ends early ({type(e).__name__}); it was not written completely"
        raise ValueError(f"checkpoint '{path}' cannot be read: {reason}") from None
    if not isinstance(ck, dict):
        raise ValueError(f"checkpoint '{path}' is not an eyefast checkpoint (it holds a {type(ck).__name__}, "
                         "not a dict)")
    for k in ("step", "model", "grid"):
        if k not in ck:
            raise ValueError(f"checkpoint '{path}' is not an eyefast checkpoint (no '{k}' entry)")
    return ck


def config_value(d, key: str):
    """``d["a"]["b"]`` for ``key = "a.b"`` (None where missing)."""
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def check_structure(ck: dict, cfg, path: str) -> None:
    """Raises ValueError when ``ck`` was trained with other values of :data:`STRUCTURAL_KEYS` than ``cfg``."""
    old, now = ck.get("config"), cfg.to_dict()
    if not isinstance(old, dict):
        return
    for key in STRUCTURAL_KEYS:
        if key == "data.fix_eye_gaze" and now.get("eye_model") != "cornea":
            continue  # the gaze exists only in the refractive eye model
        a, b = config_value(old, key), config_value(now, key)
        if a is not None and a != b:
            raise ValueError(f"checkpoint '{path}' was trained with {key}={a!r}, the config says {b!r}; "
                             "use the run's config.yaml (or a matching --set)")
