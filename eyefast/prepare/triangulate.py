"""Robust multi-view triangulation of 2D landmarks: RANSAC over the views (each pair of views proposes a
point, the views that reproject it within a pixel threshold vote), then the least-squares point nearest to
the inliers' rays (:func:`eyefast.data.tools.nearest_point_to_rays`), refined twice."""

from __future__ import annotations

import numpy as np

from ..data.tools import ToolError, nearest_point_to_rays
from .common import pixel_rays


def _pair_points(o1, d1, o2, d2):
    """Midpoints of the closest points of line pairs ``[P, 3]`` (NaN for near-parallel pairs)."""
    w0 = o1 - o2
    a = (d1 * d1).sum(-1)
    b = (d1 * d2).sum(-1)
    c = (d2 * d2).sum(-1)
    d = (d1 * w0).sum(-1)
    e = (d2 * w0).sum(-1)
    den = a * c - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (b * e - c * d) / den
        t = (a * e - b * d) / den
    p = 0.5 * ((o1 + s[:, None] * d1) + (o2 + t[:, None] * d2))
    p[den < 1e-10 * a * c] = np.nan
    return p


def triangulate_point(K, c2w, w2c, uv, threshold: float, max_pairs: int = 300, rng=None):
    """One 3D point from its 2D observations.

    Args:
        K: ``[3, 3]`` or ``[V, 3, 3]`` intrinsics; ``c2w``, ``w2c``: ``[V, 4, 4]`` (x right, y down, z forward).
        uv: ``[V, 2]`` continuous pixel coordinates, NaN where the point was not observed.
        threshold: reprojection error (pixels) under which a view is an inlier.

    Returns:
        ``(point [3] or None, inliers [V] bool, rms reprojection error of the inliers in pixels)``;
        None when fewer than 2 views agree.
    """
    uv = np.asarray(uv, np.float64)
    V = len(uv)
    Ks = np.broadcast_to(np.asarray(K, np.float64), (V, 3, 3))
    seen = np.flatnonzero(np.isfinite(uv).all(-1))
    inl = np.zeros(V, bool)
    if len(seen) < 2:
        return None, inl, float("nan")
    o = np.zeros((V, 3))
    d = np.zeros((V, 3))
    for v in seen:
        o[v], d[v] = pixel_rays(Ks[v], c2w[v], uv[v])

    def errors(pts):  # [P, 3] -> reprojection errors [P, V] (inf where unseen or behind)
        pc = np.einsum("vij,pj->pvi", w2c[:, :3, :3], pts) + w2c[:, :3, 3]
        z = pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            q = pc[..., :2] / z[..., None] * np.stack([Ks[:, 0, 0], Ks[:, 1, 1]], -1) + Ks[:, :2, 2]
            e = np.linalg.norm(q - uv, axis=-1)
        return np.where((z > 1e-9) & np.isfinite(e), e, np.inf)

    def reproj(p):
        return errors(p[None])[0]

    pairs = np.array([(i, j) for a, i in enumerate(seen) for j in seen[a + 1:]])
    if len(pairs) > max_pairs:
        rng = rng or np.random.default_rng(0)
        pairs = pairs[rng.choice(len(pairs), max_pairs, replace=False)]
    cands = _pair_points(o[pairs[:, 0]], d[pairs[:, 0]], o[pairs[:, 1]], d[pairs[:, 1]])
    cands = cands[np.isfinite(cands).all(-1)]
    if len(cands) == 0:
        return None, inl, float("nan")
    # all candidates against all views at once: [P, V]
    errs = errors(cands)
    ok = errs < threshold
    score = ok.sum(1) - np.where(ok, errs / threshold, 0.0).sum(1) / (V + 1)  # most inliers, then smallest error
    best = int(np.argmax(score))
    inl = ok[best]
    if inl.sum() < 2:
        return None, np.zeros(V, bool), float("nan")
    p = cands[best]
    for _ in range(3):
        try:
            p = nearest_point_to_rays(o[inl], d[inl])
        except ToolError:
            break
        err = reproj(p)
        new = err < threshold
        if new.sum() < 2 or (new == inl).all():
            break
        inl = new
    err = reproj(p)
    return p, inl, float(np.sqrt(np.mean(np.square(err[inl]))))


def triangulate_points(K, c2w, uv, threshold: float, min_views: int = 2, rng=None):
    """Many points: ``uv [V, L, 2]`` (NaN where unseen) -> ``(points [L, 3] (NaN where it failed),
    inliers [V, L] bool, rms [L] pixels)``."""
    c2w = np.asarray(c2w, np.float64)
    w2c = np.linalg.inv(c2w)
    uv = np.asarray(uv, np.float64)
    V, L = uv.shape[:2]
    pts = np.full((L, 3), np.nan)
    inl = np.zeros((V, L), bool)
    rms = np.full(L, np.nan)
    rng = rng or np.random.default_rng(0)
    for k in range(L):
        p, m, r = triangulate_point(K, c2w, w2c, uv[:, k], threshold, rng=rng)
        if p is not None and m.sum() >= min_views:
            pts[k], inl[:, k], rms[k] = p, m, r
    return pts, inl, rms
