"""Procedural CoRA capture: a head with two eyeballs, rendered in pure PyTorch.

Usage::

    python -m eyefast.synth OUT [--preset demo|tiny] [--views N] [--resolution R]
                                [--seed S] [--refractive] [--texture smooth|fine] [--renderer trace|mesh]

writes a complete capture folder (SPEC section 1) plus ground truth::

    OUT/transforms.json   NeRF/OpenGL c2w matrices (the SPEC conversion gives back
                          the cameras used here; see eyefast.data.cora_to_nerf)
    OUT/image/ mask/ hair_mask/ leye_mask/ reye_mask/ specular_bfm/   8-bit PNGs
    OUT/config.yaml       CoRA keys tuned for the preset (meta_path ".")
    OUT/gt/face.obj       face/head surface (marching cubes of the analytic SDF, eyes excluded)
    OUT/gt/albedo.npy     [V, 3] float32 linear albedo at face.obj's vertices
    OUT/gt/specular.npy, gt/roughness.npy   [V] float32 at the same vertices
    OUT/gt/eyes.json      {"left": {"center": [x,y,z], "radius": r}, "right": {...},
                           "convention": ..., "model": "sphere"|"cornea", ...}
    OUT/gt/scene.json     light, SH ambient, camera sweep, preset

Conventions
-----------
* World (the *converted* convention, i.e. what :class:`eyefast.data.Capture` returns):
  right-handed, ``+y`` up, ``+z`` the direction the face looks (out of the nose),
  ``+x`` the subject's left.  Units: the head is about 1 unit tall (crown ~0.52,
  chin ~-0.5) and centred near the origin; ``data.bound = 1``.  1 unit ~ 230 mm.
* Cameras: x right, y down, z forward (OpenCV-like, the SPEC ray convention); they
  orbit the face like a phone sweep (azimuth -60..60 deg about +y, elevation
  oscillating within +-20 deg, small seeded jitter), looking at the face.
* "left" eye = the **subject's** left eye, at ``+x``; in a frontal view it appears on
  the *viewer's right* (image right).  ``leye_mask`` / ``left_eye_ldm`` /
  ``eyeball_left_center`` all refer to that eye.  (CoRA's own files may name the
  eyes by the viewer's side; eyefast's synthetic data always uses the subject's side.)
* Light: a point light at every camera centre, colour (1,1,1), intensity
  ``LIGHT_INTENSITY`` with 1/d^2 falloff, plus a faint SH ambient (dim room);
  background black.  Shading is :mod:`eyefast.reference.shading` (Burley + GGX).
  Images are ``clip(linear, 0, 1) ** (1/2.2)`` quantised to 8 bits.
* Materials: skin with smooth procedural albedo variation (cheeks, lips), specular
  0.35-0.75 and roughness 0.3-0.5; hair (top/back of the head) and eyebrows: dark,
  specular 0 (``hair_mask`` marks them); eyes: white sclera, seeded iris colour,
  dark pupil, specular 0.2, roughness 0.05 (SPEC section 2).
* ``specular_bfm`` holds the true specular intensity (0..1) on the whole foreground,
  a perfect stand-in for the morphable-model prior.
* ``--refractive``: each eye also gets a clear cornea (SPEC section 8 ratios, scaled
  by the eyeball radius r: front-surface radius 7.77/12 r, apex 13.3/12 r in front of
  the eyeball centre, iris plane 3.7/12 r behind the apex, limbus radius 5.9/12 r).
  Simplification: one refracting interface, air -> aqueous (n = 1.336), cornea
  thickness ignored; the cornea reflects the light with a GGX lobe (roughness
  0.05) weighted by the exact unpolarised Fresnel reflectance; the iris behind it is
  lit along the reversed refracted ray with transmission (1 - F)^2.  Without the
  flag the iris is painted on the sphere (CoRA's model).

* ``texture="fine"`` (``--texture fine``) adds a seeded high-frequency 3D pattern (value noise,
  features a few hundredths of a unit across) to the skin and hair albedo: enough texture for
  structure from motion (SIFT) to match views, as real skin pores, freckles and hair strands do.

Rendering (``renderer``) is either sphere tracing of the analytic SDF (smooth union of ellipsoids;
``trace``, the default) with one sample at each pixel centre, or rasterisation (``mesh``) of the
marching-cubes face surface plus two icosphere eyeballs with eyefast's rasteriser, shaded the same
way at each pixel's surface point (the face's normals and materials interpolated from its vertices): far
faster, for
larger images and view counts (tests of ``eyefast prepare``); the sphere eye model only. Either output
is deterministic for a given seed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..scene import shading as S
from .capture import cora_to_nerf

__all__ = ["Head", "PRESETS", "TEXTURES", "RENDERERS", "generate", "look_at", "sweep_cameras", "render", "render_mesh",
           "LIGHT_INTENSITY", "EYE_RADIUS"]

log = logging.getLogger(__name__)

PRESETS = {
    "tiny": {"resolution": 32, "views": 8, "mc_res": 48},
    "demo": {"resolution": 128, "views": 50, "mc_res": 128},
}
TEXTURES = ("smooth", "fine")
RENDERERS = ("trace", "mesh")
LIGHT_INTENSITY = 12.0
GAMMA = 2.2
EYE_RADIUS = 0.05
EYE_X, EYE_Y = 0.115, 0.03
SH_AMBIENT = [-0.35, 0.0, 0.12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # per channel, Y0..Y8 (tcnn order)
SH_BETA = 10.0
# SPEC section 8, in units of the globe radius
CORNEA_R = 7.77 / 12.0
APEX = 13.3 / 12.0
IRIS_PLANE = (13.3 - 3.7) / 12.0
LIMBUS = 5.9 / 12.0
PUPIL = 1.9 / 12.0
N_AQUEOUS = 1.336


# --------------------------------------------------------------------------- SDF helpers
def _ellipsoid(p, c, r):
    """Approximate (bounded) ellipsoid SDF: k0 (k0 - 1) / k1 (Quilez)."""
    q = (p - p.new_tensor(c)) / p.new_tensor(r)
    k0 = q.norm(dim=-1)
    k1 = (q / p.new_tensor(r)).norm(dim=-1).clamp_min(1e-9)
    return k0 * (k0 - 1.0) / k1


def _smin(a, b, k):
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a, b, k):
    return -_smin(-a, -b, k)


def _smoothstep(e0, e1, x):
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _value_noise(p, freq: float, seed: float):
    """Smooth 3D value noise in [0, 1] at points ``[N, 3]`` (lattice spacing ``1 / freq``): random values at the
    lattice points (a sine hash, in float64 for reproducibility), blended with smoothstep weights."""
    q = p.double() * freq
    i0 = torch.floor(q)
    f = q - i0
    w = f * f * (3.0 - 2.0 * f)
    key = torch.tensor([127.1, 311.7, 74.7], dtype=torch.float64)
    out = torch.zeros(p.shape[0], dtype=torch.float64)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                corner = i0 + torch.tensor([dx, dy, dz], dtype=torch.float64)
                h = torch.sin(corner @ key + seed) * 43758.5453
                v = h - torch.floor(h)
                wx = w[:, 0] if dx else 1.0 - w[:, 0]
                wy = w[:, 1] if dy else 1.0 - w[:, 1]
                wz = w[:, 2] if dz else 1.0 - w[:, 2]
                out = out + v * wx * wy * wz
    return out.to(p.dtype)


class Head:
    """The analytic head: face SDF, eyeballs, materials.  All inputs ``[N, 3]`` world points."""

    # (centre, radii) of the smooth-unioned ellipsoids
    PARTS = [
        ((0.0, 0.12, -0.05), (0.36, 0.40, 0.43)),  # cranium
        ((0.0, -0.12, 0.08), (0.27, 0.34, 0.30)),  # mid face / jaw
        ((0.0, -0.38, 0.15), (0.12, 0.10, 0.12)),  # chin
        ((0.17, -0.10, 0.17), (0.12, 0.11, 0.12)),  # cheek (subject's left)
        ((-0.17, -0.10, 0.17), (0.12, 0.11, 0.12)),  # cheek (subject's right)
        ((0.0, 0.10, 0.25), (0.27, 0.07, 0.11)),  # brow ridge
        ((0.0, -0.05, 0.36), (0.045, 0.12, 0.075)),  # nose
        ((0.0, -0.15, 0.37), (0.06, 0.035, 0.05)),  # nose tip / nostrils
        ((0.0, -0.27, 0.29), (0.09, 0.035, 0.05)),  # lips
        ((0.36, 0.0, -0.05), (0.04, 0.09, 0.06)),  # ear
        ((-0.36, 0.0, -0.05), (0.04, 0.09, 0.06)),  # ear
        ((0.0, -0.55, -0.08), (0.15, 0.25, 0.15)),  # neck
    ]

    def __init__(self, refractive: bool = False, seed: int = 0, texture: str = "smooth"):
        if texture not in TEXTURES:
            raise ValueError(f"unknown texture {texture!r}; textures: {', '.join(TEXTURES)}")
        self.refractive = refractive
        self.texture = texture
        self.seed = seed
        self.r = EYE_RADIUS
        rng = np.random.RandomState(seed)
        self.phase = torch.tensor(rng.uniform(0, 2 * math.pi, size=(6,)), dtype=torch.float32)
        self.freq = torch.tensor(rng.uniform(4.0, 9.0, size=(6, 3)) * rng.choice([-1, 1], size=(6, 3)), dtype=torch.float32)
        iris_palette = [(0.10, 0.22, 0.40), (0.30, 0.16, 0.06), (0.15, 0.30, 0.15), (0.22, 0.20, 0.25)]
        self.iris_color = torch.tensor(iris_palette[rng.randint(len(iris_palette))], dtype=torch.float32)
        # eye centres: the front pole sits 0.4 r in front of the (uncarved) skin
        zs = self._front_z(EYE_X, EYE_Y)
        ez = zs - 0.6 * self.r
        self.eye_centers = torch.tensor([[EYE_X, EYE_Y, ez], [-EYE_X, EYE_Y, ez]], dtype=torch.float32)  # left, right
        self.axis = torch.tensor([0.0, 0.0, 1.0])

    # ------------------------------------------------------------------ geometry
    def _skull(self, p):
        d = None
        for c, r in self.PARTS:
            e = _ellipsoid(p, c, r)
            d = e if d is None else _smin(d, e, 0.05)
        return d

    def _front_z(self, x, y):
        """z of the uncarved skin surface along the +z ray through (x, y) (bisection)."""
        lo, hi = 0.0, 0.8  # inside at lo, outside at hi
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if self._skull(torch.tensor([[x, y, mid]]))[0] < 0:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def face_sdf(self, p):
        """Face/head SDF (eyes excluded; sockets carved where the eyeballs sit). ``[N,3] -> [N]``."""
        d = self._skull(p)
        r = self.r
        for c in self.eye_centers:
            sock = _ellipsoid(p, (float(c[0]), float(c[1]), float(c[2]) + 0.35 * r), (1.5 * r, 0.95 * r, 1.25 * r))
            d = _smax(d, -sock, 0.015)
        return d

    def eye_sdf(self, p, which: int):
        """SDF of eye ``which`` (0 = left, 1 = right): globe, plus the cornea when refractive."""
        c = self.eye_centers[which]
        d = (p - c).norm(dim=-1) - self.r
        if self.refractive:
            cc = c + self.axis * (APEX - CORNEA_R) * self.r
            d = torch.minimum(d, (p - cc).norm(dim=-1) - CORNEA_R * self.r)
        return d

    def scene_sdf(self, p):
        return torch.minimum(self.face_sdf(p), torch.minimum(self.eye_sdf(p, 0), self.eye_sdf(p, 1)))

    def face_normal(self, p, eps=1e-3):
        e = torch.eye(3, dtype=p.dtype) * eps
        g = torch.stack([self.face_sdf(p + e[i]) - self.face_sdf(p - e[i]) for i in range(3)], -1)
        return F.normalize(g, dim=-1)

    # ------------------------------------------------------------------ materials
    def hair(self, p):
        """Boolean [N]: hair (top/back of the head) or eyebrow region (diffuse only)."""
        x, y, z = p.unbind(-1)
        wob = 0.015 * torch.sin(23.0 * x + 3.0) * torch.sin(17.0 * z + 1.0)
        hairline = 0.26 - 0.6 * (0.2 - z).clamp_min(0.0) + wob
        scalp = y > hairline
        brow = (y > EYE_Y + 1.25 * self.r) & (y < EYE_Y + 1.25 * self.r + 0.028) & (x.abs() > 0.04) & (x.abs() < 0.2) & (z > 0.2)
        return scalp | brow

    def skin(self, p):
        """Face materials at points ``[N,3]`` -> (albedo [N,3], specular [N], roughness [N], hair [N] bool)."""
        n = p.shape[0]
        noise = torch.sin(p @ self.freq.T + self.phase).mean(-1)  # smooth, in [-1, 1]
        base = p.new_tensor([0.62, 0.40, 0.31])
        alb = base * (1.0 + 0.12 * noise)[:, None]
        x, y, z = p.unbind(-1)
        cheek = torch.exp(-(((x.abs() - 0.17) / 0.07) ** 2 + ((y + 0.12) / 0.06) ** 2))
        alb = alb + cheek[:, None] * p.new_tensor([0.06, -0.05, -0.04])
        lips = torch.exp(-((x / 0.07) ** 2 + ((y + 0.27) / 0.022) ** 2)) * (z > 0.2)
        alb = alb * (1 - lips[:, None]) + lips[:, None] * p.new_tensor([0.55, 0.18, 0.17])
        tzone = torch.exp(-((x / 0.09) ** 2)) * (y > -0.2)
        spec = (0.45 + 0.15 * noise + 0.3 * tzone).clamp(0.0, 1.0)
        rough = (0.42 - 0.08 * tzone + 0.05 * noise).clamp(0.1, 0.8)
        if self.texture == "fine":  # freckles and pores: two octaves of value noise, ~0.02-0.04 units across
            fine = 0.55 * _value_noise(p, 30.0, 0.37 * self.seed) + 0.45 * _value_noise(p, 61.0, 1.0 + 0.37 * self.seed)
            alb = alb * (0.2 + 1.6 * _smoothstep(0.25, 0.75, fine))[:, None]
        hair = self.hair(p)
        hair_alb = p.new_tensor([0.045, 0.03, 0.022]) * (1.0 + 0.3 * torch.sin(60.0 * x + 40.0 * z))[:, None]
        if self.texture == "fine":
            hair_alb = hair_alb * (0.4 + 1.8 * _value_noise(p, 45.0, 2.0 + 0.37 * self.seed))[:, None]
        alb = torch.where(hair[:, None], hair_alb, alb)
        spec = torch.where(hair, torch.zeros_like(spec), spec)
        rough = torch.where(hair, torch.full_like(rough, 0.8), rough)
        return alb.clamp(0.0, 1.0), spec, rough, hair

    def iris_albedo(self, q2, rho):
        """Albedo on the iris disc: ``q2 [N,2]`` in-plane offset, ``rho [N]`` radius (units of r)."""
        ang = torch.atan2(q2[:, 1], q2[:, 0])
        stripes = 0.75 + 0.25 * torch.sin(37.0 * ang) * torch.sin(11.0 * ang + 1.0)
        ring = 1.0 - 0.6 * _smoothstep(LIMBUS * 0.8, LIMBUS, rho)
        alb = self.iris_color * (stripes * ring)[:, None]
        pupil = (rho < PUPIL)[:, None]
        return torch.where(pupil, torch.full_like(alb, 0.01), alb)

    def sclera_albedo(self, cosang):
        pink = _smoothstep(0.6, -0.2, cosang)[:, None]
        return torch.tensor([0.78, 0.76, 0.72]) * (1 - pink) + torch.tensor([0.72, 0.55, 0.50]) * pink

    def eye_surface_albedo(self, p, which):
        """Sphere-model eye albedo at surface points ``[N,3]``: painted iris and pupil."""
        q = (p - self.eye_centers[which]) / self.r
        cosang = q @ self.axis
        rho = (q[:, :2]).norm(dim=-1)
        alb = self.sclera_albedo(cosang)
        iris = (cosang > 0) & (rho < LIMBUS)
        return torch.where(iris[:, None], self.iris_albedo(q[:, :2], rho), alb)

    def landmarks(self, which, angle_deg=35.0):
        """4 points on eye ``which``'s globe, ``angle_deg`` off the optical axis (up, down, out, in)."""
        c = self.eye_centers[which]
        a = math.radians(angle_deg)
        pts = []
        for dx, dy in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            d = torch.tensor([dx * math.sin(a), dy * math.sin(a), math.cos(a)])
            pts.append(c + self.r * d)
        return torch.stack(pts)


