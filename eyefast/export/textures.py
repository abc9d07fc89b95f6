"""Baking the face's textures: the UV atlas, texel positions, material queries, tangent frames and
the padding around UV islands."""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ops
from ..geometry.mesh import face_normals, progress

__all__ = ["unwrap", "vertex_tangents", "dilate", "uv_surface", "query_material", "to_image"]


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


def dilate(img: torch.Tensor, valid: torch.Tensor, iters: int, fill=None) -> torch.Tensor:
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


def uv_surface(verts, faces, uvs, size: int, device):
    """Rasterises the UV layout: ``(p2f [S, S], bary [S, S, 3], points [S, S, 3])`` (PNG orientation)."""
    v = torch.as_tensor(verts, dtype=torch.float32, device=device).contiguous()
    f = torch.as_tensor(faces, dtype=torch.int64, device=device).contiguous()
    t = torch.as_tensor(uvs, dtype=torch.float32, device=device).contiguous()
    p2f, bary = ops.rasterize_uv(t, f, size, size)
    pts = ops.interpolate(v, f, p2f, bary)
    return p2f, bary, pts


@torch.no_grad()
def query_material(model, pts: torch.Tensor, chunk: int, quiet: bool, desc: str, normals: bool = True):
    albedo, spec, rough, nrm = [], [], [], []
    for s in progress(range(0, pts.shape[0], chunk), quiet, desc=desc, unit="chunk"):
        x = pts[s:s + chunk]
        a, sp, r = model.material(x)
        albedo.append(a.float())
        spec.append(sp.float())
        rough.append(r.float())
        if normals:
            nrm.append(face_normals(model, x, chunk))
    cat = (lambda L, c: torch.cat(L) if L else pts.new_zeros(0, c))
    return cat(albedo, 3), torch.cat(spec) if spec else pts.new_zeros(0), \
        torch.cat(rough) if rough else pts.new_zeros(0), cat(nrm, 3) if normals else None


def to_image(vals: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    img = torch.zeros(*valid.shape, vals.shape[-1], dtype=torch.float32, device=valid.device)
    img[valid] = vals.float()
    return img
