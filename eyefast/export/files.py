"""What the export writes, and how: formats (OBJ, MTL, PNG), texture conventions, and the export's
error. Constants follow docs/method.md sections 3 and 6."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..core.eyes import MODEL_EYE

__all__ = ["ExportError", "DEFAULT_UV_SIZE", "DEFAULT_MC_RES", "GAMMA_TEX", "F0_SCALE", "GLTF_IOR", "CORNEA_IOR",
           "to_u8", "write_png", "write_obj", "write_mtl", "pil_image"]

DEFAULT_UV_SIZE = 2048
DEFAULT_MC_RES = 256
GAMMA_TEX = 2.2  # diffuse.png = albedo ** (1 / 2.2)
CORNEA_IOR = MODEL_EYE["ior"]  # eye_model cornea: one refracting surface into the aqueous
F0_SCALE = 0.08  # F0 = 0.08 * specular (docs/method.md section 3)
#: glTF KHR_materials_ior: F0 = ((ior - 1) / (ior + 1))^2 = 0.08
GLTF_IOR = (1.0 + math.sqrt(F0_SCALE)) / (1.0 - math.sqrt(F0_SCALE))


class ExportError(ValueError):
    """The export cannot proceed (the message says why and names the file or argument)."""


def to_u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()


def write_png(path: str, arr: np.ndarray) -> None:
    import imageio.v3 as iio

    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    iio.imwrite(path, arr)


def write_obj(path: str, verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None = None,
              mtl: str | None = None, material: str | None = None, header: str = "") -> None:
    """Minimal OBJ: ``v`` lines, optional ``vt`` lines with the same indexing, ``f`` lines (1-based)."""
    lines = [f"# {header}" if header else "# eyefast export"]
    if mtl:
        lines.append(f"mtllib {mtl}")
    lines += ["v %.7g %.7g %.7g" % tuple(p) for p in np.asarray(verts, dtype=np.float64)]
    if uvs is not None:
        lines += ["vt %.7f %.7f" % tuple(t) for t in np.asarray(uvs, dtype=np.float64)]
    if material:
        lines.append(f"usemtl {material}")
    f1 = np.asarray(faces, dtype=np.int64) + 1
    if uvs is not None:
        lines += ["f %d/%d %d/%d %d/%d" % (a, a, b, b, c, c) for a, b, c in f1]
    else:
        lines += ["f %d %d %d" % tuple(t) for t in f1]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def write_mtl(path: str, name: str, maps: dict, extra: str = "",
               body=("Kd 1 1 1", "Ks 1 1 1", "Ns 50", "illum 2")) -> None:
    lines = ["# eyefast export", f"newmtl {name}", "Ka 0 0 0", *body]
    lines += [f"{k} {v}" for k, v in maps.items()]
    if extra:
        lines += ["# " + s for s in extra.splitlines()]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def pil_image(arr: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(arr))