# --------------------------------------------------------------------------- cameras
def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Converted-convention c2w ``[4, 4]``: columns right, down, forward, centre."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    f = target - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = r, d, f, eye
    return m


def sweep_cameras(n_views: int, seed: int, distance: float = 2.6, target=(0.0, 0.0, 0.1)):
    """Phone-sweep camera path: ``n_views`` c2w ``[n, 4, 4]`` (converted convention)."""
    rng = np.random.RandomState(seed + 1)
    out = []
    for i in range(n_views):
        t = i / max(n_views - 1, 1)
        az = math.radians(-60.0 + 120.0 * t + rng.uniform(-2.0, 2.0))
        el = math.radians(18.0 * math.sin(2 * math.pi * 1.5 * t) + rng.uniform(-2.0, 2.0))
        dist = distance * (1.0 + rng.uniform(-0.03, 0.03))
        pos = np.asarray(target) + dist * np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
        out.append(look_at(pos, target))
    return np.stack(out)


# --------------------------------------------------------------------------- rendering
def _fresnel_dielectric(cosi, eta):
    """Exact unpolarised Fresnel reflectance, from outside (n=1) into index ``eta``."""
    cosi = cosi.clamp(0.0, 1.0)
    sint2 = (1.0 - cosi * cosi) / (eta * eta)
    cost = (1.0 - sint2).clamp_min(0.0).sqrt()
    rs = (cosi - eta * cost) / (cosi + eta * cost)
    rp = (eta * cosi - cost) / (eta * cosi + cost)
    return 0.5 * (rs * rs + rp * rp)


