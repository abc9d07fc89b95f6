"""The scene's shading (docs/method.md section 3), in pure PyTorch (float64-safe, differentiable).

* Light: a point light at the camera centre (:func:`shade_colocated`, the capture's flash: what
  training uses), radiance scale ``light_color * light_intensity * light_scale / d**2`` (``d`` =
  camera-to-point distance). :func:`shade_lights` places point lights anywhere (relighting:
  ``eyefast render`` and ``eyefast view``), the same falloff with ``d`` the light-to-point distance.  ``light_scale`` is the learnable global scale; here it scales the
  whole light (the specular-prior loss compares ``specular * light_scale`` with the
  morphable-model specular map).
* BRDF ("blender"): Burley diffuse with its retro-reflection term plus GGX specular
  (Smith height-uncorrelated masking-shadowing, Schlick Fresnel with
  ``F0 = 0.08 * specular``, ``alpha = roughness**2``).  Specular is grey.
* Ambient: order-3 real SH (9 coefficients per channel, :func:`sh9_basis`) at the
  normal, ``softplus(., beta)``, times occlusion, albedo and ``sh_scale``.
* Output colour = diffuse + specular + ambient, linear.

Outgoing radiance of the direct term is ``(f_d + f_s) * E * max(n.l, 0)``.
Directions are unit vectors pointing *away* from the surface (``l`` to the light,
``v`` to the viewer).  Dot products are clamped at 0 (back-facing gets no light).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "EYE_SPECULAR",
    "EYE_ROUGHNESS",
    "CORNEA_ROUGHNESS",
    "IRIS_ROUGHNESS",
    "burley_diffuse",
    "ggx_distribution",
    "smith_visibility",
    "schlick_fresnel",
    "ggx_specular",
    "sh9_basis",
    "sh_ambient",
    "shade_colocated",
    "shade_lights",
    "point_light",
]


#: the eyes' fixed BRDF (docs/method.md section 2): where an eye is the nearest surface, specular
#: intensity and roughness are these, not the material network's
EYE_SPECULAR, EYE_ROUGHNESS = 0.2, 0.05
#: refractive eyes (``eye_model: cornea``): gloss of the cornea's reflection (GGX roughness) and of
#: the iris behind it (Burley roughness)
CORNEA_ROUGHNESS, IRIS_ROUGHNESS = 0.05, 0.5


def _dot(a, b):
    return (a * b).sum(-1, keepdim=True)


def _as_col(t, ref):
    """Scalar or [N] or [N,1] -> broadcastable [N,1] (or [1,1]) tensor like ref."""
    if not torch.is_tensor(t):  # a Python number: a fill, not a tensor from Python data (a copy on a GPU)
        return ref.new_full((1, 1), float(t))
    t = t.to(dtype=ref.dtype, device=ref.device)
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() == 1:
        return t.unsqueeze(-1)
    return t


def burley_diffuse(normals, l, v, albedo, roughness):
    """Burley (Disney 2012) diffuse BRDF value, retro-reflection included.

    ``f_d = albedo/pi * (1 + (F_D90-1)(1-n.l)^5) * (1 + (F_D90-1)(1-n.v)^5)``,
    ``F_D90 = 0.5 + 2 * roughness * (l.h)^2``.  (Algebraically equal to the
    Lambert + retro-reflection split used by Blender's principled diffuse.)

    Args:
        normals, l, v: ``[N, 3]`` unit vectors.
        albedo: ``[N, 3]`` (or ``[N, C]``) diffuse albedo, linear.
        roughness: ``[N, 1]``, ``[N]`` or scalar, perceptual roughness in [0, 1].

    Returns:
        ``[N, C]`` BRDF value (no cosine factor); zero where n.l <= 0 or n.v <= 0.
    """
    roughness = _as_col(roughness, albedo)
    nl = _dot(normals, l)
    nv = _dot(normals, v)
    h = F.normalize(l + v, dim=-1)
    lh = _dot(l, h)
    fd90 = 0.5 + 2.0 * roughness * lh * lh
    fl = (1.0 - nl.clamp(0.0, 1.0)) ** 5
    fv = (1.0 - nv.clamp(0.0, 1.0)) ** 5
    vis = ((nl > 0) & (nv > 0)).to(albedo.dtype)
    return albedo / math.pi * (1.0 + (fd90 - 1.0) * fl) * (1.0 + (fd90 - 1.0) * fv) * vis


def ggx_distribution(n_dot_h, alpha):
    """GGX / Trowbridge-Reitz normal distribution ``D = a^2 / (pi ((n.h)^2 (a^2-1) + 1)^2)``.

    Args: ``n_dot_h [N,1]``, ``alpha [N,1]`` (= roughness^2). Returns ``[N,1]``.
    """
    a2 = alpha * alpha
    d = n_dot_h * n_dot_h * (a2 - 1.0) + 1.0
    return a2 / (math.pi * d * d)


def smith_visibility(n_dot_l, n_dot_v, alpha):
    """Smith GGX masking-shadowing divided by ``4 (n.l)(n.v)``.

    ``G1(x) = 2 x / (x + sqrt(a^2 + (1-a^2) x^2))``, ``G = G1(n.l) G1(n.v)``; returns
    ``G / (4 n.l n.v) = 1 / ((n.l + s_l)(n.v + s_v))`` (no division by the cosines).
    Args/returns ``[N,1]``; cosines must already be clamped >= 0.
    """
    a2 = alpha * alpha
    sl = torch.sqrt(a2 + (1.0 - a2) * n_dot_l * n_dot_l)
    sv = torch.sqrt(a2 + (1.0 - a2) * n_dot_v * n_dot_v)
    return 1.0 / ((n_dot_l + sl) * (n_dot_v + sv))


def schlick_fresnel(f0, v_dot_h):
    """Schlick's approximation ``F0 + (1 - F0)(1 - v.h)^5``; ``[N,1]`` in, ``[N,1]`` out."""
    return f0 + (1.0 - f0) * (1.0 - v_dot_h.clamp(0.0, 1.0)) ** 5


def ggx_specular(normals, l, v, specular, roughness):
    """GGX microfacet specular BRDF value (grey).

    ``f_s = D(h) * F(v.h) * G(l, v) / (4 (n.l)(n.v))`` with ``alpha = roughness^2``
    and ``F0 = 0.08 * specular`` (Blender principled, dielectric).

    Args:
        normals, l, v: ``[N, 3]`` unit vectors.
        specular: ``[N, 1]``, ``[N]`` or scalar, specular intensity in [0, 1].
        roughness: ``[N, 1]``, ``[N]`` or scalar, in (0, 1].

    Returns:
        ``[N, 1]`` BRDF value (no cosine factor); zero where n.l <= 0 or n.v <= 0.
    """
    specular = _as_col(specular, normals)
    roughness = _as_col(roughness, normals)
    alpha = roughness * roughness
    nl = _dot(normals, l)
    nv = _dot(normals, v)
    h = F.normalize(l + v, dim=-1)
    nh = _dot(normals, h).clamp(0.0, 1.0)
    vh = _dot(v, h)
    D = ggx_distribution(nh, alpha)
    Vis = smith_visibility(nl.clamp(min=0.0), nv.clamp(min=0.0), alpha)
    Fr = schlick_fresnel(0.08 * specular, vh)
    mask = ((nl > 0) & (nv > 0)).to(normals.dtype)
    return D * Vis * Fr * mask


def sh9_basis(normals):
    """Order-3 real SH basis (bands 0..2, 9 values) at unit normals: ``[N,3] -> [N,9]``.

    The first 9 values of tiny-cuda-nn's degree-4 ``SphericalHarmonics`` encoding (same constants,
    order and signs as :func:`eyefast.core.nn.sh_encode`), in pure PyTorch (differentiable, any
    float dtype).
    """
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    x2, y2, z2 = x * x, y * y, z * z
    c0, c1 = 0.28209479177387814, 0.48860251190291987
    c2a, c2b, c2c, c2d = 1.0925484305920792, 0.94617469575755997, 0.31539156525251999, 0.54627421529603959
    return torch.stack([torch.full_like(x, c0), -c1 * y, c1 * z, -c1 * x, c2a * x * y, -c2a * y * z,
                        c2b * z2 - c2c, -c2a * x * z, c2d * (x2 - y2)], dim=-1)


def sh_ambient(normals, sh_coeffs, beta, occlusion, albedo, sh_scale):
    """Ambient term ``softplus(Y9(n) @ sh_coeffs, beta) * occlusion * albedo * sh_scale``.

    Args:
        normals: ``[N, 3]`` unit normals.
        sh_coeffs: ``[9, 3]`` SH coefficients per RGB channel (raw, before softplus).
        beta: softplus sharpness (config ``data.beta``), float.
        occlusion: per-view occlusion *after* its sigmoid: scalar, ``[N, 1]`` or ``[1, 1]``.
        albedo: ``[N, 3]`` diffuse albedo (linear).
        sh_scale: float (config ``data.sh_scale``).

    Returns:
        ``[N, 3]`` ambient radiance.
    """
    if sh_coeffs.shape[-2:] != (9, 3):
        raise ValueError(f"sh_ambient: sh_coeffs must be [9, 3], got {tuple(sh_coeffs.shape)}")
    irr = F.softplus(sh9_basis(normals) @ sh_coeffs, beta=float(beta))
    return irr * _as_col(occlusion, albedo) * albedo * sh_scale


def shade_colocated(
    points,
    normals,
    cam_pos,
    albedo,
    specular,
    roughness,
    light_color,
    light_intensity,
    light_scale=1.0,
    sh_coeffs=None,
    beta=10.0,
    occlusion=1.0,
    sh_scale=1.0,
):
    """Shade surface points lit by a point light at the camera (co-located flashlight).

    Args:
        points: ``[N, 3]`` surface points (world).
        normals: ``[N, 3]`` unit normals.
        cam_pos: ``[3]`` camera centre, or ``[N, 3]`` per point.
        albedo: ``[N, 3]`` diffuse albedo, linear.
        specular: ``[N, 1]`` (or ``[N]``/scalar) specular intensity.
        roughness: ``[N, 1]`` (or ``[N]``/scalar) roughness.
        light_color: ``[3]`` (list or tensor).
        light_intensity: float or 0-dim tensor.
        light_scale: float or 0-dim tensor (learnable global scale).
        sh_coeffs: ``[9, 3]`` ambient SH coefficients, or None for no ambient.
        beta, occlusion, sh_scale: see :func:`sh_ambient`.

    Returns:
        dict with ``diffuse``, ``specular``, ``ambient``, ``rgb`` (sum), each ``[N, 3]``
        linear radiance, plus ``n_dot_l [N,1]`` and ``dist [N,1]``.
    """
    cam_pos = torch.as_tensor(cam_pos, dtype=points.dtype, device=points.device)
    to_cam = cam_pos - points
    dist = to_cam.norm(dim=-1, keepdim=True)
    l = to_cam / dist.clamp_min(1e-12)
    light = torch.as_tensor(light_color, dtype=points.dtype, device=points.device).reshape(1, 3)
    E = light * light_intensity * light_scale / (dist * dist)
    nl = _dot(normals, l).clamp(min=0.0)
    diffuse = burley_diffuse(normals, l, l, albedo, roughness) * E * nl
    spec = ggx_specular(normals, l, l, specular, roughness) * E * nl
    if sh_coeffs is None:
        ambient = torch.zeros_like(diffuse)
    else:
        ambient = sh_ambient(normals, sh_coeffs, beta, occlusion, albedo, sh_scale)
    return {
        "diffuse": diffuse,
        "specular": spec,
        "ambient": ambient,
        "rgb": diffuse + spec + ambient,
        "n_dot_l": nl,
        "dist": dist,
    }


def point_light(position=None, color=(1.0, 1.0, 1.0), intensity: float = 1.0) -> dict:
    """One point light for :func:`shade_lights`: ``position`` a world point ``[3]`` (None: at the camera,
    the co-located flash), ``color`` linear RGB ``[3]``, ``intensity`` (radiance scale at distance 1)."""
    return {"position": None if position is None else torch.as_tensor(position, dtype=torch.float32),
            "color": torch.as_tensor(color, dtype=torch.float32).reshape(3), "intensity": float(intensity)}


def shade_lights(
    points,
    normals,
    cam_pos,
    albedo,
    specular,
    roughness,
    lights,
    light_scale=1.0,
    sh_coeffs=None,
    beta=10.0,
    occlusion=1.0,
    sh_scale=1.0,
):
    """Shade surface points seen from ``cam_pos`` and lit by point lights placed anywhere.

    Each light of ``lights`` (dicts of :func:`point_light`: ``position`` ``[3]`` or ``[N, 3]`` or None
    for the camera, ``color``, ``intensity``) adds ``(f_d(l, v) + f_s(l, v)) * E * max(n.l, 0)`` with
    ``E = color * intensity * light_scale / |light - x|^2``, ``l`` towards the light and ``v`` towards
    the camera; the SH ambient (:func:`sh_ambient`) is added once. One light at the camera gives
    :func:`shade_colocated`'s values exactly (the same operations on the same vectors); no light gives
    the ambient alone. Arguments and results as :func:`shade_colocated` (``n_dot_l`` and ``dist`` of
    the first light; zeros without one).
    """
    cam_pos = torch.as_tensor(cam_pos, dtype=points.dtype, device=points.device)
    to_cam = cam_pos - points
    v = to_cam / to_cam.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    diffuse = spec = first = None
    for lt in lights:
        pos = lt.get("position")
        if pos is None:
            to_l = to_cam
        else:
            to_l = torch.as_tensor(pos, dtype=points.dtype, device=points.device) - points
        dist = to_l.norm(dim=-1, keepdim=True)
        l = to_l / dist.clamp_min(1e-12)
        color = torch.as_tensor(lt["color"], dtype=points.dtype, device=points.device).reshape(1, 3)
        E = color * lt["intensity"] * light_scale / (dist * dist)
        nl = _dot(normals, l).clamp(min=0.0)
        vv = l if pos is None else v  # the flash: exactly shade_colocated's vectors
        d_term = burley_diffuse(normals, l, vv, albedo, roughness) * E * nl
        s_term = ggx_specular(normals, l, vv, specular, roughness) * E * nl
        if first is None:
            diffuse, spec, first = d_term, s_term, (nl, dist)
        else:
            diffuse, spec = diffuse + d_term, spec + s_term
    if first is None:
        diffuse = spec = torch.zeros_like(albedo)
        first = (torch.zeros_like(albedo[:, :1]), torch.zeros_like(albedo[:, :1]))
    if sh_coeffs is None:
        ambient = torch.zeros_like(diffuse)
    else:
        ambient = sh_ambient(normals, sh_coeffs, beta, occlusion, albedo, sh_scale)
    return {
        "diffuse": diffuse,
        "specular": spec,
        "ambient": ambient,
        "rgb": diffuse + spec + ambient,
        "n_dot_l": first[0],
        "dist": first[1],
    }
