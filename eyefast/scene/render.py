"""Volume rendering of the head model (SPEC sections 3-4).

:func:`render_rays` samples each ray in the occupancy grid (marching stops at the far side of
an eye sphere the ray meets: ``t_max`` from the fused ray-sphere kernel), prunes samples with
the scene density (transmittance below ``early_stop_eps``), evaluates geometry, material and
the radiance head at the kept samples, shades them under the co-located light (or, for
relighting, point lights placed anywhere), and composites
with VolSDF weights and per-object opacities (ObjectSDF++: scene transmittance, each object's
alpha from its own density).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.eyes import REGION_IRIS
from . import shading as S

__all__ = ["render_rays", "step_size", "light_of", "make_grid", "render_image", "render_view"]

EARLY_STOP_EPS = 1e-4
ALPHA_THRE = 0.0


def step_size(cfg) -> float:
    """Marching step ``2 * bound * sqrt(3) / render_n_samples`` (docs/method.md section 4)."""
    return 2.0 * cfg.data.bound * math.sqrt(3.0) / cfg.renderer.render_n_samples


def light_of(cfg, device="cpu") -> dict:
    """The capture's light from the config's ``light`` section: ``color`` (a ``[3]`` float32 tensor on
    ``device``, made once: a tensor from Python data is a blocking copy on a GPU) and ``intensity``."""
    return {"color": torch.tensor(list(cfg.light.color), dtype=torch.float32, device=device),
            "intensity": float(cfg.light.intensity)}


def make_grid(cfg):
    """The occupancy grid over ``[-bound, bound]^3`` (``renderer.grid_resolution`` cells per axis)."""
    from ..core.occupancy import OccupancyGrid

    b = cfg.data.bound
    return OccupancyGrid([-b, -b, -b, b, b, b], resolution=cfg.renderer.grid_resolution)


def _eye_t_max(model, ops, rays_o, rays_d):
    """Per-ray end of marching: the far side of the first eye sphere the ray meets (+inf if none)."""
    if model.ignore_eyeball:
        return None
    with torch.no_grad():
        _, t_far, index, _ = ops.ray_sphere(rays_o, rays_d, model.eye_centers.detach().contiguous(),
                                            model.eye_radius.detach().expand(2).contiguous())
    return torch.where(index >= 0, t_far, torch.full_like(t_far, 1e10)).contiguous()


def render_rays(model, grid, ops, rays_o, rays_d, frame_ids, light, *, step: float, train: bool,
                stratified: bool = False, generator=None, with_extras: bool = False, shading: str = "surface"):
    """Renders rays ``[N, 3]`` (unit directions).

    Args:
        model: :class:`eyefast.model.HeadModel`. grid: :class:`eyefast.OccupancyGrid`.
        ops: :class:`eyefast.backend.Backend`. frame_ids: ``[N]`` long (global frame ids, for the
            per-view ambient occlusion). light: dict ``color [3]``, ``intensity`` (the co-located
            flash of the capture); with a ``lights`` list (of :func:`eyefast.scene.shading.point_light`)
            those point lights, placed anywhere, shade instead (:func:`eyefast.scene.shading.shade_lights`).
        step: marching step. train: keep the graph of the SDF gradient (eikonal, normal losses).
        shading: ``"surface"`` (deferred: material, BRDF and radiance head once per ray at the
            expected surface point) or ``"sample"`` (at every sample, then composited).

    Returns:
        dict of per-ray ``rgb`` (reconstruction), ``rgb_rad`` (radiance head), ``opacity [N]``,
        ``obj_opacity [N, K]`` (face, left, right eye; K = 1 with ``ignore_eyeball``),
        ``specular [N]`` (accumulated specular intensity), ``depth [N]`` (expected t, 0 where
        empty), ``n_samples`` (int) and ``eikonal`` (0-dim, mean over samples); with
        ``with_extras`` also ``normal``, ``diffuse``, ``spec_rgb``, ``albedo`` ``[N, 3]`` and ``roughness [N]``.
    """
    n = rays_o.shape[0]
    t_max = _eye_t_max(model, ops, rays_o, rays_d)

    def sigma_fn(t_starts, t_ends, ray_indices):
        mid = (t_starts + t_ends) * 0.5
        x = rays_o[ray_indices] + rays_d[ray_indices] * mid[:, None]
        return model.density(model.scene_sdf(x))

    with torch.no_grad():
        ri, ts, te, offs = ops.sampling(grid, rays_o, rays_d, sigma_fn=sigma_fn, t_max=t_max, render_step_size=step,
                                        early_stop_eps=EARLY_STOP_EPS, alpha_thre=ALPHA_THRE, stratified=stratified,
                                        generator=generator)
    dev, dt = rays_o.device, rays_o.dtype
    m = ts.shape[0]
    k_obj = 1 if model.ignore_eyeball else 3
    if m == 0:
        z = torch.zeros(n, 3, device=dev, dtype=dt)
        zero = (model.beta_param * 0.0).sum()
        out = {"rgb": z, "rgb_rad": z, "opacity": torch.zeros(n, device=dev, dtype=dt),
               "obj_opacity": torch.zeros(n, k_obj, device=dev, dtype=dt), "specular": torch.zeros(n, device=dev),
               "depth": torch.zeros(n, device=dev), "n_samples": 0, "eikonal": zero}
        if with_extras:
            out.update(normal=z, diffuse=z, spec_rgb=z, albedo=z, roughness=torch.zeros(n, device=dev, dtype=dt))
        return out
    mid = (ts + te) * 0.5
    o, d = rays_o[ri], rays_d[ri]
    x = o + d * mid[:, None]

    sdf_face, feat, grad = model.face_with_gradient(x, create_graph=train)
    n_face = F.normalize(grad, dim=-1)
    eikonal = ((grad.norm(dim=-1) - 1.0) ** 2).mean()
    if model.ignore_eyeball:
        sdf_scene = sdf_face
        normals = n_face
        on_eye = None
        sig_obj = model.density(sdf_face)[:, None]
    else:
        eye = model.eye_sdf(x)
        emin, which = eye.min(-1)
        on_eye = emin < sdf_face
        sdf_scene = torch.minimum(sdf_face, emin)
        normals = torch.where(on_eye[:, None], model.eye_normal(x, which), n_face)
        sig_obj = model.density(torch.cat([sdf_face[:, None], eye], -1))
    sigma = model.density(sdf_scene)
    weights, trans, alphas = ops.weights_from_density(ts, te, sigma, ri, offs)
    alpha_obj = 1.0 - torch.exp(-sig_obj * (te - ts)[:, None])
    # the opacity (sum of T alpha) and the per-object opacities (sum of T alpha_obj) in one accumulate
    acc = ops.accumulate(trans, torch.cat([alphas[:, None], alpha_obj], -1), ri, offs)
    out = {"opacity": acc[:, 0], "obj_opacity": acc[:, 1:], "n_samples": int(m), "eikonal": eikonal}
    if shading == "sample":
        _shade_samples(out, model, ops, rays_o, rays_d, x, o, d, normals, feat, on_eye, mid, weights, ri, offs,
                       frame_ids, light, with_extras)
    else:
        _shade_surface(out, model, ops, rays_o, rays_d, x, normals, feat, on_eye, mid, weights, ri, offs, frame_ids,
                       light, with_extras)
    return out


def _material(model, x, eye_w):
    albedo, spec, rough = model.material(x)
    if eye_w is not None:  # SPEC 2: eye surfaces are glossy with a fixed BRDF
        spec = eye_w * S.EYE_SPECULAR + (1.0 - eye_w) * spec
        rough = eye_w * S.EYE_ROUGHNESS + (1.0 - eye_w) * rough
    return albedo, spec, rough


def _shade(model, x, normals, cam, albedo, spec, rough, occ, light):
    if "lights" in light:  # point lights placed anywhere (eyefast render / view: eyefast.visual)
        return S.shade_lights(x, normals, cam, albedo, spec[:, None], rough[:, None], light["lights"],
                              model.light_scale, model.sh_coeffs, model.sh_beta, occ[:, None], model.sh_scale)
    return S.shade_colocated(x, normals, cam, albedo, spec[:, None], rough[:, None], light["color"],
                             light["intensity"], model.light_scale, model.sh_coeffs, model.sh_beta, occ[:, None],
                             model.sh_scale)


def _shade_samples(out, model, ops, rays_o, rays_d, x, o, d, normals, feat, on_eye, mid, weights, ri, offs, frame_ids,
                   light, extras):
    """Shading at every sample, then compositing (the NeuS-style path)."""
    albedo, spec, rough = _material(model, x, None if on_eye is None else on_eye.to(x.dtype))
    shade = _shade(model, x, normals, o, albedo, spec, rough, model.occlusion(frame_ids)[ri], light)
    rad = model.radiance(feat, d, normals)
    vals = [shade["rgb"], rad, spec[:, None], mid[:, None]]
    if extras:
        vals += [normals, shade["diffuse"] + shade["ambient"], shade["specular"], albedo, rough[:, None]]
    if model.cornea:
        vals.append(on_eye.to(x.dtype)[:, None])
    acc = ops.accumulate(weights, torch.cat(vals, -1), ri, offs)
    out.update(rgb=acc[:, 0:3], rgb_rad=acc[:, 3:6], specular=acc[:, 6], depth=acc[:, 7])
    if extras:
        out.update(normal=acc[:, 8:11], diffuse=acc[:, 11:14], spec_rgb=acc[:, 14:17], albedo=acc[:, 17:20],
                   roughness=acc[:, 20])
    if model.cornea:
        eye_w = (acc[:, -1] / out["opacity"].clamp_min(1e-6)).clamp(0.0, 1.0)
        _cornea_blend(out, model, ops, rays_o, rays_d, eye_w, frame_ids, light, extras)


def _shade_surface(out, model, ops, rays_o, rays_d, x, normals, feat, on_eye, mid, weights, ri, offs, frame_ids, light,
                   extras):
    """Deferred shading: composite position, normal, geometry feature and eye share per ray, then
    evaluate the material, the BRDF and the radiance head once per ray at that expected surface point
    (scaled by the opacity). With VolSDF's sharp density the weights sit on the surface, so this matches
    per-sample shading at convergence at a fraction of the cost (material and radiance MLPs per ray)."""
    vals = [x, normals, feat, mid[:, None]]
    if on_eye is not None:
        vals.append(on_eye.to(x.dtype)[:, None])
    acc = ops.accumulate(weights, torch.cat(vals, -1), ri, offs)
    op = out["opacity"]
    inv = 1.0 / op.clamp_min(1e-6)
    g = feat.shape[1]
    xs = acc[:, 0:3] * inv[:, None]
    ns = F.normalize(acc[:, 3:6], dim=-1)
    fs = acc[:, 6:6 + g] * inv[:, None]
    eye_w = (acc[:, 7 + g] * inv).clamp(0.0, 1.0) if on_eye is not None else None
    albedo, spec, rough = _material(model, xs, eye_w)
    shade = _shade(model, xs, ns, rays_o, albedo, spec, rough, model.occlusion(frame_ids), light)
    rad = model.radiance(fs, rays_d, ns)
    w = op[:, None]
    out.update(rgb=shade["rgb"] * w, rgb_rad=rad * w, specular=spec * op, depth=acc[:, 6 + g])
    if extras:
        out.update(normal=ns * w, diffuse=(shade["diffuse"] + shade["ambient"]) * w, spec_rgb=shade["specular"] * w,
                   albedo=albedo * w, roughness=rough * op)
    if model.cornea:
        _cornea_blend(out, model, ops, rays_o, rays_d, eye_w, frame_ids, light, extras)


def _cornea_blend(out, model, ops, rays_o, rays_d, eye_w, frame_ids, light, extras):
    """Refractive eyes (``eye_model: cornea``): rays the fused ``trace_eyes`` kernel finds on a
    cornea take, for the eye share ``eye_w`` of their opacity, the cornea colour of
    :meth:`eyefast.model.HeadModel.cornea_rgb` (reflection + refracted iris) instead of the
    surface shading; the sclera keeps the volumetric material path.

    The cornea colour does not move the eye centres and radius (they are detached here and learn
    from the masks, landmarks and the volume, as in the sphere model): its derivatives w.r.t. them
    go through the hit distance, ~1 / (n . d), so rays grazing the cornea (side views, the rim)
    dominate them, and in float32 their rounding does; with Adam's normalised steps that noise
    walked the eyes off their place (26% of the radius in one demo run)."""
    t, eye, region, normal, refr, fres, t_iris, uv = ops.trace_eyes(
        rays_o.contiguous(), rays_d.contiguous(), model.eyes_packed(geometry_grad=False).to(rays_o.dtype))
    # every ray is shaded (no compaction: no host sync), with safe stand-ins where no cornea is hit, and
    # only the hits are blended in
    hit = region >= REGION_IRIS
    on_iris = region == REGION_IRIS
    h3 = hit[:, None]
    sub = (torch.where(hit, t, torch.ones_like(t)), eye.clamp_min(0), region,
           torch.where(h3, normal, -rays_d), torch.where(h3, refr, rays_d), torch.where(hit, fres, torch.zeros_like(fres)),
           torch.where(on_iris, t_iris, torch.zeros_like(t_iris)), torch.where(on_iris[:, None], uv, torch.zeros_like(uv)))
    rgb_c, alb_c = model.cornea_rgb(sub, rays_o, rays_d, model.occlusion(frame_ids), light)
    cw = (eye_w * hit.to(eye_w.dtype))[:, None]
    opw = out["opacity"][:, None] * cw

    def mix(key, val):
        out[key] = out[key] * (1.0 - cw) + opw * val

    mix("rgb", rgb_c)
    if extras:
        mix("albedo", alb_c)


def render_image(model, grid, ops, capture, i: int, light, step: float, chunk: int, shading: str = "surface"):
    """Renders frame ``i`` of ``capture`` (no graph); returns dict of ``[H, W, ...]`` tensors."""
    H, W = capture.H, capture.W
    o_all, d_all = capture.rays(i)
    fid = capture.frame_ids[i].to(o_all.device)
    parts = []
    for s in range(0, o_all.shape[0], chunk):
        o, d = o_all[s:s + chunk], d_all[s:s + chunk]
        f = fid.expand(o.shape[0])
        r = render_rays(model, grid, ops, o, d, f, light, step=step, train=False, with_extras=True, shading=shading)
        parts.append({k: v.detach() for k, v in r.items() if torch.is_tensor(v) and v.dim() >= 1})
    out = {}
    for k in parts[0]:
        v = torch.cat([p[k] for p in parts], 0)
        out[k] = v.reshape(H, W, *v.shape[1:])
    return out


@torch.no_grad()
def render_view(model, grid, ops, cfg, capture, i: int) -> dict:
    """Renders frame ``i`` of ``capture`` with the config's light, step and shading (eval mode)."""
    model.eval()
    grid.eval()
    return render_image(model, grid, ops, capture, i, light_of(cfg, capture.device), step_size(cfg),
                        cfg.renderer.chunk_size, cfg.renderer.shading)