def _trace(head: Head, o, d, max_steps=160):
    """Sphere-trace rays ``o, d [N,3]``; returns (t [N], hit [N] bool)."""
    n = o.shape[0]
    c = torch.tensor([0.0, -0.08, -0.02])
    R = 0.85  # bounding sphere of the head
    oc = o - c
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - R * R)
    inside = disc > 0
    sq = disc.clamp_min(0).sqrt()
    t = (-b - sq).clamp_min(0.0)
    t_end = -b + sq
    hit = torch.zeros(n, dtype=torch.bool)
    active = torch.nonzero(inside).squeeze(-1)
    for _ in range(max_steps):
        if active.numel() == 0:
            break
        ta = t[active]
        s = head.scene_sdf(o[active] + ta[:, None] * d[active])
        done_hit = s < 2e-4
        ta = ta + 0.8 * s
        t[active] = ta
        hit[active[done_hit]] = True
        keep = (~done_hit) & (ta < t_end[active])
        active = active[keep]
    return t, hit


def _shade_eyes_sphere(head, p, v_cam, which, light):
    n = F.normalize(p - head.eye_centers[which], dim=-1)
    alb = head.eye_surface_albedo(p, which)
    out = S.shade_colocated(p, n, v_cam, alb, torch.full((p.shape[0], 1), 0.2), torch.full((p.shape[0], 1), 0.05), **light)
    return out["rgb"], alb


