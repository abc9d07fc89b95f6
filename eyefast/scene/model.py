"""The hybrid head model of SPEC section 2: face SDF, two eye spheres, material, radiance head.

All networks see points of the scene cube ``[-bound, bound]^3`` mapped to ``[0, 1]^3``; the
hash-grid encodings run on the op set of a :mod:`eyefast.backend` (eyefast's kernels or the
PyTorch reference), so the same model trains on either.

Units: points, SDF values, eye centres and radii are in world units.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..core.eyes import MODEL_EYE, REGION_IRIS, model_eye_planes, pack_eyes
from ..core.nn.hash_grid import HashGrid
from . import shading as S
from .cameras import CameraCorrections
from .shading import CORNEA_ROUGHNESS, IRIS_ROUGHNESS

__all__ = ["HeadModel", "FaceSDF", "Material", "RadianceHead", "volsdf_density", "OBJECTS"]

#: the objects of the per-object opacity, in this order
OBJECTS = ("face", "left_eye", "right_eye")

#: texels per side of the levels of the learnable iris texture (eye_model: cornea)
IRIS_PYRAMID = (8, 16, 32, 64)
#: learning-rate multiplier of the iris texture and the colour behind the cornea (per-texel
#: parameters in logit space, as fast as a hash-grid table would be)
TEXTURE_LR_SCALE = 20.0


def volsdf_density(sdf: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """VolSDF: ``(1 / beta) * LaplaceCDF_beta(-sdf)`` (zero-mean Laplace, scale ``beta``)."""
    return (0.5 + 0.5 * torch.sign(sdf) * torch.expm1(-sdf.abs() / beta)) / beta


def _pick_eye(per_eye: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """``per_eye[which]`` for two eyes (``per_eye [2, C]``, ``which [N]`` in {0, 1}) as a select: the
    backward of an index is a serial accumulating scatter into 2 rows (2.6 ms at 67k samples), a
    select's is two sums."""
    return torch.where((which == 0)[:, None], per_eye[0], per_eye[1])


class FaceSDF(nn.Module):
    """Hash grid (smoothstep) + MLP (64 wide, 2 hidden, Softplus(100), weight norm, sphere init).

    ``forward(x_world [N, 3]) -> (sdf [N], feature [N, geo_feat_dim])``.
    """

    def __init__(self, bound: float, num_levels: int, level_dim: int, geo_feat_dim: int, ops,
                 log2_hashmap_size: int = 14, width: int = 64, init_radius: float = 0.5):
        super().__init__()
        self.bound = float(bound)
        self.ops = ops
        self.grid = HashGrid(3, num_levels, level_dim, log2_hashmap_size, 16, interpolation="smoothstep",
                             finest_resolution=1024)
        self.geo_feat_dim = geo_feat_dim
        n_in = 3 + self.grid.n_output_dims
        dims = [n_in, width, width, 1 + geo_feat_dim]
        layers = []
        for i in range(3):
            lin = nn.Linear(dims[i], dims[i + 1])
            with torch.no_grad():  # geometric initialisation (SAL / IDR): an SDF of a sphere
                if i == 2:
                    lin.weight.normal_(math.sqrt(math.pi) / math.sqrt(dims[i]), 1e-4)
                    lin.bias.fill_(-init_radius)
                else:
                    lin.weight.normal_(0.0, math.sqrt(2.0) / math.sqrt(dims[i + 1]))
                    lin.bias.zero_()
                    if i == 0:
                        lin.weight[:, 3:].zero_()  # hash features start with no influence
            layers.append(weight_norm(lin))
        self.layers = nn.ModuleList(layers)
        self.softplus_beta = 100.0  # the activation: ops.softplus (eyefast's fused kernel or torch's)

    def set_active_levels(self, k: int) -> None:
        self.grid.set_active_levels(k)

    def _network(self, x: torch.Tensor, need_grad: bool, sdf_only: bool = False):
        # the MLP's input is [x / bound | encoding((x / bound + 1) / 2)] = [2 xn - 1 | encoding(xn)]
        xn = ((x / self.bound + 1.0) * 0.5).contiguous()
        g = self.grid
        ws, bs = [lin.weight for lin in self.layers], [lin.bias for lin in self.layers]
        if sdf_only:  # the output layer's first row only (the SDF; no geometry feature)
            ws[-1], bs[-1] = ws[-1][:1], bs[-1][:1]
        return self.ops.sdf_network(xn, g.params, g.scales, g.n_active_levels, True, ws, bs, self.softplus_beta,
                                    True, need_grad)

    def sdf_only(self, x: torch.Tensor) -> torch.Tensor:
        """The SDF ``[N]`` alone (sample pruning, marching cubes): skips the feature outputs."""
        h, _ = self._network(x, False, sdf_only=True)
        return h[:, 0] * self.bound

    def forward(self, x: torch.Tensor):
        h, _ = self._network(x, False)
        return h[:, 0] * self.bound, h[:, 1:]

    def forward_with_gradient(self, x: torch.Tensor):
        """``(sdf [N], feature [N, G], d sdf / dx [N, 3])``; the gradient is differentiable (once)
        while grad mode is on."""
        h, g = self._network(x, True)
        # sdf = bound * out_0 and xn = (x / bound + 1) / 2: d sdf / dx = (d out_0 / d xn) / 2
        return h[:, 0] * self.bound, h[:, 1:], g * 0.5


