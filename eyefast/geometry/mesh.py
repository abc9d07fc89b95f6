"""The face mesh from the face SDF (docs/method.md sections 5-6), shared by stage 2 of training and
the export: marching cubes, decimation, clipping to what the training views see inside their
masks, the largest piece, small holes filled.

Also the camera-frustum planes (:func:`near_far`) every rasterising caller uses.
"""

from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ops

__all__ = ["MeshError", "DEFAULT_CHUNK", "sdf_volume", "face_normals", "extract_face_mesh", "decimate_half",
           "near_far", "scaled_K", "visible_faces", "keep_largest_component", "clipped_face_mesh"]

#: points per network query
DEFAULT_CHUNK = 1 << 18


class MeshError(ValueError):
    """No usable mesh: the SDF has no surface in the box, or no face is seen (the message says why)."""


def progress(it=None, quiet=False, **kw):
    """A tqdm progress bar on stderr (none when ``quiet``)."""
    from tqdm import tqdm

    return tqdm(it, disable=quiet, file=sys.stderr, dynamic_ncols=True, leave=False, **kw)


@torch.no_grad()
def sdf_volume(model, bound: float, res: int, chunk: int = DEFAULT_CHUNK, quiet: bool = False) -> np.ndarray:
    """Face SDF on a ``res^3`` grid over ``[-bound, bound]^3``: float32 ``[res, res, res]`` indexed
    ``[ix, iy, iz]``, point ``(ix, iy, iz)`` at ``-bound + 2 * bound * i / (res - 1)``."""
    dev = next(model.parameters()).device
    xs = torch.linspace(-bound, bound, res, device=dev)
    n = res ** 3
    out = torch.empty(n, dtype=torch.float32)
    for s in progress(range(0, n, chunk), quiet, desc="marching cubes: SDF grid", unit="chunk"):
        idx = torch.arange(s, min(n, s + chunk), device=dev)
        p = torch.stack([xs[idx // (res * res)], xs[(idx // res) % res], xs[idx % res]], -1)
        out[s:s + idx.shape[0]] = model.sdf(p)[0].float().cpu()
    return out.reshape(res, res, res).numpy()


def face_normals(model, points: torch.Tensor, chunk: int) -> torch.Tensor:
    """Unit SDF gradients ``[N, 3]`` of the face at ``points`` (no graph kept)."""
    out = []
    for s in range(0, points.shape[0], chunk):
        _, _, g = model.face_with_gradient(points[s:s + chunk], create_graph=False)
        out.append(F.normalize(g, dim=-1))
    return torch.cat(out) if out else points.new_zeros(0, 3)


def extract_face_mesh(model, bound: float, res: int, chunk: int = DEFAULT_CHUNK, quiet: bool = False):
    """Marching cubes (PyMCubes) of the face SDF's zero level; faces oriented outwards (towards +SDF).

    Raises :class:`MeshError` when the SDF has no zero crossing in the box."""
    import mcubes
    import trimesh

    vol = sdf_volume(model, bound, res, chunk, quiet)
    if not np.isfinite(vol).all():
        raise MeshError("the face SDF is not finite everywhere in the box (a broken checkpoint?)")
    lo, hi = float(vol.min()), float(vol.max())
    if not (lo < 0.0 < hi):
        raise MeshError(f"the SDF has no zero crossing in the box [-{bound}, {bound}]^3 (min {lo:.4g}, "
                          f"max {hi:.4g} at {res}^3); train longer")
    v, f = mcubes.marching_cubes(vol, 0.0)
    if len(f) == 0:
        raise MeshError(f"the SDF has no zero crossing in the box [-{bound}, {bound}]^3 at {res}^3; train longer")
    v = v * (2.0 * bound / (res - 1)) - bound
    mesh = trimesh.Trimesh(v, f[:, [0, 2, 1]], process=True)  # PyMCubes winds inwards for SDF < 0 inside
    # make sure: face normals along the SDF gradient (a sample of faces)
    dev = next(model.parameters()).device
    sel = np.random.default_rng(0).choice(len(mesh.faces), size=min(4096, len(mesh.faces)), replace=False)
    c = torch.as_tensor(mesh.triangles_center[sel], dtype=torch.float32, device=dev)
    g = face_normals(model, c, chunk).cpu().numpy()
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


def near_far(cam_centers: torch.Tensor, verts: torch.Tensor):
    c = verts.mean(0)
    dist = (cam_centers - c).norm(dim=-1).max().item()
    ext = (verts - c).norm(dim=-1).max().item()
    return 1e-3 * dist, 1e3 * (dist + ext)


def scaled_K(K: torch.Tensor, s: float) -> torch.Tensor:
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
    dev = cap.device
    v = torch.as_tensor(np.asarray(verts), dtype=torch.float32, device=dev).contiguous()
    f = torch.as_tensor(np.asarray(faces), dtype=torch.int64, device=dev).contiguous()
    s = max(1, math.ceil(min_side / max(cap.H, cap.W)))
    Hs, Ws = cap.H * s, cap.W * s
    Ks = scaled_K(cap.K, s).to(dev)
    near, far = near_far(cap.cam_centers, v)
    cen = v[f].mean(1)
    seen = torch.zeros(f.shape[0], dtype=torch.bool, device=dev)
    for i in progress(range(cap.n_frames), quiet, desc="visible faces", unit="view"):
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
        raise MeshError("no face of the extracted mesh is seen inside the foreground masks of the training views "
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
