"""Pure-PyTorch reference of the rasteriser and attribute interpolation.

Same contract as :func:`eyefast.ops.rasterize` / :func:`eyefast.ops.interpolate` (see
``csrc/include/eyefast/raster.h``). Brute force: every (pixel, face) pair is tested, so memory
and time grow with H * W * F; meant for small images and meshes (tests), not speed.

The coverage test and the depth key follow the kernel operation by operation (screen positions
in the input dtype, snapped to 1/256 pixel with round-half-even, 64-bit integer edge functions
with the top-left rule, the depth key ``float32(1 / interpolated(1/w))`` with ties to the
smallest face index), so ``pix_to_face`` must match the kernel exactly; barycentrics and depth
are computed in float64 from the unsnapped positions, like the kernel's resolve pass.
"""

from __future__ import annotations

import torch

SUBPIXEL = 256
GUARD = 2.0**20


def _screen(verts_clip: torch.Tensor, height: int, width: int):
    """Per vertex: valid mask, snapped integer positions X, Y, and q = 1/w, zn = z/w (input dtype)."""
    x, y, z, w = verts_clip.unbind(-1)
    half_w = torch.tensor(float(width), dtype=verts_clip.dtype) * 0.5
    half_h = torch.tensor(float(height), dtype=verts_clip.dtype) * 0.5
    ok = (w > 0) & (z >= -w) & torch.isfinite(verts_clip).all(-1)
    ws = torch.where(ok, w, torch.ones_like(w))
    sx = (x / ws + 1) * half_w
    sy = (y / ws + 1) * half_h
    ok = ok & (sx.abs() <= GUARD) & (sy.abs() <= GUARD)
    sx = torch.where(ok, sx, torch.zeros_like(sx))
    sy = torch.where(ok, sy, torch.zeros_like(sy))
    X = torch.round(sx * SUBPIXEL).long()  # round half to even, like rint
    Y = torch.round(sy * SUBPIXEL).long()
    return ok, X, Y, 1 / ws, z / ws


def _owns(dx, dy):
    return (dy < 0) | ((dy == 0) & (dx > 0))