class Material(nn.Module):
    """Hash grid (linear) + MLP (64 wide, 2 hidden, ReLU) -> albedo [N,3], specular [N], roughness [N]."""

    def __init__(self, bound: float, num_levels: int, level_dim: int, ops, min_roughness: float,
                 max_roughness: float, log2_hashmap_size: int = 14, width: int = 64):
        super().__init__()
        self.bound = float(bound)
        self.ops = ops
        self.grid = HashGrid(3, num_levels, level_dim, log2_hashmap_size, 16, interpolation="linear",
                             finest_resolution=1024)
        self.mlp = nn.Sequential(
            nn.Linear(self.grid.n_output_dims, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, 5),
        )
        self.min_roughness, self.max_roughness = float(min_roughness), float(max_roughness)

    def forward(self, x: torch.Tensor):
        g = self.grid
        xn = ((x / self.bound + 1.0) * 0.5).contiguous()
        h = self.mlp(self.ops.hash_encode(xn, g.params, g.scales, g.n_active_levels, False))
        albedo = torch.sigmoid(h[:, :3])
        specular = torch.sigmoid(h[:, 3])
        rough = self.min_roughness + (self.max_roughness - self.min_roughness) * torch.sigmoid(h[:, 4])
        return albedo, specular, rough


class RadianceHead(nn.Module):
    """MLP on [geometry feature, SH_4(view dir), view dir, normal] -> RGB (sigmoid)."""

    def __init__(self, geo_feat_dim: int, ops, width: int = 64):
        super().__init__()
        self.ops = ops
        self.mlp = nn.Sequential(
            nn.Linear(geo_feat_dim + 16 + 3 + 3, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, 3),
        )

    def forward(self, feat, dirs, normals):
        sh = self.ops.sh_encode(dirs.contiguous(), 4)
        return torch.sigmoid(self.mlp(torch.cat([feat, sh, dirs, normals], -1)))