def _shade_eyes_cornea(head, p, cam, d, which, light):
    """Refractive eye: reflection at the cornea + refracted view of the iris (see module doc)."""
    r = head.r
    c = head.eye_centers[which]
    axis = head.axis
    cc = c + axis * (APEX - CORNEA_R) * r
    on_cornea = (p - cc).norm(dim=-1) - CORNEA_R * r < (p - c).norm(dim=-1) - r
    n_glob = F.normalize(p - c, dim=-1)
    n_corn = F.normalize(p - cc, dim=-1)
    n = torch.where(on_cornea[:, None], n_corn, n_glob)
    N = p.shape[0]
    # globe part: as the sphere model (sclera)
    alb = head.eye_surface_albedo(p, which)
    rgb = S.shade_colocated(p, n, cam, alb, torch.full((N, 1), 0.2), torch.full((N, 1), 0.05), **light)["rgb"]
    if on_cornea.any():
        idx = torch.nonzero(on_cornea).squeeze(-1)
        pc, nc, dc = p[idx], n_corn[idx], d[idx]
        camc = cam[idx]
        cosi = (-dc * nc).sum(-1).clamp(0.0, 1.0)
        Fr = _fresnel_dielectric(cosi, N_AQUEOUS)
        # specular reflection of the co-located light (GGX lobe, exact Fresnel)
        l = -dc
        alpha = torch.full((idx.numel(), 1), 0.05**2)
        D = S.ggx_distribution(cosi[:, None], alpha)
        Vis = S.smith_visibility(cosi[:, None], cosi[:, None], alpha)
        dist = (camc - pc).norm(dim=-1, keepdim=True)
        E = torch.tensor(light["light_color"]).reshape(1, 3) * light["light_intensity"] / dist**2
        refl = D * Vis * Fr[:, None] * E * cosi[:, None]
        # refraction (Snell, 1 -> 1.336)
        eta = 1.0 / N_AQUEOUS
        k = 1.0 - eta * eta * (1.0 - cosi * cosi)
        tdir = F.normalize(eta * dc + (eta * cosi - k.clamp_min(0).sqrt())[:, None] * nc, dim=-1)
        plane_pt = c + axis * IRIS_PLANE * r
        s = ((plane_pt - pc) @ axis) / (tdir @ axis).clamp_max(-1e-6)  # tdir points into the eye
        q = pc + s[:, None] * tdir
        off = (q - plane_pt) / r
        rho = off[:, :2].norm(dim=-1)
        ialb = head.iris_albedo(off[:, :2], rho)
        ialb = torch.where((rho < LIMBUS)[:, None], ialb, head.sclera_albedo(torch.full_like(rho, 0.8)))
        ln = -tdir
        cos_in = (ln @ axis).clamp(0.0, 1.0)[:, None]
        dist2 = dist + s[:, None]
        E2 = torch.tensor(light["light_color"]).reshape(1, 3) * light["light_intensity"] / dist2**2
        nax = axis.expand_as(ln)
        diff = S.burley_diffuse(nax, ln, ln, ialb, torch.full((idx.numel(), 1), 0.5)) * E2 * cos_in
        trans = ((1.0 - Fr) ** 2)[:, None]
        amb = S.sh_ambient(nax, light["sh_coeffs"], light["beta"], 1.0, ialb, 1.0)
        rgb[idx] = refl + trans * (diff + amb)
        alb[idx] = ialb
    return rgb, alb