def rasterize(verts_clip: torch.Tensor, faces: torch.Tensor, height: int, width: int):
    """Reference of :func:`eyefast.ops.rasterize` (CPU tensors).

    verts_clip: [V, 4] float; faces: [F, 3] int. Returns pix_to_face [H, W] int32,
    bary [H, W, 3], depth [H, W] (dtype of verts_clip).
    """
    dtype = verts_clip.dtype
    verts_clip = verts_clip.detach().cpu()
    faces = faces.cpu().long()
    V, F = verts_clip.shape[0], faces.shape[0]
    P = height * width
    pix_to_face = torch.full((P,), -1, dtype=torch.int32)
    bary = torch.zeros(P, 3, dtype=dtype)
    depth = torch.zeros(P, dtype=dtype)
    if F > 0 and P > 0:
        ok_v, X, Y, q, zn = _screen(verts_clip, height, width)
        in_range = ((faces >= 0) & (faces < V)).all(-1)
        fi = torch.where(in_range[:, None], faces, torch.zeros_like(faces))
        ok = in_range & ok_v[fi].all(-1)
        Xa, Xb, Xc = X[fi].unbind(-1)
        Ya, Yb, Yc = Y[fi].unbind(-1)
        qa, qb, qc = q[fi].unbind(-1)
        za, zb, zc = zn[fi].unbind(-1)
        area = (Xb - Xa) * (Yc - Ya) - (Yb - Ya) * (Xc - Xa)
        ok = ok & (area != 0)
        flip = area < 0  # swap b and c
        Xb, Xc = torch.where(flip, Xc, Xb), torch.where(flip, Xb, Xc)
        Yb, Yc = torch.where(flip, Yc, Yb), torch.where(flip, Yb, Yc)
        qb, qc = torch.where(flip, qc, qb), torch.where(flip, qb, qc)
        zb, zc = torch.where(flip, zc, zb), torch.where(flip, zb, zc)
        area = area.abs()
        inv_area = 1 / torch.where(ok, area, torch.ones_like(area)).double().to(dtype)
        ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        PX = (xs.reshape(-1, 1) * SUBPIXEL + SUBPIXEL // 2)  # [P, 1]
        PY = (ys.reshape(-1, 1) * SUBPIXEL + SUBPIXEL // 2)

        def edge(Xp, Yp, Xq, Yq):
            dx, dy = Xq - Xp, Yq - Yp
            e = dx * (PY - Yp) - dy * (PX - Xp)  # [P, F]
            return e, torch.where(_owns(dx, dy), 0, 1)

        ea, ba = edge(Xb, Yb, Xc, Yc)
        eb, bb = edge(Xc, Yc, Xa, Ya)
        ec, bc = edge(Xa, Ya, Xb, Yb)
        cover = ok & (ea >= ba) & (eb >= bb) & (ec >= bc)
        la = ea.double().to(dtype) * inv_area
        lb = eb.double().to(dtype) * inv_area
        lc = ec.double().to(dtype) * inv_area
        qq = la * qa + lb * qb + lc * qc
        cover = cover & (qq > 0)
        zz = la * za + lb * zb + lc * zc
        cover = cover & (zz <= 1)
        key = (1 / torch.where(cover, qq, torch.ones_like(qq))).float()
        key = torch.where(cover, key, torch.full_like(key, float("inf")))
        best = key.min(dim=1, keepdim=True).values
        winner = cover & (key == best)
        has = winner.any(1)
        first = torch.argmax(winner.to(torch.int8), dim=1)  # first True: the smallest face index
        pix_to_face = torch.where(has, first, torch.full_like(first, -1)).to(torch.int32)

        # Resolve: perspective-correct barycentrics in float64 from unsnapped positions.
        pf = torch.where(has, first, torch.zeros_like(first))
        tri = verts_clip.double()[fi[pf]]  # [P, 3, 4]
        iw = 1 / tri[..., 3]
        sx = (tri[..., 0] * iw + 1) * (0.5 * width)
        sy = (tri[..., 1] * iw + 1) * (0.5 * height)
        px = xs.reshape(-1, 1).double() + 0.5
        py = ys.reshape(-1, 1).double() + 0.5
        area_f = (sx[:, 1] - sx[:, 0]) * (sy[:, 2] - sy[:, 0]) - (sy[:, 1] - sy[:, 0]) * (sx[:, 2] - sx[:, 0])
        k1, k2 = [1, 2, 0], [2, 0, 1]
        e = (sx[:, k2] - sx[:, k1]) * (py - sy[:, k1]) - (sy[:, k2] - sy[:, k1]) * (px - sx[:, k1])
        pk = e * iw  # perspective-correct weights, up to a common factor
        s = pk.sum(-1)
        d = area_f / s  # view depth: area / sum_k(e_k / w_k)
        good = (d > 0) & torch.isfinite(d)
        b = torch.where(good[:, None], pk / s[:, None], torch.full_like(pk, 1.0 / 3.0))
        d = torch.where(good, d, tri[..., 3].mean(-1))
        bary = torch.where(has[:, None], b, torch.zeros_like(b)).to(dtype)
        depth = torch.where(has, d, torch.zeros_like(d)).to(dtype)
    return pix_to_face.reshape(height, width), bary.reshape(height, width, 3), depth.reshape(height, width)


def interpolate(attrs: torch.Tensor, faces: torch.Tensor, pix_to_face: torch.Tensor, bary: torch.Tensor):
    """Reference of :func:`eyefast.ops.interpolate` (differentiable w.r.t. attrs and bary)."""
    valid = pix_to_face >= 0
    f = torch.where(valid, pix_to_face, torch.zeros_like(pix_to_face)).long()
    vals = attrs[faces.long()[f]]  # [..., 3, C]
    out = (bary[..., None] * vals).sum(-2)
    return torch.where(valid[..., None], out, torch.zeros_like(out))
