"""Reading an export folder back: the meshes and textures ``eyefast export`` wrote, in the form
:func:`eyefast.export.preview.render_assets` draws (``eyefast render --source export``: what the
assets look like in another tool)."""

from __future__ import annotations

import json
import os

import numpy as np

from .files import ExportError

__all__ = ["read_obj", "load_assets"]


def read_obj(path: str):
    """``(verts [V, 3], faces [F, 3], uvs [V, 2] or None)`` of an OBJ that :func:`eyefast.export.files.write_obj`
    wrote (one index per corner, shared by position and UV; triangles)."""
    v, vt, f = [], [], []
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith("v "):
                    v.append([float(x) for x in line.split()[1:4]])
                elif line.startswith("vt "):
                    vt.append([float(x) for x in line.split()[1:3]])
                elif line.startswith("f "):
                    f.append([int(c.split("/")[0]) - 1 for c in line.split()[1:4]])
    except OSError as e:
        raise ExportError(f"cannot read mesh '{path}': {e}") from None
    if not v or not f:
        raise ExportError(f"mesh '{path}' has no vertices or no faces")
    uvs = np.asarray(vt, dtype=np.float32) if vt else None
    if uvs is not None and len(uvs) != len(v):
        raise ExportError(f"mesh '{path}': {len(vt)} UVs for {len(v)} vertices (not an eyefast export)")
    return np.asarray(v, dtype=np.float32), np.asarray(f, dtype=np.int64), uvs


def _png(path: str) -> np.ndarray:
    import imageio.v3 as iio

    if not os.path.isfile(path):
        raise ExportError(f"export texture '{path}' is missing")
    return np.asarray(iio.imread(path))


def load_assets(folder: str):
    """``(face, eyes)`` of the export folder ``folder`` (``RUN/export``) as the export made them:
    ``face`` = ``verts``, ``faces``, ``uvs``, ``tex`` (``diffuse``, ``specular``, ``roughness``,
    ``normal``); ``eyes[side]`` = ``verts``, ``faces``, ``uvs``, ``tex["diffuse"]``, ``center`` and,
    for refractive eyes, ``cornea["iris"]``. Raises :class:`ExportError` naming a missing file."""
    meta_path = os.path.join(folder, "export.json")
    if not os.path.isfile(meta_path):
        raise ExportError(f"'{folder}' holds no export (no export.json): run `eyefast export --run RUN` first")
    with open(meta_path) as fh:
        meta = json.load(fh)
    V, Fc, UV = read_obj(os.path.join(folder, "mesh_uv.obj"))
    face = {"verts": V, "faces": Fc, "uvs": UV,
            "tex": {k: _png(os.path.join(folder, f"{k}.png")) for k in ("diffuse", "specular", "roughness", "normal")}}
    eyes = {}
    for side in ("left", "right"):
        d = os.path.join(folder, side)
        V, Fs, UV = read_obj(os.path.join(d, "mesh_uv.obj"))
        eyes[side] = {"verts": V, "faces": Fs, "uvs": UV, "tex": {"diffuse": _png(os.path.join(d, "diffuse.png"))},
                      "center": meta["eyes"][side]["center"]}
        cornea = meta.get("cornea", {}).get(side)
        if cornea is not None:
            iV, iF, iUV = read_obj(os.path.join(d, "iris.obj"))
            iN = np.repeat(np.asarray(cornea["gaze"], dtype=np.float32)[None], len(iV), 0)
            eyes[side]["cornea"] = {"iris": {"verts": iV, "faces": iF, "uvs": iUV, "normals": iN,
                                             "tex": {"diffuse": _png(os.path.join(d, "iris.png"))}}}
    return face, eyes