def render(head: Head, c2w: np.ndarray, W: int, H: int, fl: float, chunk: int = 1 << 17):
    """Render all views.  ``c2w [V,4,4]`` converted convention.

    Returns dict of tensors ``[V, H, W, ...]``: ``rgb`` (linear, 3), ``mask``, ``hair``,
    ``leye``, ``reye`` (bool), ``spec`` (float).
    """
    V = c2w.shape[0]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    d_cam = torch.stack([(xs - W / 2 + 0.5) / fl, (ys - H / 2 + 0.5) / fl, torch.ones_like(xs)], -1).reshape(-1, 3)
    M = torch.from_numpy(c2w).float()
    d_all = F.normalize(torch.einsum("vij,pj->vpi", M[:, :3, :3], d_cam), dim=-1).reshape(-1, 3)
    o_all = M[:, None, :3, 3].expand(V, H * W, 3).reshape(-1, 3)
    P = d_all.shape[0]
    rgb = torch.zeros(P, 3)
    mask = torch.zeros(P, dtype=torch.bool)
    hair = torch.zeros(P, dtype=torch.bool)
    leye = torch.zeros(P, dtype=torch.bool)
    reye = torch.zeros(P, dtype=torch.bool)
    spec = torch.zeros(P)
    sh = torch.tensor(SH_AMBIENT)[:, None].repeat(1, 3)
    light = {"light_color": [1.0, 1.0, 1.0], "light_intensity": LIGHT_INTENSITY, "sh_coeffs": sh, "beta": SH_BETA}
    for s0 in range(0, P, chunk):
        o, d = o_all[s0 : s0 + chunk], d_all[s0 : s0 + chunk]
        t, hit = _trace(head, o, d)
        idx = torch.nonzero(hit).squeeze(-1)
        if idx.numel() == 0:
            continue
        p = o[idx] + t[idx, None] * d[idx]
        cam = o[idx]
        fd = head.face_sdf(p)
        e0, e1 = head.eye_sdf(p, 0), head.eye_sdf(p, 1)
        which = torch.stack([fd, e0, e1], -1).argmin(-1)
        out_rgb = torch.zeros(idx.numel(), 3)
        out_spec = torch.zeros(idx.numel())
        fsel = which == 0
        if fsel.any():
            pf = p[fsel]
            alb, sp, ro, hr = head.skin(pf)
            n = head.face_normal(pf)
            out_rgb[fsel] = S.shade_colocated(pf, n, cam[fsel], alb, sp[:, None], ro[:, None], **light)["rgb"]
            out_spec[fsel] = sp
            hair[s0 + idx[fsel]] = hr
        for k, em in ((1, leye), (2, reye)):
            sel = which == k
            if not sel.any():
                continue
            if head.refractive:
                col, _ = _shade_eyes_cornea(head, p[sel], cam[sel], d[idx][sel], k - 1, light)
            else:
                col, _ = _shade_eyes_sphere(head, p[sel], cam[sel], k - 1, light)
            out_rgb[sel] = col
            out_spec[sel] = 0.2
            em[s0 + idx[sel]] = True
        rgb[s0 + idx] = out_rgb
        spec[s0 + idx] = out_spec
        mask[s0 + idx] = True
    shp = (V, H, W)
    return {
        "rgb": rgb.reshape(*shp, 3),
        "mask": mask.reshape(shp),
        "hair": hair.reshape(shp),
        "leye": leye.reshape(shp),
        "reye": reye.reshape(shp),
        "spec": spec.reshape(shp),
    }


