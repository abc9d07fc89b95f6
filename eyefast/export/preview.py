"""``preview.png``: the exported meshes with their baked textures, relit from a few directions."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ops
from ..geometry.mesh import near_far, scaled_K
from ..scene import shading as S
from ..scene.shading import EYE_ROUGHNESS, EYE_SPECULAR, IRIS_ROUGHNESS
from .files import GAMMA_TEX, to_u8, write_png

__all__ = ["render_preview"]


def _rot(v: torch.Tensor, axis: torch.Tensor, ang: float) -> torch.Tensor:
    axis = F.normalize(axis, dim=0)
    c, s = math.cos(ang), math.sin(ang)
    return v * c + torch.linalg.cross(axis, v, dim=0) * s + axis * (axis @ v) * (1 - c)


@torch.no_grad()
def render_preview(run, face: dict, eyes: dict, path: str, long_side: int = 384) -> None:
    """``preview.png``: the exported meshes with their baked textures, rendered from the first
    training camera (2 x 3 panels: photo, flash light, light from the viewer's left / right / above /
    below), shaded with Burley + GGX (eyefast.scene.shading) and the learned SH ambient."""
    model, cfg, cap = run.model, run.cfg, run.capture("train")
    s = long_side / max(cap.H, cap.W)
    Hs, Ws = max(1, round(cap.H * s)), max(1, round(cap.W * s))
    Ks = scaled_K(cap.K.cpu(), s)
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
    near, far = near_far(cap.cam_centers.cpu(), v)
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
    write_png(path, to_u8(torch.cat([top, bottom], 0)))
