"""Benchmark cases of the rasteriser: ``rasterize`` (1024^2, ~200k faces) and ``interpolate``.

Scene: a latitude/longitude sphere of radius 1 (250 x 400 quads = 200,000 faces) three units in
front of a 1024 x 1024 pinhole camera (focal 1200 px), so it covers ~45% of the image with faces
of ~2-3 pixels: the size of a face mesh in a capture frame. The reference is the brute-force
pure-PyTorch rasteriser (every pixel against every face); it is timed on a 32 x 32 image of a
1,000-face sphere and scaled by the ratio of pixel x face pairs.
"""

from __future__ import annotations

import math

import torch

from eyefast import ops
from eyefast.reference import raster as ref

from .common import Case


def lat_long_sphere(n_lat: int, n_lon: int, radius: float = 1.0, dtype=torch.float32):
    """Vertices [(n_lat + 1) * n_lon, 3] and faces [2 * n_lat * n_lon, 3] (int32; the poles' rows
    have zero-area triangles, as a real mesh may)."""
    th = torch.linspace(0, math.pi, n_lat + 1, dtype=torch.float64)
    ph = torch.arange(n_lon, dtype=torch.float64) * (2 * math.pi / n_lon)
    t, p = torch.meshgrid(th, ph, indexing="ij")
    verts = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3) * radius
    i, j = torch.meshgrid(torch.arange(n_lat), torch.arange(n_lon), indexing="ij")
    a = i * n_lon + j
    b = i * n_lon + (j + 1) % n_lon
    c, d = a + n_lon, b + n_lon
    faces = torch.stack([torch.stack([a, b, d], -1), torch.stack([a, d, c], -1)], -2).reshape(-1, 3)
    return verts.to(dtype), faces.to(torch.int32)


def camera(size: int):
    K = torch.tensor([[1.171875 * size, 0.0, size / 2], [0.0, 1.171875 * size, size / 2], [0.0, 0.0, 1.0]])
    w2c = torch.eye(4)
    w2c[2, 3] = 3.0
    return K, w2c


def scene(size: int, n_lat: int, n_lon: int, device: str):
    verts, faces = lat_long_sphere(n_lat, n_lon)
    K, w2c = camera(size)
    clip = ops.project_to_clip(verts, K, w2c, size, size, near=0.1, far=10.0)
    return verts.to(device), clip.to(device), faces.to(device)


def cases(device: str, quick: bool):
    size, n_lat, n_lon = (512, 125, 200) if quick else (1024, 250, 400)
    verts, clip, faces = scene(size, n_lat, n_lon, device)
    v, f, p = clip.shape[0], faces.shape[0], size * size
    check = not device.startswith("cuda")
    r_size, r_lat, r_lon = 32, 25, 20  # 1,000 faces
    _, r_clip, r_faces = scene(r_size, r_lat, r_lon, "cpu")
    scale = (p * f) / (r_size * r_size * r_faces.shape[0])
    rast = Case(
        op="rasterize",
        n=f,
        device=device,
        eyefast=lambda: ops.rasterize(clip, faces, size, size, check=check),
        reference=lambda: ref.rasterize(r_clip, r_faces, r_size, r_size),
        reference_scale=scale,
        # in: clip vertices, faces; out: pix_to_face, bary, depth (the 8-byte key scratch is extra)
        bytes_moved=v * 16 + f * 12 + p * (4 + 12 + 4),
        note=f"{f} faces at {size}x{size}; brute-force reference at {r_size}^2 x {r_faces.shape[0]} faces, "
        f"scaled by pixel x face pairs",
        info={"height": size, "width": size, "faces": f},
    )
    p2f, bary, _ = ops.rasterize(clip, faces, size, size)
    attrs = verts.contiguous()
    interp = Case(
        op="interpolate",
        n=p,
        device=device,
        eyefast=lambda: ops.interpolate(attrs, faces, p2f, bary, check=check),
        reference=lambda: ref.interpolate(attrs, faces, p2f, bary),
        bytes_moved=p * (4 + 12 + 12),  # in: pix_to_face, bary (+ gathered vertex rows); out: [P, 3]
        note=f"3 channels at {size}x{size}",
    )
    return [rast, interp]