def _icosphere(level: int = 3):
    """Unit icosphere: ``(verts [V, 3] float32, faces [F, 3] int64)``."""
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=level)
    return np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int64)


def render_mesh(head: Head, c2w: np.ndarray, W: int, H: int, fl: float, mesh_res: int = 128, face_mesh=None):
    """:func:`render`'s output from rasterised meshes (``renderer="mesh"``): the marching-cubes face
    surface at ``mesh_res`` (smooth vertex normals) and two icosphere eyeballs, shaded at each pixel's
    surface point as :func:`render` shades (the face's normals and materials interpolated from its vertices).
    Sphere eye model only. ``face_mesh``: ``(verts, faces)`` of
    :func:`_face_mesh` when already computed."""
    from ..core import ops

    if head.refractive:
        raise ValueError("renderer 'mesh' draws the sphere eye model only (use renderer 'trace' with refractive)")
    fv, ff = face_mesh if face_mesh is not None else _face_mesh(head, mesh_res)
    import trimesh

    fn = np.asarray(trimesh.Trimesh(fv, ff, process=False).vertex_normals, np.float32)
    sv, sf = _icosphere(4)
    verts, faces, normals, part = [fv], [ff], [fn], [np.zeros(len(ff), np.int64)]
    off = len(fv)
    for k in range(2):
        c = head.eye_centers[k].numpy()
        verts.append(sv * head.r + c)
        faces.append(sf + off)
        normals.append(sv)
        part.append(np.full(len(sf), k + 1, np.int64))
        off += len(sv)
    verts = torch.from_numpy(np.concatenate(verts)).float().contiguous()
    faces = torch.from_numpy(np.concatenate(faces)).contiguous()
    normals = torch.from_numpy(np.concatenate(normals)).float().contiguous()
    part = torch.from_numpy(np.concatenate(part))
    K = torch.tensor([[fl, 0.0, W / 2], [0.0, fl, H / 2], [0.0, 0.0, 1.0]])
    sh = torch.tensor(SH_AMBIENT)[:, None].repeat(1, 3)
    light = {"light_color": [1.0, 1.0, 1.0], "light_intensity": LIGHT_INTENSITY, "sh_coeffs": sh, "beta": SH_BETA}
    # the face's materials at its vertices (interpolated per pixel: the noise is smoother than the facets)
    alb, sp, ro, hr = head.skin(torch.from_numpy(fv))
    n_eye = len(verts) - len(fv)
    mat = torch.cat([torch.cat([alb, sp[:, None], ro[:, None], hr[:, None].float()], -1),
                     torch.zeros(n_eye, 6)]).contiguous()
    V = c2w.shape[0]
    out = {k: torch.zeros((V, H, W), dtype=torch.bool) for k in ("mask", "hair", "leye", "reye")}
    out["rgb"] = torch.zeros(V, H, W, 3)
    out["spec"] = torch.zeros(V, H, W)
    for v in range(V):
        m = torch.from_numpy(c2w[v]).float()
        w2c = torch.linalg.inv(m)
        clip = ops.project_to_clip(verts, K, w2c, H, W, near=0.05, far=100.0)
        p2f, bary, _ = ops.rasterize(clip, faces, H, W)
        hit = p2f >= 0
        if not hit.any():
            continue
        p = ops.interpolate(verts, faces, p2f, bary)[hit]
        n = F.normalize(ops.interpolate(normals, faces, p2f, bary)[hit], dim=-1)
        mt = ops.interpolate(mat, faces, p2f, bary)[hit]
        which = part[p2f[hit].long()]
        cam = m[:3, 3].expand_as(p)
        rgb = torch.zeros(p.shape[0], 3)
        spec = torch.zeros(p.shape[0])
        fsel = which == 0
        if fsel.any():
            mf = mt[fsel]
            rgb[fsel] = S.shade_colocated(p[fsel], n[fsel], cam[fsel], mf[:, :3], mf[:, 3:4], mf[:, 4:5], **light)["rgb"]
            spec[fsel] = mf[:, 3]
        for k in (1, 2):
            sel = which == k
            if sel.any():
                rgb[sel] = _shade_eyes_sphere(head, p[sel], cam[sel], k - 1, light)[0]
                spec[sel] = 0.2
        out["rgb"][v][hit] = rgb
        out["spec"][v][hit] = spec
        out["mask"][v] = hit
        out["hair"][v][hit] = (which == 0) & (mt[:, 5] > 0.5)
        out["leye"][v][hit] = which == 1
        out["reye"][v][hit] = which == 2
    return out


