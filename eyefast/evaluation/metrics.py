"""Evaluation metrics: PSNR, SSIM, eye errors, surface distance (pure torch / numpy).

* :func:`psnr` caps at :data:`PSNR_CAP` dB (100 dB): identical images give exactly
  100.0 instead of ``inf``, so per-view averages stay finite.
* :func:`ssim`: Wang et al. 2004, Gaussian window 11x11, sigma 1.5, ``K1 = 0.01``,
  ``K2 = 0.03``, data range 1, computed per channel over the *valid* region (no
  padding; the images must be at least 11x11) and averaged.
* :func:`surface_error`: mean symmetric point-to-surface distance.  Points are drawn
  uniformly on each surface (area-weighted, fixed seed); for each point the nearest
  candidates among dense samples of the other surface are found with a
  ``scipy.spatial.cKDTree`` (plus the triangles around the nearest vertex) and the
  exact point-to-triangle distance to those candidates' triangles (``trimesh.triangles.closest_point``) is taken, so the result
  is a true point-to-surface distance whenever the closest triangle is among the
  candidates (the KD-tree only proposes triangles).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "eye_errors", "surface_error", "PSNR_CAP"]

PSNR_CAP = 100.0


def psnr(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1].

    Args:
        pred, gt: same shape, e.g. ``[H, W, 3]`` or ``[N, 3]``.
        mask: optional, broadcastable to ``pred`` after a trailing channel axis is
            added when needed (``[H, W]`` or ``[H, W, 1]`` for ``[H, W, 3]`` images);
            only pixels with mask > 0.5 count.

    Returns:
        float; capped at :data:`PSNR_CAP` (100 dB) for a zero error.
    """
    pred = torch.as_tensor(pred, dtype=torch.float64)
    gt = torch.as_tensor(gt, dtype=torch.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"psnr: shapes differ: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    err = (pred - gt) ** 2
    if mask is not None:
        m = torch.as_tensor(mask).to(torch.float64) > 0.5
        if m.dim() == err.dim() - 1:
            m = m.unsqueeze(-1)
        m = m.expand_as(err)
        if not m.any():
            raise ValueError("psnr: the mask selects no pixel")
        err = err[m]
    mse = float(err.mean())
    if mse <= 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return -10.0 * math.log10(mse)


def _gauss_window(size=11, sigma=1.5, dtype=torch.float64):
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Structural similarity of images in [0, 1] (see module docstring).

    Args:
        pred, gt: ``[H, W]``, ``[H, W, C]`` or ``[N, H, W, C]`` (channels last), same shape.

    Returns:
        float, mean SSIM over the valid region, channels and images (1.0 for identical).
    """
    pred = torch.as_tensor(pred, dtype=torch.float64)
    gt = torch.as_tensor(gt, dtype=torch.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"ssim: shapes differ: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    if pred.dim() == 2:
        pred, gt = pred[None, ..., None], gt[None, ..., None]
    elif pred.dim() == 3:
        pred, gt = pred[None], gt[None]
    elif pred.dim() != 4:
        raise ValueError(f"ssim: expected [H,W], [H,W,C] or [N,H,W,C], got {tuple(pred.shape)}")
    N, H, W, C = pred.shape
    if H < 11 or W < 11:
        raise ValueError(f"ssim: images must be at least 11x11, got {H}x{W}")
    x = pred.permute(0, 3, 1, 2).reshape(N * C, 1, H, W)
    y = gt.permute(0, 3, 1, 2).reshape(N * C, 1, H, W)
    w = _gauss_window()[None, None]
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mu_x * mu_x
    syy = F.conv2d(y * y, w) - mu_y * mu_y
    sxy = F.conv2d(x * y, w) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def eye_errors(pred_centers, pred_radius, gt_eyes_json) -> dict:
    """Errors of estimated eyeballs against ground truth (world units).

    Args:
        pred_centers: ``{"left": [3], "right": [3]}`` or an array ``[2, 3]`` (left, right).
        pred_radius: one shared radius (float) or ``{"left": r, "right": r}`` / ``[2]``.
        gt_eyes_json: path to ``gt/eyes.json`` or its parsed dict
            (``{"left": {"center", "radius"}, "right": {...}}``).

    Returns:
        dict with ``center_left``, ``center_right`` (Euclidean distances),
        ``center_mean``, ``radius_left``, ``radius_right`` (absolute differences),
        ``radius_mean``.
    """
    if isinstance(gt_eyes_json, (str, os.PathLike)):
        with open(gt_eyes_json) as f:
            gt = json.load(f)
    else:
        gt = gt_eyes_json
    for k in ("left", "right"):
        if k not in gt or "center" not in gt[k] or "radius" not in gt[k]:
            raise ValueError(f"eye_errors: ground truth lacks '{k}' with 'center' and 'radius'")
    if isinstance(pred_centers, dict):
        pc = {k: np.asarray(pred_centers[k], dtype=np.float64).reshape(3) for k in ("left", "right")}
    else:
        arr = np.asarray(torch.as_tensor(pred_centers).detach().cpu(), dtype=np.float64).reshape(2, 3)
        pc = {"left": arr[0], "right": arr[1]}
    if isinstance(pred_radius, dict):
        pr = {k: float(pred_radius[k]) for k in ("left", "right")}
    else:
        r = np.asarray(torch.as_tensor(pred_radius).detach().cpu(), dtype=np.float64).reshape(-1)
        pr = {"left": float(r[0]), "right": float(r[-1])}
    out = {}
    for k in ("left", "right"):
        out[f"center_{k}"] = float(np.linalg.norm(pc[k] - np.asarray(gt[k]["center"], dtype=np.float64)))
        out[f"radius_{k}"] = abs(pr[k] - float(gt[k]["radius"]))
    out["center_mean"] = 0.5 * (out["center_left"] + out["center_right"])
    out["radius_mean"] = 0.5 * (out["radius_left"] + out["radius_right"])
    return out


def _as_mesh(m):
    import trimesh

    if isinstance(m, trimesh.Trimesh):
        return m
    if isinstance(m, (str, os.PathLike)):
        mesh = trimesh.load(os.fspath(m), force="mesh", process=False)
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            raise ValueError(f"surface_error: '{m}' holds no triangle mesh")
        return mesh
    if isinstance(m, (tuple, list)) and len(m) == 2:
        return trimesh.Trimesh(np.asarray(m[0]), np.asarray(m[1]), process=False)
    raise TypeError(f"surface_error: expected a trimesh.Trimesh, a path or (verts, faces), got {type(m).__name__}")


def _one_way(src_pts, dst, k, n_dense, rng):
    from scipy.spatial import cKDTree
    from trimesh.triangles import closest_point

    dense, fid = _sample(dst, n_dense, rng)
    tree = cKDTree(dense)
    _, nn = tree.query(src_pts, k=k)
    nn = nn.reshape(len(src_pts), k)
    cand = fid[nn]  # [P, k] triangle ids
    # plus the triangles around the nearest vertex (covers triangles too small to be sampled)
    vf = dst.vertex_faces  # [V, max_valence], padded with -1
    _, nv = cKDTree(dst.vertices).query(src_pts, k=1)
    ring = vf[nv]
    ring = np.where(ring < 0, cand[:, :1], ring)
    cand = np.concatenate([cand, ring], axis=1)
    k = cand.shape[1]
    tris = dst.triangles[cand.reshape(-1)]
    pts = np.repeat(src_pts, k, axis=0)
    cp = closest_point(tris, pts)
    d = np.linalg.norm(cp - pts, axis=-1).reshape(len(src_pts), k)
    return d.min(axis=1)


def _sample(mesh, n, rng):
    area = mesh.area_faces
    fid = rng.choice(len(area), size=n, p=area / area.sum())
    u, v = rng.random_sample(n), rng.random_sample(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    tri = mesh.triangles[fid]
    pts = tri[:, 0] + u[:, None] * (tri[:, 1] - tri[:, 0]) + v[:, None] * (tri[:, 2] - tri[:, 0])
    return pts, fid


def surface_error(mesh_a, mesh_b, n_samples: int = 20000, seed: int = 0, symmetric: bool = True) -> float:
    """Mean symmetric point-to-surface distance between two triangle meshes.

    ``0.5 * (mean_{p ~ A} d(p, B) + mean_{q ~ B} d(q, A))`` with ``n_samples``
    area-uniform points per surface; see the module docstring for the method.
    ``symmetric=False``: only ``mean_{p ~ A} d(p, B)`` (e.g. a partial reconstruction A against
    a complete truth B).

    Args:
        mesh_a, mesh_b: ``trimesh.Trimesh``, a mesh file path, or ``(verts [V,3], faces [F,3])``.
        n_samples: points drawn on each surface (the candidate search uses 4x as many).
        seed: sampling seed (deterministic result).
    """
    a, b = _as_mesh(mesh_a), _as_mesh(mesh_b)
    rng = np.random.RandomState(seed)
    pa, _ = _sample(a, n_samples, rng)
    k = 8
    if not symmetric:
        return float(_one_way(pa, b, k, 4 * n_samples, rng).mean())
    pb, _ = _sample(b, n_samples, rng)
    dab = _one_way(pa, b, k, 4 * n_samples, rng)
    dba = _one_way(pb, a, k, 4 * n_samples, rng)
    return float(0.5 * (dab.mean() + dba.mean()))
