"""Export of relightable assets (SPEC section 6): ``python -m eyefast.export``.

Usage::

    python -m eyefast.export CONFIG --ckpt CKPT --out DIR [--uv-size 2048] [--mc-res 256]
                             [--eye-uv-size N] [--chunk-size N] [--device cpu|cuda|cuda:N|N|auto]
                             [--preview] [--set section.key=value ...]
    python -m eyefast.export --run RUN [--out DIR] [...]     # RUN/config.yaml, RUN/latest.pth, RUN/export
    python -m eyefast.train --config_path CONFIG --mode export_eyeball --ckpt_path CKPT --save_visual_dir DIR

``RUN`` is a run folder ``<workspace>/<name>`` written by :mod:`eyefast.train`. From Python:
:func:`export_run` ``(trainer, out_dir, ...)`` with a :class:`eyefast.train.Trainer` whose weights are
loaded (e.g. :func:`eyefast.evaluate.load_run`).

Output folder::

    mesh.obj          face mesh (face SDF only, the eyes are not in it): marching cubes on an
                      mc_res^3 grid over [-bound, bound]^3, decimated by half (quadric), only the
                      faces seen inside the foreground masks of the training views, the largest
                      connected component, small (triangle/quad) holes filled. World units.
    mesh_uv.obj       the same surface with a UV atlas (xatlas; vertices split along seams),
    mesh_uv.mtl       naming the textures below.
    diffuse.png       diffuse albedo, sRGB-ish: albedo ** (1/2.2), 8 bit RGB.
    specular.png      specular intensity (0..1; the BRDF's F0 = 0.08 * specular), 8 bit grey.
    roughness.png     roughness, already mapped into [brdf.min_roughness, brdf.max_roughness]
                      (alpha = roughness^2), 8 bit grey.
    normal.png        world-space unit normals of the face SDF gradient, (n + 1) / 2, 8 bit RGB.
    coord.npy         texel-to-3D map: float32 [uv, uv, 3] world point of each texel centre, NaN
                      where no UV triangle covers the texel. Same orientation as the PNGs: row 0
                      is the top of the image (v = 1, OBJ convention); texel (i, j) (column i,
                      row j) has its centre at u = (i + 0.5) / uv, v = 1 - (j + 0.5) / uv. The
                      landmark tool (python -m eyefast.tools uv-landmarks) reads it.
    left/  right/     one per eye ("left" = the config's eyeball_left_center = the subject's left
                      eye, seen on the viewer's right): mesh.obj (icosphere of level 3 at the
                      learned centre and radius, minus the faces no training camera sees),
                      mesh_uv.obj + mesh_uv.mtl, diffuse.png, normal.png (sphere normals),
                      coord.npy. Eye specular and roughness are the fixed 0.2 and 0.05 (SPEC 2).
    head.glb          glTF 2.0 binary: meshes "face", "left_eye", "right_eye" with PBR
                      metallic-roughness materials: baseColorTexture (sRGB albedo),
                      metallicRoughnessTexture (G = roughness, B = metallic = 0), a tangent-space
                      normalTexture (face; TANGENT vertex attribute included, so viewers use the
                      exact frames the map was baked with), and the specular intensity through
                      KHR_materials_specular + KHR_materials_ior (ior 1.788 gives F0 = 0.08).
    export.json       what was exported: step, eye centres and radius, light and light_scale,
                      roughness range, sizes, timings.
    preview.png       (--preview) the exported face and eyes rendered from the first training
                      camera with the baked textures and the BRDF of eyefast.reference.shading:
                      top row: the photo, the flash (co-located) light, a light from the
                      viewer's left; bottom row: from the right, from above, from below.

Albedo and specular are the material network's outputs: shading under the capture's light uses
``light.color * light.intensity * light_scale / d^2`` (light_scale is in export.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .model import CORNEA_ROUGHNESS, IRIS_ROUGHNESS
from .reference.eye import MODEL_EYE

__all__ = ["ExportError", "export_run", "main", "build_parser", "sdf_volume", "extract_face_mesh",
           "visible_faces", "clipped_face_mesh", "unwrap", "vertex_tangents", "write_obj", "load_trainer"]

DEFAULT_CHUNK = 1 << 18
DEFAULT_UV_SIZE = 2048
DEFAULT_MC_RES = 256
GAMMA_TEX = 2.2  # diffuse.png = albedo ** (1 / 2.2)
EYE_SPECULAR, EYE_ROUGHNESS = 0.2, 0.05  # SPEC 2: fixed eye BRDF
CORNEA_IOR = MODEL_EYE["ior"]  # eye_model cornea: one refracting surface into the aqueous
F0_SCALE = 0.08  # F0 = 0.08 * specular (SPEC 3)
#: glTF KHR_materials_ior: F0 = ((ior - 1) / (ior + 1))^2 = 0.08
GLTF_IOR = (1.0 + math.sqrt(F0_SCALE)) / (1.0 - math.sqrt(F0_SCALE))


class ExportError(ValueError):
    """The export cannot proceed (the message says why and names the file or argument)."""


def _bar(it=None, quiet=False, **kw):
    from tqdm import tqdm

    return tqdm(it, disable=quiet, file=sys.stderr, dynamic_ncols=True, leave=False, **kw)


# ============================================================================ face mesh
@torch.no_grad()
def sdf_volume(model, bound: float, res: int, chunk: int = DEFAULT_CHUNK, quiet: bool = False) -> np.ndarray:
    """Face SDF on a ``res^3`` grid over ``[-bound, bound]^3``: float32 ``[res, res, res]`` indexed
    ``[ix, iy, iz]``, point ``(ix, iy, iz)`` at ``-bound + 2 * bound * i / (res - 1)``."""
    dev = next(model.parameters()).device
    xs = torch.linspace(-bound, bound, res, device=dev)
    n = res ** 3
    out = torch.empty(n, dtype=torch.float32)
    for s in _bar(range(0, n, chunk), quiet, desc="marching cubes: SDF grid", unit="chunk"):
        idx = torch.arange(s, min(n, s + chunk), device=dev)
        p = torch.stack([xs[idx // (res * res)], xs[(idx // res) % res], xs[idx % res]], -1)
        out[s:s + idx.shape[0]] = model.sdf(p)[0].float().cpu()
    return out.reshape(res, res, res).numpy()


def _face_normals_sdf(model, points: torch.Tensor, chunk: int) -> torch.Tensor:
    """Unit SDF gradients ``[N, 3]`` of the face at ``points`` (no graph kept)."""
    out = []
    for s in range(0, points.shape[0], chunk):
        _, _, g = model.face_with_gradient(points[s:s + chunk], create_graph=False)
        out.append(F.normalize(g, dim=-1))
    return torch.cat(out) if out else points.new_zeros(0, 3)


def extract_face_mesh(model, bound: float, res: int, chunk: int = DEFAULT_CHUNK, quiet: bool = False):
    """Marching cubes (PyMCubes) of the face SDF's zero level; faces oriented outwards (towards +SDF).

    Raises :class:`ExportError` when the SDF has no zero crossing in the box."""
    import mcubes
    import trimesh

    vol = sdf_volume(model, bound, res, chunk, quiet)
    if not np.isfinite(vol).all():
        raise ExportError("the face SDF is not finite everywhere in the box (a broken checkpoint?)")
    lo, hi = float(vol.min()), float(vol.max())
    if not (lo < 0.0 < hi):
        raise ExportError(f"the SDF has no zero crossing in the box [-{bound}, {bound}]^3 (min {lo:.4g}, "
                          f"max {hi:.4g} at {res}^3); train longer")
    v, f = mcubes.marching_cubes(vol, 0.0)
    if len(f) == 0:
        raise ExportError(f"the SDF has no zero crossing in the box [-{bound}, {bound}]^3 at {res}^3; train longer")
    v = v * (2.0 * bound / (res - 1)) - bound
    mesh = trimesh.Trimesh(v, f[:, [0, 2, 1]], process=True)  # PyMCubes winds inwards for SDF < 0 inside
    # make sure: face normals along the SDF gradient (a sample of faces)
    dev = next(model.parameters()).device
    sel = np.random.default_rng(0).choice(len(mesh.faces), size=min(4096, len(mesh.faces)), replace=False)
    c = torch.as_tensor(mesh.triangles_center[sel], dtype=torch.float32, device=dev)
    g = _face_normals_sdf(model, c, chunk).cpu().numpy()
    if float((g * mesh.face_normals[sel]).sum(-1).mean()) < 0:
        mesh.invert()
    return mesh


def decimate_half(mesh, quiet=False):
    """Quadric decimation to half the faces (trimesh + fast_simplification); unchanged, with a
    warning, when fast_simplification is not installed."""
    if len(mesh.faces) < 64:
        return mesh
    try:
        import fast_simplification  # noqa: F401 - trimesh's backend
    except ImportError:
        warnings.warn("fast_simplification is not installed (pip install fast-simplification): "
                      "the face mesh is not decimated", stacklevel=2)
        return mesh
    return mesh.simplify_quadric_decimation(face_count=len(mesh.faces) // 2)


def _near_far(cam_centers: torch.Tensor, verts: torch.Tensor):
    c = verts.mean(0)
    dist = (cam_centers - c).norm(dim=-1).max().item()
    ext = (verts - c).norm(dim=-1).max().item()
    return 1e-3 * dist, 1e3 * (dist + ext)


def _scaled_K(K: torch.Tensor, s: float) -> torch.Tensor:
    Ks = K.clone().float()
    Ks[:2] *= s  # continuous pixel coordinates scale by s (pixel i covers [i, i+1))
    return Ks


@torch.no_grad()
def visible_faces(verts, faces, cap, min_side: int = 512, tol: float = 0.0, quiet: bool = False) -> np.ndarray:
    """Bool ``[F]``: faces seen inside the foreground mask (``mask`` > 0.5) of at least one view of ``cap``.

    Each view is rasterised (``eyefast.ops.rasterize``, supersampled so that its longer side has at
    least ``min_side`` pixels, the mask upsampled nearest): a face is seen when it is the nearest
    surface at a masked pixel, or when its centroid projects into a masked pixel and is not behind
    the rasterised depth there (by more than ``tol`` + 0.1%; catches faces smaller than a pixel).
    """
    from . import ops

    dev = cap.device
    v = torch.as_tensor(np.asarray(verts), dtype=torch.float32, device=dev).contiguous()
    f = torch.as_tensor(np.asarray(faces), dtype=torch.int64, device=dev).contiguous()
    s = max(1, math.ceil(min_side / max(cap.H, cap.W)))
    Hs, Ws = cap.H * s, cap.W * s
    Ks = _scaled_K(cap.K, s).to(dev)
    near, far = _near_far(cap.cam_centers, v)
    cen = v[f].mean(1)
    seen = torch.zeros(f.shape[0], dtype=torch.bool, device=dev)
    for i in _bar(range(cap.n_frames), quiet, desc="visible faces", unit="view"):
        w2c = cap.w2c[i]
        clip = ops.project_to_clip(v, Ks, w2c, Hs, Ws, near=near, far=far)
        p2f, _, depth = ops.rasterize(clip, f, Hs, Ws)
        m = cap.masks["mask"][i] > 127
        if s > 1:
            m = m.repeat_interleave(s, 0).repeat_interleave(s, 1)
        hit = p2f[m & (p2f >= 0)].long()
        seen[hit] = True
        pc = cen @ w2c[:3, :3].T + w2c[:3, 3]
        z = pc[:, 2]
        zs = z.clamp_min(near)
        u = (Ks[0, 0] * pc[:, 0] + Ks[0, 1] * pc[:, 1]) / zs + Ks[0, 2]
        vv = Ks[1, 1] * pc[:, 1] / zs + Ks[1, 2]
        inside = (z > near) & (u >= 0) & (u < Ws) & (vv >= 0) & (vv < Hs)
        px = u.floor().long().clamp(0, Ws - 1)
        py = vv.floor().long().clamp(0, Hs - 1)
        occ = p2f[py, px] >= 0
        front = ~occ | (z <= depth[py, px] * 1.001 + tol)
        seen |= inside & m[py, px] & front
    return seen.cpu().numpy()


def keep_largest_component(mesh):
    import trimesh

    if len(mesh.faces) == 0:
        return mesh
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    big = int(np.bincount(labels).argmax())
    mesh.update_faces(labels == big)
    mesh.remove_unreferenced_vertices()
    return mesh


def clipped_face_mesh(model, cap, bound: float, mc_res: int = 256, chunk: int = DEFAULT_CHUNK, quiet: bool = True,
                      times: dict | None = None):
    """The face mesh of SPEC 6 (and of stage 2 of SPEC 5): marching cubes of the face SDF at ``mc_res``^3,
    decimated by half, only the faces seen inside the foreground masks of ``cap``'s views, the largest
    connected component, small holes filled. Returns ``(trimesh.Trimesh, stats)`` (face counts per stage);
    ``times`` (a dict) receives the seconds of each stage."""
    import trimesh

    times = {} if times is None else times
    stats = {}
    t0 = time.perf_counter()
    mesh = extract_face_mesh(model, bound, mc_res, chunk, quiet)
    stats["faces_marching_cubes"] = int(len(mesh.faces))
    t1 = time.perf_counter()
    times["marching_cubes"] = round(t1 - t0, 3)
    mesh = decimate_half(mesh, quiet)
    stats["faces_decimated"] = int(len(mesh.faces))
    t2 = time.perf_counter()
    times["decimate"] = round(t2 - t1, 3)
    seen = visible_faces(mesh.vertices, mesh.faces, cap, tol=2.0 * bound / mc_res, quiet=quiet)
    if not seen.any():
        raise ExportError("no face of the extracted mesh is seen inside the foreground masks of the training views "
                          f"(capture '{cap.root}'); check the masks and cameras, or train longer")
    mesh.update_faces(seen)
    mesh.remove_unreferenced_vertices()
    stats["faces_visible"] = int(len(mesh.faces))
    mesh = keep_largest_component(mesh)
    stats["faces_largest_component"] = int(len(mesh.faces))
    trimesh.repair.fill_holes(mesh)
    stats["faces"] = int(len(mesh.faces))
    stats["vertices"] = int(len(mesh.vertices))
    times["clip"] = round(time.perf_counter() - t2, 3)
    return mesh, stats


# ============================================================================ UVs and baking
def unwrap(verts: np.ndarray, faces: np.ndarray, size: int, padding: int):
    """xatlas UV atlas for a ``size`` x ``size`` texture. Returns ``(vmapping [V'], faces [F, 3],
    uvs [V', 2])``: new vertex ``k`` is old vertex ``vmapping[k]``; uvs in [0, 1], OBJ convention."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(verts, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.uint32))
    co = xatlas.ChartOptions()
    po = xatlas.PackOptions()
    po.resolution = int(size)
    po.padding = int(padding)
    po.bilinear = True
    atlas.generate(co, po)
    tries = 0
    while atlas.atlas_count > 1 and tries < 8:  # charts did not fit one texture: fewer texels per unit
        po.texels_per_unit = float(atlas.texels_per_unit) * 0.8
        atlas = xatlas.Atlas()
        atlas.add_mesh(np.ascontiguousarray(verts, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.uint32))
        atlas.generate(co, po)
        tries += 1
    if atlas.atlas_count > 1:
        warnings.warn(f"xatlas needed {atlas.atlas_count} atlases for a {size}^2 texture; UV charts overlap "
                      "(use a larger --uv-size)", stacklevel=2)
    vmap, idx, uvs = atlas.get_mesh(0)
    return vmap.astype(np.int64), idx.astype(np.int64), np.clip(uvs.astype(np.float32), 0.0, 1.0)


def vertex_tangents(verts, faces, uvs, normals) -> torch.Tensor:
    """Per-vertex glTF tangents ``[V, 4]`` (xyz unit, orthogonal to ``normals``; w = +-1 with the
    bitangent ``w * cross(n, t)`` along increasing v) from the UV parametrisation (face tangents
    dP/du, dP/dv, area-weighted)."""
    p, t = verts[faces], uvs[faces]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = det.abs() > 1e-20
    r = torch.where(ok, 1.0 / torch.where(ok, det, torch.ones_like(det)), torch.zeros_like(det))[:, None]
    T = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    B = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    area = 0.5 * torch.linalg.cross(e1, e2).norm(dim=-1, keepdim=True)
    T = F.normalize(T, dim=-1) * area
    B = F.normalize(B, dim=-1) * area
    Tv = torch.zeros_like(verts).index_add_(0, faces.reshape(-1), T.repeat_interleave(3, 0))
    Bv = torch.zeros_like(verts).index_add_(0, faces.reshape(-1), B.repeat_interleave(3, 0))
    n = normals
    Tv = Tv - n * (n * Tv).sum(-1, keepdim=True)
    bad = Tv.norm(dim=-1) < 1e-12
    if bool(bad.any()):  # no usable UV derivative: any direction orthogonal to n
        a = torch.where((n[:, :1].abs() < 0.9), torch.tensor([1.0, 0, 0]).to(n), torch.tensor([0, 1.0, 0]).to(n))
        alt = torch.linalg.cross(n, a)
        Tv = torch.where(bad[:, None], alt, Tv)
    Tv = F.normalize(Tv, dim=-1)
    w = torch.sign((torch.linalg.cross(n, Tv) * Bv).sum(-1, keepdim=True))
    w = torch.where(w == 0, torch.ones_like(w), w)
    return torch.cat([Tv, w], -1)


def _dilate(img: torch.Tensor, valid: torch.Tensor, iters: int, fill=None) -> torch.Tensor:
    """Grows ``img [H, W, C]`` from ``valid`` texels ``iters`` texels outwards (mean of the valid 3x3
    neighbours), then sets the texels still empty to ``fill`` (default: the mean of the valid texels)."""
    x = (img * valid[..., None]).permute(2, 0, 1)[None]
    m = valid.to(img.dtype)[None, None]
    for _ in range(iters):
        sx = F.avg_pool2d(x, 3, 1, 1) * 9.0
        sm = F.avg_pool2d(m, 3, 1, 1) * 9.0
        new = (sm > 0.5) & (m < 0.5)
        x = torch.where(new, sx / sm.clamp_min(1e-6), x)
        m = torch.where(new, torch.ones_like(m), m)
    out = x[0].permute(1, 2, 0)
    done = m[0, 0] > 0.5
    if fill is None:
        fill = img[valid].mean(0) if bool(valid.any()) else torch.zeros(img.shape[-1], dtype=img.dtype)
    fill = torch.as_tensor(fill, dtype=img.dtype, device=img.device)
    return torch.where(done[..., None], out, fill.expand_as(out))


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()


def _png(path: str, arr: np.ndarray) -> None:
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


def _write_mtl(path: str, name: str, maps: dict, extra: str = "",
               body=("Kd 1 1 1", "Ks 1 1 1", "Ns 50", "illum 2")) -> None:
    lines = ["# eyefast export", f"newmtl {name}", "Ka 0 0 0", *body]
    lines += [f"{k} {v}" for k, v in maps.items()]
    if extra:
        lines += ["# " + s for s in extra.splitlines()]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def _uv_surface(verts, faces, uvs, size: int, device):
    """Rasterises the UV layout: ``(p2f [S, S], bary [S, S, 3], points [S, S, 3])`` (PNG orientation)."""
    from . import ops

    v = torch.as_tensor(verts, dtype=torch.float32, device=device).contiguous()
    f = torch.as_tensor(faces, dtype=torch.int64, device=device).contiguous()
    t = torch.as_tensor(uvs, dtype=torch.float32, device=device).contiguous()
    p2f, bary = ops.rasterize_uv(t, f, size, size)
    pts = ops.interpolate(v, f, p2f, bary)
    return p2f, bary, pts


@torch.no_grad()
def _query_material(model, pts: torch.Tensor, chunk: int, quiet: bool, desc: str, normals: bool = True):
    albedo, spec, rough, nrm = [], [], [], []
    for s in _bar(range(0, pts.shape[0], chunk), quiet, desc=desc, unit="chunk"):
        x = pts[s:s + chunk]
        a, sp, r = model.material(x)
        albedo.append(a.float())
        spec.append(sp.float())
        rough.append(r.float())
        if normals:
            nrm.append(_face_normals_sdf(model, x, chunk))
    cat = (lambda L, c: torch.cat(L) if L else pts.new_zeros(0, c))
    return cat(albedo, 3), torch.cat(spec) if spec else pts.new_zeros(0), \
        torch.cat(rough) if rough else pts.new_zeros(0), cat(nrm, 3) if normals else None


def _to_image(vals: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    img = torch.zeros(*valid.shape, vals.shape[-1], dtype=torch.float32, device=valid.device)
    img[valid] = vals.float()
    return img


# ============================================================================ the export
def _progress_of(trainer) -> None:
    """Hash levels as in the last training step (a loaded model starts with all levels active)."""
    t = trainer.cfg.train
    trainer.model.set_progress(max(0, trainer.step - 1), t.init_level, t.level_grow_iter)


def export_run(trainer, out_dir: str, uv_size: int = 2048, mc_res: int = 256, preview: bool = False,
               chunk_size: int = DEFAULT_CHUNK, eye_uv_size: int | None = None, quiet: bool = True,
               glb: bool = True) -> dict:
    """Exports the assets of the module docstring into ``out_dir``.

    Args:
        trainer: a :class:`eyefast.train.Trainer` with its weights loaded (its training capture
            gives the views and masks for the visibility clipping).
        uv_size: face texture size (square). eye_uv_size: eye texture size (default uv_size // 2).
        mc_res: marching-cubes grid resolution. chunk_size: points per network query.
        preview: also render ``preview.png``. quiet: no progress bars.

    Returns:
        dict name -> path of everything written (``mesh``, ``mesh_uv``, ``mtl``, ``diffuse``,
        ``specular``, ``roughness``, ``normal``, ``coord``, ``left/mesh``, ..., ``glb``, ``json``,
        ``preview``) plus ``stats`` (a dict: face counts, timings).
    """
    if uv_size < 16 or uv_size > 16384:
        raise ExportError(f"--uv-size must be in 16..16384, got {uv_size}")
    if mc_res < 16 or mc_res > 2048:
        raise ExportError(f"--mc-res must be in 16..2048, got {mc_res}")
    if chunk_size < 1024:
        raise ExportError(f"--chunk-size must be >= 1024, got {chunk_size}")
    eye_uv_size = int(eye_uv_size or max(16, uv_size // 2))
    model, cfg, cap = trainer.model, trainer.cfg, trainer.train_cap
    dev = trainer.device
    model.eval()
    _progress_of(trainer)
    bound = float(cfg.data.bound)
    os.makedirs(out_dir, exist_ok=True)
    paths, stats, times = {}, {}, {}
    pad = max(2, uv_size // 256)

    def tick(name, t0):
        times[name] = round(time.perf_counter() - t0, 3)
        return time.perf_counter()

    t0 = time.perf_counter()
    # ---------------------------------------------------------------- face mesh
    mesh, st = clipped_face_mesh(model, cap, bound, mc_res, chunk_size, quiet, times)
    stats.update(st)
    t0 = time.perf_counter()
    V = np.asarray(mesh.vertices, dtype=np.float64)
    Fc = np.asarray(mesh.faces, dtype=np.int64)
    paths["mesh"] = os.path.join(out_dir, "mesh.obj")
    write_obj(paths["mesh"], V, Fc, header="eyefast face mesh (world units; eyes not included)")

    # ---------------------------------------------------------------- UV atlas + textures
    vmap, Fuv, UV = unwrap(V, Fc, uv_size, pad)
    Vuv = V[vmap]
    t0 = tick("unwrap", t0)
    paths["mesh_uv"] = os.path.join(out_dir, "mesh_uv.obj")
    paths["mtl"] = os.path.join(out_dir, "mesh_uv.mtl")
    write_obj(paths["mesh_uv"], Vuv, Fuv, UV, mtl="mesh_uv.mtl", material="face",
              header="eyefast face mesh with UV atlas (world units)")
    _write_mtl(paths["mtl"], "face", {"map_Kd": "diffuse.png", "map_Ks": "specular.png", "map_Pr": "roughness.png"},
               extra="normal.png: WORLD-space normals (n + 1) / 2 (not a tangent-space map; head.glb has one)\n"
                     "specular.png: specular intensity, F0 = 0.08 * value; roughness.png: roughness (alpha = r^2)")
    p2f, bary, pts = _uv_surface(Vuv, Fuv, UV, uv_size, dev)
    valid = p2f >= 0
    coord = pts.clone()
    coord[~valid] = float("nan")
    paths["coord"] = os.path.join(out_dir, "coord.npy")
    np.save(paths["coord"], coord.cpu().numpy().astype(np.float32))
    x = pts[valid]
    albedo, spec, rough, nrm = _query_material(model, x, chunk_size, quiet, "bake face textures")
    stats["texels"] = int(valid.sum())
    t0 = tick("bake", t0)
    tex = {
        "diffuse": _dilate(_to_image(albedo.clamp(0, 1) ** (1.0 / GAMMA_TEX), valid), valid, pad),
        "specular": _dilate(_to_image(spec[:, None], valid), valid, pad),
        "roughness": _dilate(_to_image(rough[:, None], valid), valid, pad),
        "normal": _dilate(_to_image(nrm * 0.5 + 0.5, valid), valid, pad),
    }
    u8 = {k: _u8(v) for k, v in tex.items()}
    for k, arr in u8.items():
        paths[k] = os.path.join(out_dir, f"{k}.png")
        _png(paths[k], arr)

    # tangent-space normal map for glTF (frames from the UV parametrisation, as a viewer builds them)
    Vt = torch.as_tensor(Vuv, dtype=torch.float32, device=dev)
    Ft = torch.as_tensor(Fuv, dtype=torch.int64, device=dev)
    UVt = torch.as_tensor(UV, dtype=torch.float32, device=dev)
    vn = _face_normals_sdf(model, Vt, chunk_size)
    # fall back to the mesh normal where the SDF gradient is degenerate or disagrees with the winding
    mesh_vn = torch.as_tensor(np.asarray(mesh.vertex_normals)[vmap], dtype=torch.float32, device=dev)
    vn = torch.where(((vn * mesh_vn).sum(-1, keepdim=True) > 0.0) & torch.isfinite(vn).all(-1, keepdim=True),
                     vn, mesh_vn)
    tang = vertex_tangents(Vt, Ft, UVt, vn)
    from . import ops

    n_i = F.normalize(ops.interpolate(vn.contiguous(), Ft, p2f, bary), dim=-1)[valid]
    t_i = ops.interpolate(tang.contiguous(), Ft, p2f, bary)[valid]
    w_i = torch.where(t_i[:, 3:] >= 0, 1.0, -1.0)
    T = F.normalize(t_i[:, :3] - n_i * (n_i * t_i[:, :3]).sum(-1, keepdim=True), dim=-1)
    B = w_i * torch.linalg.cross(n_i, T)
    nts = torch.stack([(nrm * T).sum(-1), (nrm * B).sum(-1), (nrm * n_i).sum(-1)], -1)
    nts = F.normalize(nts, dim=-1)
    tex_nts = _dilate(_to_image(nts * 0.5 + 0.5, valid), valid, pad, fill=[0.5, 0.5, 1.0])
    stats["tangent_normal_mean_z"] = round(float(nts[:, 2].mean()) if nts.shape[0] else 1.0, 4)
    t0 = tick("textures", t0)

    # ---------------------------------------------------------------- eyes
    eyes = {}
    centers = model.eye_centers.detach().float()
    radius = float(model.eye_radius.detach())
    corneas = {}
    for k, side in ((0, "left"), (1, "right")):
        folder = os.path.join(out_dir, side)
        cut = None
        if model.cornea:
            corneas[side] = _export_cornea(model, k, folder, side, max(64, eye_uv_size // 4))
            cut = (corneas[side]["gaze"], corneas[side]["seam_offset"])
        eyes[side] = _export_eye(model, cap, centers[k], radius, folder, eye_uv_size, chunk_size, quiet, side, cut)
        if model.cornea:
            eyes[side]["paths"].update(corneas[side]["paths"])
            eyes[side]["cornea"] = corneas[side]
        for key, p in eyes[side]["paths"].items():
            paths[f"{side}/{key}"] = p
        stats[f"{side}_eye_faces"] = eyes[side]["n_faces"]
    t0 = tick("eyes", t0)

    # ---------------------------------------------------------------- glTF
    if glb:
        paths["glb"] = os.path.join(out_dir, "head.glb")
        _write_glb(paths["glb"], Vuv, Fuv, UV, vn.cpu().numpy(), tang.cpu().numpy(), u8, _u8(tex_nts), eyes,
                   float(cfg.brdf.max_roughness))
        t0 = tick("glb", t0)

    # ---------------------------------------------------------------- preview
    if preview:
        paths["preview"] = os.path.join(out_dir, "preview.png")
        face = {"verts": Vuv, "faces": Fuv, "uvs": UV, "tex": u8}
        render_preview(trainer, face, eyes, paths["preview"])
        t0 = tick("preview", t0)

    # ---------------------------------------------------------------- metadata
    paths["json"] = os.path.join(out_dir, "export.json")
    meta = {
        "step": int(trainer.step),
        "bound": bound,
        "convention": "world: +y up, the face looks along +z; 'left' = the subject's left eye "
                      "(config eyeball_left_center), seen on the viewer's right",
        "eyes": {s: {"center": eyes[s]["center"], "radius": radius, "faces": eyes[s]["n_faces"]} for s in eyes},
        "eye_brdf": {"specular": EYE_SPECULAR, "roughness": EYE_ROUGHNESS},
        "eye_model": model.eye_model,
        **({"cornea": {s: {k: v for k, v in corneas[s].items() if k not in ("paths", "iris", "mesh")}
                       for s in corneas}} if corneas else {}),
        "light": {"color": list(cfg.light.color), "intensity": float(cfg.light.intensity),
                  "light_scale": float(model.light_scale.detach()), "gamma": float(cfg.light.gamma)},
        "roughness_range": [float(cfg.brdf.min_roughness), float(cfg.brdf.max_roughness)],
        "textures": {"uv_size": uv_size, "eye_uv_size": eye_uv_size, "padding_texels": pad,
                     "diffuse": "albedo ** (1/2.2)", "specular": "F0 = 0.08 * value",
                     "roughness": "alpha = value^2", "normal": "world-space (n + 1) / 2",
                     "coord": "float32 [uv, uv, 3] world point per texel centre, NaN where empty; row 0 = top = v 1"},
        "mc_res": mc_res,
        "stats": stats,
        "timings_s": times,
    }
    with open(paths["json"], "w") as fh:
        json.dump(meta, fh, indent=1)
    paths["stats"] = {**stats, "timings_s": times}
    return paths


def _export_eye(model, cap, center: torch.Tensor, radius: float, folder: str, size: int, chunk: int, quiet: bool,
                side: str, cut=None) -> dict:
    """One eye: icosphere (level 3) minus the faces no training camera sees, UVs, textures.
    ``cut = (gaze [3], h)``: also minus the faces in front of the plane ``(x - c) . gaze = h``
    (the refractive eye: the cornea cap, which meets the globe in that plane, replaces the front)."""
    import trimesh

    os.makedirs(folder, exist_ok=True)
    c = center.cpu().numpy().astype(np.float64)
    sph = trimesh.creation.icosphere(subdivisions=4 if cut is not None else 3, radius=radius)
    V = np.asarray(sph.vertices) + c
    Fs = np.asarray(sph.faces, dtype=np.int64)
    if cut is not None:
        g, h = np.asarray(cut[0], dtype=np.float64), float(cut[1])
        Fs = Fs[((V[Fs].mean(1) - c) @ g) < h]
    dev = cap.device
    cen = torch.as_tensor(V[Fs].mean(1), dtype=torch.float32, device=dev)
    tri = V[Fs]
    fn = F.normalize(torch.as_tensor(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), dtype=torch.float32,
                                     device=dev), dim=-1)
    seen = torch.zeros(len(Fs), dtype=torch.bool, device=dev)
    for i in range(cap.n_frames):
        to_cam = cap.cam_centers[i] - cen
        front = (fn * to_cam).sum(-1) > 0
        uv = cap.project(cen, i)
        inside = torch.isfinite(uv).all(-1) & (uv[:, 0] >= 0) & (uv[:, 0] < cap.W) & (uv[:, 1] >= 0) & (uv[:, 1] < cap.H)
        seen |= front & inside
    seen = seen.cpu().numpy()
    if not seen.any():
        warnings.warn(f"no training camera sees the {side} eye sphere; exporting the whole sphere", stacklevel=2)
        seen[:] = True
    mesh = trimesh.Trimesh(V, Fs[seen], process=False)
    mesh.remove_unreferenced_vertices()
    V, Fs = np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)
    paths = {"mesh": os.path.join(folder, "mesh.obj"), "mesh_uv": os.path.join(folder, "mesh_uv.obj"),
             "mtl": os.path.join(folder, "mesh_uv.mtl"), "diffuse": os.path.join(folder, "diffuse.png"),
             "normal": os.path.join(folder, "normal.png"), "coord": os.path.join(folder, "coord.npy")}
    write_obj(paths["mesh"], V, Fs, header=f"eyefast {side} eye (subject's {side}): icosphere level "
                                           f"{4 if cut is not None else 3}{' cut at the cornea seam' if cut is not None else ''}, "
                                           f"centre {c.tolist()}, radius {radius:.6g}")
    pad = max(2, size // 256)
    vmap, Fuv, UV = unwrap(V, Fs, size, pad)
    Vuv = V[vmap]
    write_obj(paths["mesh_uv"], Vuv, Fuv, UV, mtl="mesh_uv.mtl", material=f"{side}_eye",
              header=f"eyefast {side} eye with UV atlas")
    _write_mtl(paths["mtl"], f"{side}_eye", {"map_Kd": "diffuse.png"},
               extra=f"eye BRDF: specular {EYE_SPECULAR} (F0 = 0.08 * specular), roughness {EYE_ROUGHNESS}\n"
                     "normal.png: WORLD-space sphere normals (n + 1) / 2")
    p2f, _, pts = _uv_surface(Vuv, Fuv, UV, size, dev)
    valid = p2f >= 0
    ctr = center.to(dev)
    x = pts[valid]
    n = F.normalize(x - ctr, dim=-1)
    x = ctr + radius * n  # texel points on the sphere itself (the icosphere's flat faces lie inside)
    coord = torch.full_like(pts, float("nan"))
    coord[valid] = x
    np.save(paths["coord"], coord.cpu().numpy().astype(np.float32))
    albedo, _, _, _ = _query_material(model, x, chunk, quiet, f"bake {side} eye", normals=False)
    diffuse = _dilate(_to_image(albedo.clamp(0, 1) ** (1.0 / GAMMA_TEX), valid), valid, pad)
    normal = _dilate(_to_image(n * 0.5 + 0.5, valid), valid, pad)
    u8 = {"diffuse": _u8(diffuse), "normal": _u8(normal)}
    _png(paths["diffuse"], u8["diffuse"])
    _png(paths["normal"], u8["normal"])
    vn = F.normalize(torch.as_tensor(Vuv, dtype=torch.float32) - center.cpu(), dim=-1).numpy()
    return {"paths": paths, "verts": Vuv, "faces": Fuv, "uvs": UV, "normals": vn, "tex": u8,
            "center": [float(v) for v in c], "radius": radius, "n_faces": int(len(Fs))}


def _cap_mesh(center, radius, axis, e_u, e_v, cos_max, rings=16, segments=64):
    """Spherical cap of ``radius`` about ``axis`` from the pole to polar angle ``acos(cos_max)``:
    (verts [V, 3], faces [F, 3] counter-clockwise seen from outside, unit normals [V, 3])."""
    th_max = math.acos(max(-1.0, min(1.0, cos_max)))
    verts, normals = [axis.copy()], []
    for i in range(1, rings + 1):
        th = th_max * i / rings
        for j in range(segments):
            ph = 2.0 * math.pi * j / segments
            verts.append(math.sin(th) * (math.cos(ph) * e_u + math.sin(ph) * e_v) + math.cos(th) * axis)
    nrm = np.asarray(verts)
    faces = [[0, 1 + j, 1 + (j + 1) % segments] for j in range(segments)]
    for i in range(rings - 1):
        a, b = 1 + i * segments, 1 + (i + 1) * segments
        for j in range(segments):
            j1 = (j + 1) % segments
            faces += [[a + j, b + j, b + j1], [a + j, b + j1, a + j1]]
    return center + radius * nrm, np.asarray(faces, dtype=np.int64), nrm


def _export_cornea(model, k: int, folder: str, side: str, tex_size: int) -> dict:
    """The refractive eye's extra assets (``eye_model: cornea``): ``cornea.obj`` (the clear cap in
    front of the limbus, the cornea sphere's part outside the globe), ``iris.obj`` (the disc in the
    iris plane out to the globe, with UVs) and ``iris.png`` (its albedo ** (1/2.2): the learned iris
    texture inside the limbus, the learned colour behind the cornea outside it)."""
    from .reference.eye import gaze_frame, model_eye_planes

    os.makedirs(folder, exist_ok=True)
    r = float(model.eye_radius.detach())
    c = model.eye_centers.detach()[k].double().cpu()
    g = F.normalize(model.gaze.detach()[k].double().cpu(), dim=0)
    e_u, e_v = (v.numpy() for v in gaze_frame(g))
    cr, co, lr = (MODEL_EYE[key] for key in ("cornea_radius", "cornea_offset", "limbus_radius"))
    h_iris, x_l = model_eye_planes()  # iris plane and cornea/globe seam, along the gaze, units of r
    c_np, g_np = c.numpy(), g.numpy()
    # cornea cap: the cornea sphere from its apex to the seam with the globe
    cV, cF, cN = _cap_mesh(c_np + g_np * co * r, cr * r, g_np, e_u, e_v, (x_l - co) / cr)
    # iris disc: out to where the iris plane meets the globe, UVs over [-s, s]^2 in limbus units
    rho_max = math.sqrt(max(0.0, 1.0 - h_iris * h_iris))
    s_uv = rho_max / lr
    rings, segs = 12, 64
    pts = [np.zeros(2)] + [rho_max * i / rings * np.array([math.cos(2 * math.pi * j / segs),
                                                          math.sin(2 * math.pi * j / segs)])
                           for i in range(1, rings + 1) for j in range(segs)]
    pts = np.asarray(pts)  # [V, 2] in units of r
    iV = c_np + g_np * h_iris * r + r * (pts[:, :1] * e_u + pts[:, 1:] * e_v)
    _, iF, _ = _cap_mesh(np.zeros(3), 1.0, g_np, e_u, e_v, 0.0, rings, segs)
    uvm = pts / lr  # model iris uv (unit disc = limbus)
    iUV = np.stack([(uvm[:, 0] / s_uv + 1.0) * 0.5, 1.0 - (uvm[:, 1] / s_uv + 1.0) * 0.5], -1)
    iN = np.repeat(g_np[None], len(iV), 0)
    # bake: texel centres over [-s, s]^2, row 0 = top = uv_v -s
    lin = (torch.arange(tex_size, dtype=torch.float32) + 0.5) / tex_size * 2.0 - 1.0
    vv, uu = torch.meshgrid(lin * s_uv, lin * s_uv, indexing="ij")
    uv = torch.stack([uu, vv], -1).reshape(-1, 2)
    dev = model.iris_texture[0].device
    with torch.no_grad():
        alb = model.iris_albedo(torch.full((uv.shape[0],), k, dtype=torch.long, device=dev), uv.to(dev)).cpu()
        inner = torch.sigmoid(model.cornea_inner.detach()[k]).cpu()
    alb = torch.where((uv.norm(dim=-1) <= 1.0)[:, None], alb, inner[None].expand_as(alb))
    img = _u8(alb.reshape(tex_size, tex_size, 3).clamp(0, 1) ** (1.0 / GAMMA_TEX))
    paths = {"cornea": os.path.join(folder, "cornea.obj"), "cornea_mtl": os.path.join(folder, "cornea.mtl"),
             "iris": os.path.join(folder, "iris.obj"), "iris_mtl": os.path.join(folder, "iris.mtl"),
             "iris_texture": os.path.join(folder, "iris.png")}
    write_obj(paths["cornea"], cV, cF, mtl="cornea.mtl", material=f"{side}_cornea",
              header=f"eyefast {side} cornea: clear cap, index {MODEL_EYE['ior']} (one refracting surface), "
                     f"radius {cr * r:.6g}")
    _write_mtl(paths["cornea_mtl"], f"{side}_cornea", {},
               body=("Kd 0 0 0", "Ks 1 1 1", "Ns 400", f"Ni {MODEL_EYE['ior']}", "d 0.1", "Tr 0.9", "illum 7"),
               extra="cornea: clear (transparent, refracting, index Ni); OBJ viewers without refraction show it "
                     "as a see-through gloss\n")
    write_obj(paths["iris"], iV, iF, iUV, mtl="iris.mtl", material=f"{side}_iris",
              header=f"eyefast {side} iris disc (plane {h_iris * r:.6g} in front of the eye centre)")
    _write_mtl(paths["iris_mtl"], f"{side}_iris", {"map_Kd": "iris.png"}, body=("Kd 1 1 1", "Ks 0 0 0", "illum 1"),
               extra=f"iris: diffuse only (Burley roughness {IRIS_ROUGHNESS}), seen through the cornea\n")
    _png(paths["iris_texture"], img)
    return {"paths": paths, "gaze": g_np.tolist(), "iris_plane_offset": h_iris * r, "seam_offset": x_l * r,
            "seam_radius": math.sqrt(max(0.0, 1.0 - x_l * x_l)) * r, "cornea_center":
            (c_np + g_np * co * r).tolist(), "cornea_radius": cr * r, "limbus_radius": lr * r,
            "ior": MODEL_EYE["ior"],
            "iris": {"verts": iV, "faces": iF, "uvs": iUV, "normals": iN, "tex": {"diffuse": img}},
            "mesh": {"verts": cV, "faces": cF, "normals": cN}}


# ============================================================================ glTF
def _pil(arr: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(arr))


def _write_glb(path, V, Fc, UV, vn, tang, u8, nts_u8, eyes, max_rough) -> None:
    import trimesh
    from trimesh.visual import TextureVisuals
    from trimesh.visual.material import PBRMaterial

    def mesh_of(verts, faces, uvs, normals, material, tangents=None):
        m = trimesh.Trimesh(vertices=verts, faces=faces, process=False,
                            visual=TextureVisuals(uv=uvs, material=material))
        m.vertex_normals = normals
        if tangents is not None:
            m.vertex_attributes["TANGENT"] = tangents.astype(np.float32)
        return m

    # metallicRoughness: R unused (1), G roughness, B metallic 0, A specular (KHR_materials_specular)
    h, w = u8["roughness"].shape[:2]
    mr = np.zeros((h, w, 4), dtype=np.uint8)
    mr[..., 0] = 255
    mr[..., 1] = u8["roughness"].reshape(h, w)
    mr[..., 3] = u8["specular"].reshape(h, w)
    face_mat = PBRMaterial(name="face", baseColorTexture=_pil(u8["diffuse"]), metallicRoughnessTexture=_pil(mr),
                           normalTexture=_pil(nts_u8), metallicFactor=0.0, roughnessFactor=1.0)
    scene = trimesh.Scene()
    scene.add_geometry(mesh_of(V, Fc, UV, vn, face_mat, tang), geom_name="face", node_name="face")
    for side in ("left", "right"):
        e = eyes[side]
        mat = PBRMaterial(name=f"{side}_eye", baseColorTexture=_pil(e["tex"]["diffuse"]), metallicFactor=0.0,
                          roughnessFactor=EYE_ROUGHNESS)
        scene.add_geometry(mesh_of(e["verts"], e["faces"], e["uvs"], e["normals"], mat),
                           geom_name=f"{side}_eye", node_name=f"{side}_eye")
        if "cornea" in e:
            ir, cm = e["cornea"]["iris"], e["cornea"]["mesh"]
            imat = PBRMaterial(name=f"{side}_iris", baseColorTexture=_pil(ir["tex"]["diffuse"]), metallicFactor=0.0,
                               roughnessFactor=IRIS_ROUGHNESS)
            scene.add_geometry(mesh_of(ir["verts"], ir["faces"], ir["uvs"], ir["normals"], imat),
                               geom_name=f"{side}_iris", node_name=f"{side}_iris")
            cmat = PBRMaterial(name=f"{side}_cornea", baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0,
                               roughnessFactor=CORNEA_ROUGHNESS)
            cmesh = trimesh.Trimesh(vertices=cm["verts"], faces=cm["faces"], process=False)
            cmesh.visual.material = cmat
            cmesh.vertex_normals = cm["normals"]
            scene.add_geometry(cmesh, geom_name=f"{side}_cornea", node_name=f"{side}_cornea")
    data = scene.export(file_type="glb", include_normals=True)
    with open(path, "wb") as fh:
        fh.write(_patch_glb(data))


def _patch_glb(data: bytes) -> bytes:
    """Post-processes trimesh's GLB: the custom ``_TANGENT`` attribute becomes the standard ``TANGENT``,
    materials get KHR_materials_specular (face: the A channel of its metallicRoughness texture;
    eyes: factor 0.2; irises: 0) and KHR_materials_ior (1.788, so F0 = 0.08 * specular as in the
    BRDF); corneas get KHR_materials_transmission (clear) with KHR_materials_ior 1.336."""
    import struct

    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != 0x46546C67:
        raise ExportError("internal: trimesh did not write a GLB")
    off = 12
    chunks = []
    while off < length:
        clen, ctype = struct.unpack_from("<II", data, off)
        chunks.append([ctype, data[off + 8: off + 8 + clen]])
        off += 8 + clen
    js = json.loads(chunks[0][1].decode("utf-8"))
    for m in js.get("meshes", []):
        for p in m.get("primitives", []):
            a = p.get("attributes", {})
            if "_TANGENT" in a:
                a["TANGENT"] = a.pop("_TANGENT")
            # bufferView targets (a hint of the Khronos validator): vertex data / index data
            views = js.get("bufferViews", [])
            accs = js.get("accessors", [])
            for acc, target in [(i, 34962) for i in a.values()] + [(p.get("indices"), 34963)]:
                if acc is not None and "bufferView" in accs[acc]:
                    views[accs[acc]["bufferView"]].setdefault("target", target)
    used = set(js.get("extensionsUsed", []))
    for mat in js.get("materials", []):
        ext = mat.setdefault("extensions", {})
        pbr = mat.get("pbrMetallicRoughness", {})
        name = mat.get("name", "")
        if name == "face" and "metallicRoughnessTexture" in pbr:
            ext["KHR_materials_specular"] = {"specularFactor": 1.0,
                                             "specularTexture": dict(pbr["metallicRoughnessTexture"])}
        elif name.endswith("_cornea"):  # clear, refracting: transmission with the aqueous index
            ext["KHR_materials_transmission"] = {"transmissionFactor": 1.0}
            used.add("KHR_materials_transmission")
        elif name.endswith("_iris"):  # diffuse only
            ext["KHR_materials_specular"] = {"specularFactor": 0.0}
        else:
            ext["KHR_materials_specular"] = {"specularFactor": EYE_SPECULAR}
        ext["KHR_materials_ior"] = {"ior": CORNEA_IOR if name.endswith("_cornea") else GLTF_IOR}
        pbr.setdefault("metallicFactor", 0.0)
        mat["pbrMetallicRoughness"] = pbr
        used |= {"KHR_materials_specular", "KHR_materials_ior"}
    js["extensionsUsed"] = sorted(used)
    js.setdefault("asset", {})["generator"] = "eyefast.export (trimesh)"
    jb = json.dumps(js, separators=(",", ":")).encode("utf-8")
    jb += b" " * ((4 - len(jb) % 4) % 4)
    chunks[0][1] = jb
    body = b"".join(struct.pack("<II", len(c[1]), c[0]) + c[1] for c in chunks)
    return struct.pack("<III", magic, version, 12 + len(body)) + body


# ============================================================================ preview
def _rot(v: torch.Tensor, axis: torch.Tensor, ang: float) -> torch.Tensor:
    axis = F.normalize(axis, dim=0)
    c, s = math.cos(ang), math.sin(ang)
    return v * c + torch.linalg.cross(axis, v, dim=0) * s + axis * (axis @ v) * (1 - c)


@torch.no_grad()
def render_preview(trainer, face: dict, eyes: dict, path: str, long_side: int = 384) -> None:
    """``preview.png``: the exported meshes with their baked textures, rendered from the first
    training camera (2 x 3 panels: photo, flash light, light from the viewer's left / right / above /
    below), shaded with Burley + GGX (eyefast.reference.shading) and the learned SH ambient."""
    from . import ops
    from .reference import shading as S

    model, cfg, cap = trainer.model, trainer.cfg, trainer.train_cap
    dev = torch.device("cpu")
    s = long_side / max(cap.H, cap.W)
    Hs, Ws = max(1, round(cap.H * s)), max(1, round(cap.W * s))
    Ks = _scaled_K(cap.K.cpu(), s)
    w2c, c2w = cap.w2c[0].cpu(), cap.c2w[0].cpu()
    objs = [face, eyes["left"], eyes["right"]]
    # refractive eyes: the iris discs (diffuse, normal = gaze); the clear corneas are left out (this
    # rasteriser does not refract)
    objs += [{**eyes[s]["cornea"]["iris"], "iris": True} for s in ("left", "right") if "cornea" in eyes[s]]
    verts, faces, uvs, obj_id, off = [], [], [], [], 0
    for k, o in enumerate(objs):
        verts.append(torch.as_tensor(o["verts"], dtype=torch.float32))
        faces.append(torch.as_tensor(o["faces"], dtype=torch.int64) + off)
        uvs.append(torch.as_tensor(o["uvs"], dtype=torch.float32))
        obj_id.append(torch.full((len(o["faces"]),), k))
        off += len(o["verts"])
    v, f, t, oid = torch.cat(verts), torch.cat(faces), torch.cat(uvs), torch.cat(obj_id)
    near, far = _near_far(cap.cam_centers.cpu(), v)
    clip = ops.project_to_clip(v, Ks, w2c, Hs, Ws, near=near, far=far)
    p2f, bary, _ = ops.rasterize(clip, f, Hs, Ws)
    hit = p2f >= 0
    x = ops.interpolate(v, f, p2f, bary)[hit]
    uv = ops.interpolate(t, f, p2f, bary)[hit]
    which = oid[p2f[hit].long()]
    grid = torch.stack([2 * uv[:, 0] - 1, 1 - 2 * uv[:, 1]], -1)[None, None]

    def sample(arr, g):  # bilinear texture lookup at UVs (OBJ convention), [n, C]
        img = torch.as_tensor(np.asarray(arr)).float().div(255.0)
        img = img[..., None] if img.dim() == 2 else img
        return F.grid_sample(img.permute(2, 0, 1)[None], g, mode="bilinear", padding_mode="border",
                             align_corners=False)[0, :, 0].T

    n = x.shape[0]
    albedo = torch.zeros(n, 3)
    spec = torch.zeros(n, 1)
    rough = torch.zeros(n, 1)
    nrm = torch.zeros(n, 3)
    for k, o in enumerate(objs):
        sel = which == k
        if not bool(sel.any()):
            continue
        g = grid[:, :, sel]
        smp = (lambda arr, g=g: sample(arr, g))
        albedo[sel] = smp(o["tex"]["diffuse"]) ** GAMMA_TEX
        if k == 0:
            spec[sel] = smp(o["tex"]["specular"])[:, :1]
            rough[sel] = smp(o["tex"]["roughness"])[:, :1]
            nrm[sel] = F.normalize(smp(o["tex"]["normal"]) * 2 - 1, dim=-1)
        elif o.get("iris"):
            spec[sel] = 0.0
            rough[sel] = IRIS_ROUGHNESS
            nrm[sel] = torch.as_tensor(o["normals"][0], dtype=torch.float32)
        else:
            spec[sel] = EYE_SPECULAR
            rough[sel] = EYE_ROUGHNESS
            nrm[sel] = F.normalize(x[sel] - torch.as_tensor(o["center"], dtype=torch.float32), dim=-1)
    cam = c2w[:3, 3]
    vdir = F.normalize(cam - x, dim=-1)
    centre = torch.as_tensor(np.asarray(face["verts"]).mean(0), dtype=torch.float32)
    D = float((cam - centre).norm())
    d0 = F.normalize(cam - centre, dim=0)
    right, up = c2w[:3, 0], -c2w[:3, 1]
    ang = math.radians(50)
    # camera frame x right, y down: rotating d0 about `up` by +ang moves the light to the viewer's right,
    # about `right` by +ang moves it down
    lights = [d0, _rot(d0, up, -ang), _rot(d0, up, ang), _rot(d0, right, -ang), _rot(d0, right, ang)]
    color = torch.as_tensor(list(cfg.light.color), dtype=torch.float32)
    inten = float(cfg.light.intensity) * float(model.light_scale.detach().cpu())
    seen = model.frame_seen.detach().cpu()
    occ = float(torch.sigmoid(model.sh_occlusion.detach().cpu())[seen].mean()) if bool(seen.any()) else 1.0
    amb = S.sh_ambient(nrm, model.sh_coeffs.detach().cpu().float(), model.sh_beta, occ, albedo, model.sh_scale)
    photo = cap.full_image(0).cpu().permute(2, 0, 1)[None]
    photo = F.interpolate(photo, size=(Hs, Ws), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    panels = [photo]
    for ldir in lights:
        L = centre + D * ldir
        to_l = L - x
        dist = to_l.norm(dim=-1, keepdim=True)
        l = to_l / dist
        E = color[None] * inten / (dist * dist)
        nl = (nrm * l).sum(-1, keepdim=True).clamp_min(0.0)
        rgb = (S.burley_diffuse(nrm, l, vdir, albedo, rough) + S.ggx_specular(nrm, l, vdir, spec, rough)) * E * nl
        rgb = rgb + amb
        img = torch.zeros(Hs, Ws, 3)
        img[hit] = rgb.clamp(0, 1) ** (1.0 / float(cfg.light.gamma))
        panels.append(img)
    top = torch.cat(panels[:3], 1)
    bottom = torch.cat(panels[3:], 1)
    _png(path, _u8(torch.cat([top, bottom], 0)))


# ============================================================================ CLI
def load_trainer(config: str, ckpt: str, overrides=(), device=None, quiet: bool = True):
    """A :class:`eyefast.train.Trainer` for ``config`` (with ``overrides``) holding ``ckpt``'s weights."""
    from . import config as config_mod
    from .train import Trainer

    ov = list(overrides)
    if device is not None:
        ov.append(f"device={device}")
    cfg = config_mod.load(config, ov)
    if not os.path.isfile(ckpt):
        raise FileNotFoundError(f"checkpoint '{ckpt}' does not exist")
    tr = Trainer(cfg, quiet=quiet)
    tr.load(ckpt, weights_only_model=True)
    return tr


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eyefast.export", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", help="config.yaml of the run (CoRA keys)")
    ap.add_argument("--run", help="run folder <workspace>/<name>: its config.yaml and latest.pth (default --out RUN/export)")
    ap.add_argument("--ckpt", help="checkpoint (with CONFIG: required; with --run: default RUN/latest.pth)")
    ap.add_argument("--out", help="output folder (default: <workspace>/<name>/export)")
    ap.add_argument("--uv-size", type=int, default=DEFAULT_UV_SIZE, help=f"face texture size (default {DEFAULT_UV_SIZE})")
    ap.add_argument("--eye-uv-size", type=int, default=None, help="eye texture size (default uv-size / 2)")
    ap.add_argument("--mc-res", type=int, default=DEFAULT_MC_RES,
                    help=f"marching-cubes grid resolution (default {DEFAULT_MC_RES})")
    ap.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help=f"points per network query (default {DEFAULT_CHUNK})")
    ap.add_argument("--device", help="cpu, cuda, cuda:N, N or auto (default: the config's device)")
    ap.add_argument("--preview", action="store_true", help="also write preview.png (relit renders)")
    ap.add_argument("--no-glb", action="store_true", help="skip head.glb")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config key (repeatable)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    from . import config as config_mod

    try:
        overrides = list(a.set)
        if a.run:
            if a.config:
                ap.error("give either CONFIG or --run RUN, not both")
            run = os.path.abspath(a.run)
            cfg_path = os.path.join(run, "config.yaml")
            if not os.path.isfile(cfg_path):
                raise FileNotFoundError(f"--run '{a.run}' is not an eyefast run folder: no config.yaml "
                                        "(expected <workspace>/<name>)")
            overrides.insert(0, f"workspace={os.path.dirname(run)}")
            ckpt = a.ckpt or os.path.join(run, "latest.pth")
            out = a.out or os.path.join(run, "export")
        else:
            if not a.config:
                ap.error("a config file (CONFIG) or --run RUN is needed")
            if not os.path.isfile(a.config):
                raise FileNotFoundError(f"config file '{a.config}' does not exist")
            if not a.ckpt:
                ap.error("--ckpt CKPT is needed with CONFIG (or use --run RUN)")
            cfg_path, ckpt, out = a.config, a.ckpt, a.out
        t0 = time.perf_counter()
        tr = load_trainer(cfg_path, ckpt, overrides, a.device, quiet=True)
        if out is None:
            out = os.path.join(tr.run_dir, "export")
        if not a.quiet:
            print(f"[eyefast.export] {ckpt} (step {tr.step}) on {tr.device} -> {out}", file=sys.stderr, flush=True)
        paths = export_run(tr, out, uv_size=a.uv_size, mc_res=a.mc_res, preview=a.preview, chunk_size=a.chunk_size,
                           eye_uv_size=a.eye_uv_size, quiet=a.quiet, glb=not a.no_glb)
    except (config_mod.ConfigError, ValueError, FileNotFoundError) as e:
        print(f"eyefast.export: error: {e}", file=sys.stderr)
        return 2
    st = paths["stats"]
    print(f"exported step {tr.step} in {time.perf_counter() - t0:.1f} s to {os.path.abspath(out)}:")
    print(f"  mesh.obj, mesh_uv.obj (+ .mtl): {st['faces']} faces, {st['vertices']} vertices "
          f"(marching cubes {st['faces_marching_cubes']}, decimated {st['faces_decimated']}, "
          f"visible {st['faces_visible']})")
    print(f"  diffuse.png, specular.png, roughness.png, normal.png ({a.uv_size}^2), coord.npy")
    print(f"  left/, right/: eye spheres ({st['left_eye_faces']} and {st['right_eye_faces']} faces) with textures")
    extra = [k for k in ("glb", "preview") if k in paths]
    if extra:
        print("  " + ", ".join(os.path.basename(paths[k]) for k in extra) + ", export.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
