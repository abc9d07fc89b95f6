"""``preview.png``: the exported meshes with their baked textures, relit from a few directions."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..core import ops
from ..core.imaging import label_panels
from ..geometry.mesh import near_far, scaled_K
from ..scene import shading as S
from ..scene.shading import EYE_ROUGHNESS, EYE_SPECULAR, IRIS_ROUGHNESS
from .files import GAMMA_TEX, to_u8, write_png

__all__ = ["render_preview", "render_assets", "asset_objects", "preview_lights", "run_shading", "PREVIEW_PANELS"]


def _rot(v: torch.Tensor, axis: torch.Tensor, ang: float) -> torch.Tensor:
    axis = F.normalize(axis, dim=0)
    c, s = math.cos(ang), math.sin(ang)
    return v * c + torch.linalg.cross(axis, v, dim=0) * s + axis * (axis @ v) * (1 - c)


#: the panels of preview.png, left to right then top to bottom, as written on them
PREVIEW_PANELS = ("photo", "flash light", "light from the left", "light from the right", "light from above",
                  "light from below")


def asset_objects(face: dict, eyes: dict) -> list:
    """The exported meshes as the list :func:`render_assets` draws: the face, the two globes and, for
    refractive eyes, the iris discs (diffuse, normal = gaze; the clear corneas are left out: this
    rasteriser does not refract). ``face``: ``verts``, ``faces``, ``uvs``, ``tex`` (``diffuse``,
    ``specular``, ``roughness``, ``normal``: uint8 images); ``eyes[side]``: ``verts``, ``faces``,
    ``uvs``, ``tex["diffuse"]``, ``center`` and optionally ``cornea["iris"]``."""
    objs = [face, eyes["left"], eyes["right"]]
    objs += [{**eyes[s]["cornea"]["iris"], "iris": True} for s in ("left", "right") if "cornea" in eyes[s]]
    return objs


@torch.no_grad()
def render_assets(objs: list, K: torch.Tensor, c2w: torch.Tensor, H: int, W: int, lights: list, *, light_scale=1.0,
                  sh_coeffs=None, sh_beta: float = 10.0, sh_scale: float = 1.0, occlusion: float = 1.0,
                  near_far_cams=None) -> dict:
    """Rasterises the exported meshes (:func:`asset_objects`) with their baked textures from a pinhole
    camera (``K [3, 3]`` of an ``H x W`` image, ``c2w [4, 4]`` in the capture's convention) and shades
    them with :func:`eyefast.scene.shading.shade_lights` (``lights``: point lights; the eyes' fixed
    BRDF) plus the SH ambient. Returns ``[H, W, ...]`` CPU tensors: ``rgb`` (linear, 0 off the mesh),
    ``opacity`` (1 on the mesh), ``albedo``, ``normal``, ``specular``, ``roughness``, ``depth`` (camera z),
    ``object`` (index into ``objs``, -1 off the mesh)."""
    K, c2w = K.detach().float().cpu(), c2w.detach().float().cpu()
    w2c = torch.linalg.inv(c2w.double()).float()
    verts, faces, uvs, obj_id, off = [], [], [], [], 0
    for k, o in enumerate(objs):
        verts.append(torch.as_tensor(np.asarray(o["verts"]), dtype=torch.float32))
        faces.append(torch.as_tensor(np.asarray(o["faces"]), dtype=torch.int64) + off)
        uvs.append(torch.as_tensor(np.asarray(o["uvs"]), dtype=torch.float32))
        obj_id.append(torch.full((len(o["faces"]),), k))
        off += len(o["verts"])
    v, f, t, oid = torch.cat(verts), torch.cat(faces), torch.cat(uvs), torch.cat(obj_id)
    cam = c2w[:3, 3]
    near, far = near_far(cam[None] if near_far_cams is None else near_far_cams.detach().float().cpu(), v)
    clip = ops.project_to_clip(v, K, w2c, H, W, near=near, far=far)
    p2f, bary, depth = ops.rasterize(clip, f, H, W)
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
        albedo[sel] = smp(o["tex"]["diffuse"])[:, :3] ** GAMMA_TEX
        if k == 0:
            spec[sel] = smp(o["tex"]["specular"])[:, :1]
            rough[sel] = smp(o["tex"]["roughness"])[:, :1]
            nrm[sel] = F.normalize(smp(o["tex"]["normal"])[:, :3] * 2 - 1, dim=-1)
        elif o.get("iris"):
            spec[sel] = 0.0
            rough[sel] = IRIS_ROUGHNESS
            nrm[sel] = torch.as_tensor(np.asarray(o["normals"])[0], dtype=torch.float32)
        else:
            spec[sel] = EYE_SPECULAR
            rough[sel] = EYE_ROUGHNESS
            nrm[sel] = F.normalize(x[sel] - torch.as_tensor(np.asarray(o["center"]), dtype=torch.float32), dim=-1)
    sh = None if sh_coeffs is None else sh_coeffs.detach().cpu().float()
    shade = S.shade_lights(x, nrm, cam, albedo, spec, rough, lights, float(light_scale), sh, sh_beta, occlusion,
                           sh_scale)

    def image(vals, c):
        img = torch.zeros(H, W, c)
        img[hit] = vals.reshape(n, c)
        return img

    return {"rgb": image(shade["rgb"], 3), "opacity": hit.float(), "albedo": image(albedo, 3),
            "normal": image(nrm, 3), "specular": image(spec, 1)[..., 0], "roughness": image(rough, 1)[..., 0],
            "diffuse": image(shade["diffuse"] + shade["ambient"], 3), "spec_rgb": image(shade["specular"], 3),
            "depth": torch.where(hit, depth, torch.zeros_like(depth)),
            "object": torch.where(hit, oid[p2f.clamp_min(0).long()], torch.full_like(p2f, -1).long())}


def preview_lights(c2w: torch.Tensor, centre: torch.Tensor, angle_deg: float = 50.0) -> list:
    """Light positions ``[3]`` around ``centre`` at the camera's distance: the camera's own direction,
    then turned ``angle_deg`` to the viewer's left, right, up and down (the order of
    :data:`PREVIEW_PANELS` after the photo)."""
    cam = c2w[:3, 3]
    D = float((cam - centre).norm())
    d0 = F.normalize(cam - centre, dim=0)
    right, up = c2w[:3, 0], -c2w[:3, 1]
    ang = math.radians(angle_deg)
    # camera frame x right, y down: rotating d0 about `up` by +ang moves the light to the viewer's right,
    # about `right` by +ang moves it down
    dirs = [d0, _rot(d0, up, -ang), _rot(d0, up, ang), _rot(d0, right, -ang), _rot(d0, right, ang)]
    return [centre + D * d for d in dirs]


def run_shading(run) -> dict:
    """The learned scalars of the shading that :func:`render_assets` takes from a run: ``light_scale``,
    the SH ambient (``sh_coeffs``, ``sh_beta``, ``sh_scale``) and the mean occlusion of the training views."""
    model = run.model
    seen = model.frame_seen.detach().cpu()
    occ = float(torch.sigmoid(model.sh_occlusion.detach().cpu())[seen].mean()) if bool(seen.any()) else 1.0
    return {"light_scale": float(model.light_scale.detach().cpu()), "sh_coeffs": model.sh_coeffs.detach().cpu(),
            "sh_beta": float(model.sh_beta), "sh_scale": float(model.sh_scale), "occlusion": occ}


@torch.no_grad()
def render_preview(run, face: dict, eyes: dict, path: str, long_side: int = 384) -> None:
    """``preview.png``: the exported meshes with their baked textures, rendered from the first training
    camera (2 x 3 panels: photo, flash light, light from the viewer's left / right / above /
    below), shaded with Burley + GGX (eyefast.scene.shading) and the learned SH ambient; each panel
    carries its name (:data:`PREVIEW_PANELS`)."""
    cfg, cap = run.cfg, run.capture("train")
    s = long_side / max(cap.H, cap.W)
    Hs, Ws = max(1, round(cap.H * s)), max(1, round(cap.W * s))
    Ks = scaled_K(cap.K.cpu(), s)
    c2w = cap.c2w[0].cpu()
    objs = asset_objects(face, eyes)
    centre = torch.as_tensor(np.asarray(face["verts"]).mean(0), dtype=torch.float32)
    color = list(cfg.light.color)
    inten = float(cfg.light.intensity)
    photo = cap.full_image(0).cpu().permute(2, 0, 1)[None]
    photo = F.interpolate(photo, size=(Hs, Ws), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    panels = [photo]
    for L in preview_lights(c2w, centre):
        r = render_assets(objs, Ks, c2w, Hs, Ws, [S.point_light(L, color, inten)], near_far_cams=cap.cam_centers,
                          **run_shading(run))
        panels.append(r["rgb"].clamp(0, 1) ** (1.0 / float(cfg.light.gamma)))
    panels = label_panels(panels, PREVIEW_PANELS)
    top = torch.cat(panels[:3], 1)
    bottom = torch.cat(panels[3:], 1)
    write_png(path, to_u8(torch.cat([top, bottom], 0)))
