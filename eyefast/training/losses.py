"""The loss terms of the first training stage (docs/method.md section 5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["stage1_terms", "weighted_sum", "normal_smoothness"]


def stage1_terms(model, out: dict, b: dict, ldm: dict, cfg, generator) -> dict:
    """The unweighted loss terms of one step: ``out`` is :func:`eyefast.scene.render.render_rays`'s
    output for the batch ``b`` (:meth:`eyefast.data.Capture.gather`'s keys); ``ldm`` maps an eye
    index (0 left, 1 right) to its ``[4, 3]`` landmarks."""
    target = b["rgb"]
    mask, hair, leye, reye = b["mask"], b["hair_mask"], b["leye_mask"], b["reye_mask"]
    face_t = (mask - leye - reye).clamp(0.0, 1.0)
    terms = {}
    terms["l1"] = (out["rgb"] - target).abs().mean() + (out["rgb_rad"] - target).abs().mean()
    mask_t = face_t if model.ignore_eyeball else mask
    terms["mask"] = (out["opacity"].clamp(0.0, 1.0) - mask_t).abs().mean()
    terms["eikonal"] = out["eikonal"]
    if not model.ignore_eyeball:
        oo = out["obj_opacity"].clamp(0.0, 1.0)
        terms["sdf_mask"] = ((oo[:, 0] - face_t).abs().mean() + (oo[:, 1] - leye).abs().mean()
                             + (oo[:, 2] - reye).abs().mean())
    terms["reg_diff"] = (out["specular"] * hair).mean()
    m = mask * (1.0 - hair)
    terms["abdmm"] = (out["specular"] * model.light_scale * m - b["specular_bfm"] * m).abs().mean()
    terms["normal"] = normal_smoothness(model, b, out, cfg, generator)
    if not model.ignore_eyeball and ldm:
        r = model.eye_radius
        terms["ldm"] = sum(((ldm[k] - model.eye_centers[k]).norm(dim=-1) - r).abs().mean() for k in ldm)
    if model.cameras is not None:
        terms["camera"] = model.cameras.penalty()
    return terms


def weighted_sum(terms: dict, loss_cfg):
    """The stage-1 loss: the terms of :func:`stage1_terms` with the config's weights (``normal`` carries
    its weights inside)."""
    L = loss_cfg
    weights = {"l1": L.w_l1, "mask": L.w_mask, "eikonal": L.w_eikonal, "sdf_mask": L.w_sdf_mask,
               "reg_diff": L.w_reg_diff, "abdmm": L.w_abdmm, "normal": 1.0, "ldm": L.w_ldm, "camera": L.w_camera}
    return sum(weights[k] * v for k, v in terms.items())


def normal_smoothness(model, b: dict, out: dict, cfg, generator) -> torch.Tensor:
    """1 - n(x) . n(x + eps t) at the rays' expected surface points (random tangent t), weighted
    ``loss.w_eps_n_smooth`` inside the hair mask and ``loss.w_eps_n`` elsewhere; over the rays inside the
    foreground mask whose opacity exceeds 0.5. Every ray is evaluated and the others weigh 0 (a
    compaction would be a host sync on a GPU)."""
    if cfg.loss.w_eps_n == 0 and cfg.loss.w_eps_n_smooth == 0:
        return out["eikonal"] * 0.0
    op = out["opacity"].detach()
    sel = ((b["mask"] > 0.5) & (op > 0.5)).to(op.dtype)
    depth = out["depth"].detach() / op.clamp_min(1e-6)
    x = b["rays_o"] + b["rays_d"] * depth[:, None]
    n1 = model.scene_normal(x, create_graph=True)
    r = torch.randn(x.shape, generator=generator, device=x.device if generator is None else generator.device)
    t = F.normalize(torch.cross(n1.detach(), r.to(x.device), dim=-1), dim=-1)
    n2 = model.scene_normal(x + cfg.network.neighbor_eps * t, create_graph=True)
    w = torch.where(b["hair_mask"] > 0.5, cfg.loss.w_eps_n_smooth, cfg.loss.w_eps_n) * sel
    return (w * (1.0 - (n1 * n2).sum(-1))).sum() / max(1, b["mask"].shape[0])
