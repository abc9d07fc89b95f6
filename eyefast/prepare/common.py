"""What the stages of ``eyefast prepare`` share: the error type, the optional packages, atomic writes
(a temporary name, then a rename), each stage's record in ``OUT/prepare/<stage>.json``, images, and the
pinhole camera arithmetic (continuous pixel coordinates: pixel index ``i`` covers ``[i, i + 1)``, the
convention of :meth:`eyefast.data.Capture.project`, of COLMAP and of mediapipe's normalised landmarks
times the image size)."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import time
import uuid
import warnings

import numpy as np

log = logging.getLogger("eyefast.prepare")

#: the optional packages of the ``prepare`` extra: import name -> pip name
EXTRA = {"pycolmap": "pycolmap", "mediapipe": "mediapipe==0.10.14", "imageio_ffmpeg": "imageio-ffmpeg"}
INSTALL_HINT = "pip install 'eyefast[prepare]'"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class PrepareError(ValueError):
    """Bad input or a failed stage of ``eyefast prepare`` (the message says what to do)."""


def require(module: str, why: str):
    """Imports an optional package of the ``prepare`` extra, or raises a :class:`PrepareError` naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except ImportError as e:
        raise PrepareError(
            f"{why} needs the package {EXTRA.get(module, module)} ({e}); install the optional packages of "
            f"eyefast prepare with: {INSTALL_HINT}") from None


# --------------------------------------------------------------------------- files
def prep_dir(out: str) -> str:
    d = os.path.join(out, "prepare")
    os.makedirs(d, exist_ok=True)
    return d


def write_json(path: str, obj) -> None:
    """Writes ``obj`` to ``path`` through a temporary file and a rename (never half-written)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@contextlib.contextmanager
def staged_dirs(out: str, names):
    """Yields ``{name: temporary folder}``; on success each temporary folder replaces ``OUT/name`` (the old
    one is removed just before), on failure the temporary folders are removed and ``OUT`` is untouched."""
    tmps = {n: os.path.join(out, os.path.dirname(n), f".{os.path.basename(n)}.tmp-{uuid.uuid4().hex[:8]}")
            for n in names}
    for t in tmps.values():
        os.makedirs(t)
    try:
        yield tmps
    except BaseException:
        for t in tmps.values():
            shutil.rmtree(t, ignore_errors=True)
        raise
    for n, t in tmps.items():
        final = os.path.join(out, n)
        if os.path.isdir(final):
            old = f"{final}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(t, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(t, final)


def remove_dirs(out: str, names) -> None:
    for n in names:
        p = os.path.join(out, n)
        if os.path.isdir(p):
            shutil.rmtree(p)


def read_image(path: str) -> np.ndarray:
    """An image as uint8 ``[H, W, 3]`` (or ``[H, W]`` for single-channel files)."""
    import imageio.v3 as iio

    from ..data.capture import _to_unit_uint8

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = np.asarray(iio.imread(path))
    except Exception as e:  # imageio raises many kinds
        raise PrepareError(f"cannot read image '{path}': {e}") from None
    img = _to_unit_uint8(img, path)
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    return np.ascontiguousarray(img)


def write_png(path: str, img: np.ndarray) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, np.ascontiguousarray(img), extension=".png")


def list_images(folder: str) -> list:
    return sorted(f for f in os.listdir(folder) if os.path.splitext(f)[1].lower() in IMAGE_EXTS
                  and not f.startswith("."))


def find_by_stem(folder: str, stem: str):
    for ext in IMAGE_EXTS + tuple(e.upper() for e in IMAGE_EXTS):
        p = os.path.join(folder, stem + ext)
        if os.path.isfile(p):
            return p
    return None


# --------------------------------------------------------------------------- stage records
def record_path(out: str, stage: str) -> str:
    return os.path.join(out, "prepare", f"{stage}.json")


def load_record(out: str, stage: str):
    p = record_path(out, stage)
    return read_json(p) if os.path.isfile(p) else None


def need_record(out: str, stage: str, by: str) -> dict:
    rec = load_record(out, stage)
    if rec is None:
        raise PrepareError(f"stage {by!r} needs the output of stage {stage!r}, which '{out}' does not hold: "
                           f"run it first (--stages {stage},{by})")
    return rec


def new_record(stage: str, inputs: dict) -> dict:
    """A stage's record: a fresh ``run_id`` and the ``run_id``s of the records it was made from."""
    return {"stage": stage, "run_id": uuid.uuid4().hex, "inputs": inputs, "time": time.strftime("%Y-%m-%d %H:%M:%S")}


# --------------------------------------------------------------------------- cameras
def pixel_rays(K: np.ndarray, c2w: np.ndarray, uv: np.ndarray):
    """Rays through continuous pixel coordinates ``uv [..., 2]`` of a pinhole camera ``K`` with the
    camera-to-world ``c2w`` (x right, y down, z forward): ``(origins [..., 3], unit dirs [..., 3])``."""
    uv = np.asarray(uv, np.float64)
    d = np.stack([(uv[..., 0] - K[0, 2]) / K[0, 0], (uv[..., 1] - K[1, 2]) / K[1, 1], np.ones(uv.shape[:-1])], -1)
    d = d @ np.asarray(c2w)[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return np.broadcast_to(np.asarray(c2w)[:3, 3], d.shape).copy(), d


def project(K: np.ndarray, w2c: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """World points ``[..., 3]`` -> continuous pixel coordinates ``[..., 2]`` (NaN behind the camera)."""
    pc = np.asarray(pts, np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[..., 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = pc[..., :2] / z * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
    return np.where(z > 1e-9, uv, np.nan)


def intrinsics(meta: dict) -> np.ndarray:
    return np.array([[meta["fl_x"], 0.0, meta["cx"]], [0.0, meta["fl_y"], meta["cy"]], [0.0, 0.0, 1.0]])


def load_cameras(out: str):
    """``transforms.json`` of ``OUT``: ``(meta, names [F], K [3, 3], c2w [F, 4, 4] (eyefast's x right, y down,
    z forward))`` in the file's frame order."""
    from ..data.capture import frame_name, nerf_to_cora

    path = os.path.join(out, "transforms.json")
    if not os.path.isfile(path):
        raise PrepareError(f"'{path}' is missing: run the poses stage first (--stages poses)")
    meta = read_json(path)
    names = [frame_name(f["file_path"]) for f in meta["frames"]]
    c2w = nerf_to_cora(np.array([f["transform_matrix"] for f in meta["frames"]], np.float64))
    return meta, names, intrinsics(meta), c2w


def progress(it, desc: str, enabled: bool, total=None, unit="frame"):
    if not enabled:
        return it
    import sys

    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False)