class HeadModel(nn.Module):
    """Everything learnable of SPEC sections 2-3.

    Args:
        cfg: an :class:`eyefast.config.Config`.
        ops: a :class:`eyefast.backend.Backend`.
        n_frames: frames of the whole capture (per-view SH occlusion, indexed by frame id).
    """

    def __init__(self, cfg, ops, n_frames: int):
        super().__init__()
        d, net = cfg.data, cfg.network
        self.ops = ops
        self.bound = float(d.bound)
        self.ignore_eyeball = bool(d.ignore_eyeball)
        self.sdf = FaceSDF(self.bound, net.num_levels, net.level_dim, net.geo_feat_dim, ops)
        self.material = Material(self.bound, net.num_levels, net.level_dim, ops, cfg.brdf.min_roughness,
                                 cfg.brdf.max_roughness)
        self.radiance = RadianceHead(net.geo_feat_dim, ops)
        centers = torch.tensor([d.eyeball_left_center, d.eyeball_right_center], dtype=torch.float32) * self.bound
        self.eye_centers = nn.Parameter(centers, requires_grad=not d.fix_eyeball_center)
        self.eye_min, self.eye_max = float(d.eyeball_min_size), float(d.eyeball_max_size)
        self.eye_s = nn.Parameter(torch.zeros(()))
        self.beta_param = nn.Parameter(torch.tensor(0.1))
        self.light_scale = nn.Parameter(torch.ones(()))
        self.sh_coeffs = nn.Parameter(torch.zeros(9, 3))
        self.sh_occlusion = nn.Parameter(torch.full((n_frames,), 3.0))
        self.register_buffer("frame_seen", torch.zeros(n_frames, dtype=torch.bool))
        # train.camera_refine: a learned correction of each training frame's camera (scene/cameras.py)
        self.cameras = CameraCorrections(n_frames) if cfg.train.camera_refine else None
        self.sh_beta = float(d.beta)
        self.sh_scale = float(d.sh_scale)
        # SPEC 8 refractive eye (config eye_model: cornea): a clear cornea cap on each globe (the
        # model-eye ratios of MODEL_EYE, scaled by the learned radius), a learnable gaze per eye,
        # a learnable iris texture (sigmoid albedo over the iris disc) and the colour seen through
        # the cornea where the refracted ray misses the iris.
        self.eye_model = str(cfg.eye_model)
        if self.eye_model == "cornea":
            if self.ignore_eyeball:
                raise ValueError("config: eye_model 'cornea' needs the eyes in the scene (data.ignore_eyeball false)")
            g = torch.tensor([d.eye_gaze], dtype=torch.float32)
            if not bool(torch.isfinite(g).all()) or float(g.norm()) < 1e-6:
                raise ValueError(f"config key 'data.eye_gaze': {list(d.eye_gaze)} is not a finite non-zero direction")
            g = F.normalize(g, dim=-1)
            if g[0, 2] <= -1.0 + 1e-3:
                raise ValueError("config key 'data.eye_gaze': the iris frame needs a gaze away from -z "
                                 "(the face looks along +z in eyefast's world)")
            self.gaze = nn.Parameter(g.repeat(2, 1), requires_grad=not d.fix_eye_gaze)
            # a pyramid of textures summed before the sigmoid: coarse texels learn the low frequencies
            # from the few pixels an iris covers, fine ones the detail
            self.iris_texture = nn.ParameterList(
                [nn.Parameter(torch.zeros(2, 3, r, r)) for r in IRIS_PYRAMID])
            self.cornea_inner = nn.Parameter(torch.zeros(2, 3))

    # ---------------------------------------------------------------- parameters
    @property
    def eye_radius(self) -> torch.Tensor:
        return torch.sigmoid(self.eye_s) * (self.eye_max - self.eye_min) + self.eye_min

    @property
    def beta(self) -> torch.Tensor:
        return self.beta_param.abs() + 1e-4

    def occlusion(self, frame_ids: torch.Tensor) -> torch.Tensor:
        """Per-view SH occlusion (after sigmoid) ``[N]``; unseen (validation) views use the mean
        of the training views (no host sync: a masked mean)."""
        occ = torch.sigmoid(self.sh_occlusion)
        seen = self.frame_seen
        n_seen = seen.sum()
        mean = (occ * seen).sum() / n_seen.clamp_min(1)
        occ = torch.where(seen | (n_seen == 0), occ, mean)
        return occ[frame_ids]

    def set_progress(self, step: int, init_level: int, level_grow_iter: int) -> None:
        """Progressive hash levels of the face SDF (SPEC 2)."""
        grow = step // max(1, level_grow_iter)
        self.sdf.set_active_levels(init_level + grow)

    # ---------------------------------------------------------------- eyes
    @property
    def cornea(self) -> bool:
        return self.eye_model == "cornea"

    def eyes_packed(self, geometry_grad: bool = True) -> torch.Tensor:
        """The ``[2, 12]`` eye parameters of :func:`eyefast.ops.trace_eyes` (differentiable; with
        ``geometry_grad=False`` the centres and the radius are detached, the gaze is not)."""
        c, r = self.eye_centers, self.eye_radius
        if not geometry_grad:
            c, r = c.detach(), r.detach()
        return pack_eyes(c, r, self.gaze).contiguous()

    def _cornea_spheres(self):
        """Cornea sphere centres [2, 3] and radius (scalar tensor)."""
        r = self.eye_radius
        g = F.normalize(self.gaze, dim=-1)
        return self.eye_centers + g * (MODEL_EYE["cornea_offset"] * r), MODEL_EYE["cornea_radius"] * r

    def eye_sdf(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 2]`` signed distances to the left and right eyes (globe, with the cornea cap
        when ``eye_model`` is ``cornea``: the union of the two spheres)."""
        d = (x[:, None, :] - self.eye_centers[None]).norm(dim=-1) - self.eye_radius
        if self.cornea:
            cc, rc = self._cornea_spheres()
            d = torch.minimum(d, (x[:, None, :] - cc[None]).norm(dim=-1) - rc)
        return d

    def eye_normal(self, x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """Outward unit normal ``[N, 3]`` of eye ``which [N]`` at points near its surface."""
        c = _pick_eye(self.eye_centers, which)
        n = F.normalize(x - c, dim=-1)
        if self.cornea:
            cc, rc = self._cornea_spheres()
            ccw = _pick_eye(cc, which)
            on_c = (x - ccw).norm(dim=-1) - rc < (x - c).norm(dim=-1) - self.eye_radius
            n = torch.where(on_c[:, None], F.normalize(x - ccw, dim=-1), n)
        return n

    def iris_albedo(self, eye: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """Iris albedo ``[N, 3]`` at iris-plane coordinates ``uv [N, 2]`` (unit disc) of eye ``eye [N]``
        (both eyes' textures looked up at every point, then selected: no host sync)."""
        g = uv[None, None]
        per_eye = [torch.sigmoid(sum(F.grid_sample(t[k:k + 1].to(uv.dtype), g, mode="bilinear", padding_mode="border",
                                                   align_corners=False) for t in self.iris_texture)[0, :, 0].T)
                   for k in range(2)]
        return torch.where((eye == 0)[:, None], per_eye[0], per_eye[1])

    def texture_parameters(self) -> list:
        """Parameters trained with :data:`TEXTURE_LR_SCALE` times the learning rate."""
        return list(self.iris_texture) + [self.cornea_inner] if self.cornea else []

    def cornea_rgb(self, trace, rays_o, rays_d, occlusion, light):
        """Colour of rays that hit a cornea (``trace``: the 8 outputs of ``trace_eyes``, already
        selected to such rays): the co-located light's reflection off the cornea (GGX, roughness
        :data:`CORNEA_ROUGHNESS`, exact Fresnel ``F``) plus ``(1 - F)^2`` times the iris behind it,
        lit along the reversed refracted ray (Burley diffuse over the unfolded path length, and
        the SH ambient at the iris normal = gaze); where the refracted ray misses the iris, a
        learnable colour per eye stands in for what lies behind. With point lights placed anywhere
        (``light["lights"]``, relighting) the reflection is theirs and a light away from the camera lights
        the iris along the straight path (its refraction is not traced). Returns ``(rgb, albedo)``."""
        t, eye, region, normal, refr, fres, t_iris, uv = trace
        dt = rays_o.dtype
        p = rays_o + t[:, None] * rays_d
        dist = (rays_o - p).norm(dim=-1, keepdim=True)
        light_c = torch.as_tensor(light["color"], dtype=dt, device=rays_o.device).reshape(1, 3)
        E = light_c * light["intensity"] * self.light_scale / (dist * dist)
        ci = (-(F.normalize(rays_d, dim=-1) * normal).sum(-1, keepdim=True)).clamp(0.0, 1.0)
        alpha = torch.full_like(ci, CORNEA_ROUGHNESS ** 2)
        refl = S.ggx_distribution(ci, alpha) * S.smith_visibility(ci, ci, alpha) * fres[:, None] * E * ci
        if "lights" in light:  # point lights placed anywhere (eyefast.visual): their GGX reflections
            refl = self._cornea_reflections(p, normal, rays_o, rays_d, fres, light["lights"])
        on_iris = region == REGION_IRIS
        albedo = torch.where(on_iris[:, None], self.iris_albedo(eye, uv),
                             torch.sigmoid(self.cornea_inner)[eye.clamp_min(0)].to(dt))
        # the iris plane's distance along the refracted ray (region 3 too: what lies behind the cornea
        # outside the iris is lit over the same unfolded path)
        g_e = F.normalize(self.gaze, dim=-1)[eye.clamp_min(0)].to(dt)
        r = self.eye_radius.detach().to(dt)  # the geometry learns elsewhere (see render._cornea_blend)
        h = model_eye_planes()[0] * r
        ic = self.eye_centers.detach()[eye.clamp_min(0)].to(dt) + g_e * h
        den = (refr * g_e).sum(-1)
        s_plane = ((ic - p) * g_e).sum(-1) / torch.where(den < 0, den, -torch.ones_like(den))
        s_plane = torch.where((den < 0) & (s_plane > 0), s_plane, torch.zeros_like(s_plane))
        s = torch.where(on_iris, t_iris, s_plane)[:, None]
        q = p + s * refr
        if "lights" in light:  # the flash as above; a light elsewhere reaches the iris unrefracted
            sh = S.shade_lights(q, g_e, q - refr * (dist + s), albedo, 0.0, IRIS_ROUGHNESS, light["lights"],
                                self.light_scale, self.sh_coeffs, self.sh_beta, occlusion[:, None], self.sh_scale)
        else:
            sh = S.shade_colocated(q, g_e, q - refr * (dist + s), albedo, 0.0, IRIS_ROUGHNESS, light["color"],
                                   light["intensity"], self.light_scale, self.sh_coeffs, self.sh_beta,
                                   occlusion[:, None], self.sh_scale)
        trans = (1.0 - fres)[:, None] ** 2
        return refl + trans * (sh["diffuse"] + sh["ambient"]), albedo

    def _cornea_reflections(self, p, normal, rays_o, rays_d, fres, lights):
        """The cornea's GGX reflection (roughness :data:`CORNEA_ROUGHNESS`, the view's exact Fresnel
        ``fres``) of point lights placed anywhere (:func:`eyefast.scene.shading.point_light`; a light
        without a position is at the ray's origin), summed ``[N, 3]``."""
        dt = p.dtype
        v = -F.normalize(rays_d, dim=-1)
        nv = (normal * v).sum(-1, keepdim=True).clamp(0.0, 1.0)
        alpha = torch.full_like(nv, CORNEA_ROUGHNESS ** 2)
        out = torch.zeros(p.shape[0], 3, dtype=dt, device=p.device)
        for lt in lights:
            pos = rays_o if lt.get("position") is None else torch.as_tensor(lt["position"], dtype=dt, device=p.device)
            to_l = pos - p
            dist2 = (to_l * to_l).sum(-1, keepdim=True).clamp_min(1e-24)
            l = to_l / dist2.sqrt()
            h = F.normalize(l + v, dim=-1)
            nh = (normal * h).sum(-1, keepdim=True).clamp(0.0, 1.0)
            nl = (normal * l).sum(-1, keepdim=True).clamp(0.0, 1.0)
            col = torch.as_tensor(lt["color"], dtype=dt, device=p.device).reshape(1, 3)
            E = col * lt["intensity"] * self.light_scale / dist2
            out = out + S.ggx_distribution(nh, alpha) * S.smith_visibility(nl, nv, alpha) * fres[:, None] * E * nl
        return out

    # ---------------------------------------------------------------- geometry

    def scene_sdf(self, x: torch.Tensor) -> torch.Tensor:
        """Scene SDF ``[N]`` = min(face, eyes) (face alone with ``ignore_eyeball``)."""
        s = self.sdf.sdf_only(x) if hasattr(self.sdf, "sdf_only") else self.sdf(x)[0]
        if self.ignore_eyeball:
            return s
        return torch.minimum(s, self.eye_sdf(x).min(-1).values)

    def density(self, sdf: torch.Tensor) -> torch.Tensor:
        return volsdf_density(sdf, self.beta)

    def face_with_gradient(self, x: torch.Tensor, create_graph: bool):
        """Face ``(sdf [N], feature [N, G], gradient [N, 3])``; the gradient stays in the graph
        (for the eikonal and normal losses) when ``create_graph``."""
        fused = getattr(self.sdf, "forward_with_gradient", None)  # FaceSDF: the op computes the gradient
        if fused is not None:
            if create_graph:
                return fused(x)
            with torch.no_grad():
                return fused(x)
        with torch.enable_grad():  # any other SDF module: autograd
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            sdf, feat = self.sdf(x)
            (grad,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf), create_graph=create_graph)
        if not create_graph:
            sdf, feat, grad = sdf.detach(), feat.detach(), grad.detach()
        return sdf, feat, grad

    def scene_normal(self, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
        """Unit normal of the scene SDF at ``x`` (the nearest object's)."""
        sdf, _, grad = self.face_with_gradient(x, create_graph)
        n = F.normalize(grad, dim=-1)
        if self.ignore_eyeball:
            return n
        e = self.eye_sdf(x)
        emin, which = e.min(-1)
        return torch.where((emin < sdf)[:, None], self.eye_normal(x, which), n)