# --------------------------------------------------------------------------- output
def _face_mesh(head: Head, res: int):
    import mcubes

    lo = np.array([-0.5, -0.82, -0.6])
    hi = np.array([0.5, 0.6, 0.56])
    step = (hi - lo).max() / res
    n = np.ceil((hi - lo) / step).astype(int) + 1
    axes = [lo[i] + step * np.arange(n[i]) for i in range(3)]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    sdf = torch.cat([head.face_sdf(torch.from_numpy(c).float()) for c in np.array_split(g, max(1, len(g) // 200000))])
    vol = sdf.numpy().reshape(*n)
    verts, faces = mcubes.marching_cubes(-vol, 0.0)  # PyMCubes: inside = values above the level
    verts = verts * step + lo
    faces = faces.astype(np.int64)
    # make the normals point outwards (signed volume > 0)
    tri = verts[faces]
    vol_signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    if vol_signed < 0:
        faces = faces[:, ::-1].copy()
    return verts.astype(np.float32), faces


def _write_obj(path, verts, faces):
    with open(path, "w") as f:
        f.write("# eyefast.synth ground-truth face surface (world units, converted convention)\n")
        np.savetxt(f, verts, fmt="v %.6f %.6f %.6f")
        np.savetxt(f, faces + 1, fmt="f %d %d %d")


def _png(path, arr):
    import imageio.v3 as iio

    iio.imwrite(path, arr)


def _config_dict(head: Head, preset: str, refractive: bool) -> dict:
    r = head.r
    lc, rc = head.eye_centers.tolist()
    ldm = [head.landmarks(0).tolist(), head.landmarks(1).tolist()]
    if preset == "tiny":
        train = {
            "max_steps": 200, "init_level": 4, "level_grow_iter": 20, "warmup_steps": 20,
            "milestones": [120, 170], "save_freq": 100, "val_freq": 100, "vis_freq": 100,
            "mesh_render": False, "mesh_render_iter": 150,
        }
        renderer = {"sample_batch_size": 16384, "render_n_samples": 256, "chunk_size": 4096, "max_num_ray": 1024,
                    "grid_resolution": 32, "grid_update_freq": 16}
        network = {"num_levels": 8, "level_dim": 2, "geo_feat_dim": 15, "neighbor_eps": 0.01}
    else:
        # sized for 2 CPU cores: minutes (65k samples per step; a 64^3 occupancy grid)
        train = {
            "max_steps": 800, "init_level": 4, "level_grow_iter": 40, "warmup_steps": 100,
            "milestones": [500, 700], "save_freq": 400, "val_freq": 400, "vis_freq": 200,
            "mesh_render": True, "mesh_render_iter": 700,
        }
        renderer = {"sample_batch_size": 65536, "render_n_samples": 512, "chunk_size": 8192, "max_num_ray": 8192,
                    "grid_resolution": 64, "grid_update_freq": 16}
        network = {"num_levels": 16, "level_dim": 2, "geo_feat_dim": 15, "neighbor_eps": 0.005}
    return {
        "name": f"synth_{preset}" + ("_refractive" if refractive else ""),
        "workspace": "workspace",
        "backbone": "volsdf",
        "eye_model": "cornea" if refractive else "sphere",
        "data": {
            "meta_path": ".",
            "bound": 1.0,
            "eyeball_left_center": [round(v, 6) for v in lc],  # units of the bound (= world, bound 1)
            "eyeball_right_center": [round(v, 6) for v in rc],
            "eyeball_min_size": round(0.8 * r, 6),
            "eyeball_max_size": round(1.2 * r, 6),
            "fix_eyeball_center": False,
            "left_eye_ldm": [[round(v, 6) for v in q] for q in ldm[0]],
            "right_eye_ldm": [[round(v, 6) for v in q] for q in ldm[1]],
            "sh_scale": 1.0,
            "beta": SH_BETA,
            "dilate_ks": 3,
            "ignore_eyeball": False,
        },
        "network": network,
        "light": {"color": [1.0, 1.0, 1.0], "intensity": LIGHT_INTENSITY, "gamma": GAMMA},
        "brdf": {"type": "blender", "min_roughness": 0.1, "max_roughness": 0.8},
        "renderer": renderer,
        "train": train,
    }


#: the largest capture :func:`generate` makes (it renders every view in memory at once)
MAX_VIEWS = 1000
MAX_RESOLUTION = 2048


def generate(out, preset="tiny", views=None, resolution=None, seed=0, refractive=False, texture="smooth",
             renderer="trace") -> dict:
    """Write a synthetic capture to folder ``out``; returns a summary dict.

    Args: see the module docstring / CLI.  ``views`` and ``resolution`` override the
    preset: ``resolution`` is the side of square images, or ``(width, height)``.
    ``texture``: ``"smooth"`` or ``"fine"`` (high-frequency albedo); ``renderer``: ``"trace"`` or
    ``"mesh"`` (see the module docstring).
    """
    import yaml

    from . import config as _config

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; renderers: {', '.join(RENDERERS)}")
    if renderer == "mesh" and refractive:
        raise ValueError("renderer 'mesh' draws the sphere eye model only: use renderer 'trace' with refractive")
    pr = PRESETS[preset]
    V = int(views if views is not None else pr["views"])
    res_ = resolution or pr["resolution"]
    W, H = (int(res_[0]), int(res_[1])) if isinstance(res_, (tuple, list)) else (int(res_), int(res_))
    R = min(W, H)
    if not (1 <= V <= MAX_VIEWS and 4 <= R and max(W, H) <= MAX_RESOLUTION):
        raise ValueError(f"need 1 to {MAX_VIEWS} views and a resolution of 4 to {MAX_RESOLUTION} pixels per side, "
                         f"got {V} views and {W}x{H}")
    t0 = time.time()
    head = Head(refractive=refractive, seed=seed, texture=texture)
    # landmarks must lie on the exposed globe (outside the skin)
    for w in (0, 1):
        fd = head.face_sdf(head.landmarks(w))
        if not (fd > 0).all():  # pragma: no cover - a geometry regression
            raise AssertionError(f"synth: eye {w} landmarks inside the face (face sdf {fd.tolist()})")
    c2w = sweep_cameras(V, seed)
    fl = 2.2 * R  # vertical/horizontal fov ~25.5 deg; the head fills most of the frame
    out = os.path.abspath(out)
    for sub in ("image", "mask", "hair_mask", "leye_mask", "reye_mask", "specular_bfm", "gt"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    mc_res = pr["mc_res"]
    if renderer == "mesh":
        mc_res = max(mc_res, min(192, max(W, H) // 2))  # facets about 2 pixels across
        gt_mesh = _face_mesh(head, mc_res)
        res = render_mesh(head, c2w, W, H, fl, mc_res, gt_mesh)
    else:
        res = render(head, c2w, W, H, fl)
    srgb = (res["rgb"].clamp(0, 1) ** (1.0 / GAMMA) * 255.0 + 0.5).to(torch.uint8).numpy()
    u8 = lambda b: (b.numpy().astype(np.uint8) * 255)  # noqa: E731
    frames = []
    nerf = cora_to_nerf(c2w)
    for i in range(V):
        name = f"{i:05d}.png"
        _png(os.path.join(out, "image", name), srgb[i])
        _png(os.path.join(out, "mask", name), u8(res["mask"][i]))
        _png(os.path.join(out, "hair_mask", name), u8(res["hair"][i]))
        _png(os.path.join(out, "leye_mask", name), u8(res["leye"][i]))
        _png(os.path.join(out, "reye_mask", name), u8(res["reye"][i]))
        _png(os.path.join(out, "specular_bfm", name), (res["spec"][i].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
        frames.append({"file_path": f"image/{name}", "transform_matrix": nerf[i].tolist()})
    meta = {
        "w": W, "h": H, "fl_x": fl, "fl_y": fl, "cx": W / 2, "cy": H / 2,
        "camera_angle_x": 2 * math.atan(W / (2 * fl)),
        "frames": frames,
    }
    with open(os.path.join(out, "transforms.json"), "w") as f:
        json.dump(meta, f, indent=1)
    cfg = _config_dict(head, preset, refractive)
    _config.from_dict(cfg, base_dir=out)  # validate what we write
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write("# eyefast.synth: CoRA-style config for this synthetic capture\n")
        yaml.safe_dump(cfg, f, sort_keys=False, default_flow_style=None)
    # ground truth
    verts, faces = gt_mesh if renderer == "mesh" else _face_mesh(head, mc_res)
    _write_obj(os.path.join(out, "gt", "face.obj"), verts, faces)
    alb, sp, ro, _ = head.skin(torch.from_numpy(verts))
    np.save(os.path.join(out, "gt", "albedo.npy"), alb.numpy().astype(np.float32))
    np.save(os.path.join(out, "gt", "specular.npy"), sp.numpy().astype(np.float32))
    np.save(os.path.join(out, "gt", "roughness.npy"), ro.numpy().astype(np.float32))
    eyes = {
        "left": {"center": head.eye_centers[0].tolist(), "radius": head.r},
        "right": {"center": head.eye_centers[1].tolist(), "radius": head.r},
        "convention": "left = the subject's left eye (+x world), seen on the viewer's right in a frontal view",
        "model": "cornea" if refractive else "sphere",
        "axis": head.axis.tolist(),
        "limbus_radius": LIMBUS * head.r,
        "pupil_radius": PUPIL * head.r,
    }
    if refractive:
        for k, c in (("left", head.eye_centers[0]), ("right", head.eye_centers[1])):
            eyes[k]["cornea_center"] = (c + head.axis * (APEX - CORNEA_R) * head.r).tolist()
            eyes[k]["cornea_radius"] = CORNEA_R * head.r
            eyes[k]["iris_plane_center"] = (c + head.axis * IRIS_PLANE * head.r).tolist()
        eyes["refractive_index"] = N_AQUEOUS
    with open(os.path.join(out, "gt", "eyes.json"), "w") as f:
        json.dump(eyes, f, indent=1)
    scene = {
        "preset": preset, "views": V, "resolution": [W, H] if W != H else R, "seed": seed, "refractive": refractive,
        "texture": texture, "renderer": renderer,
        "light": {"color": [1.0, 1.0, 1.0], "intensity": LIGHT_INTENSITY, "gamma": GAMMA},
        "sh_ambient": {"coeffs_per_channel": SH_AMBIENT, "beta": SH_BETA, "occlusion": 1.0, "sh_scale": 1.0},
        "world": "+y up, +z face forward, +x subject's left; converted (CoRA) convention",
        "c2w_converted": c2w.tolist(),
    }
    with open(os.path.join(out, "gt", "scene.json"), "w") as f:
        json.dump(scene, f)
    dt = time.time() - t0
    summary = {"out": out, "views": V, "resolution": R if W == H else f"{W}x{H}", "seconds": dt, "face_vertices": int(len(verts)),
               "foreground": float(res["mask"].float().mean())}
    log.info("%d views at %dx%d -> %s in %.1fs (face mesh %d verts, foreground %.0f%%)", V, W, H, out, dt,
             summary["face_vertices"], 100 * summary["foreground"])
    return summary
