"""The optimiser (docs/method.md section 5): Adam with warm-up and step decay, the gradient health
check, and the eye-gradient clipping."""

from __future__ import annotations

import torch

from ..scene.model import TEXTURE_LR_SCALE

__all__ = ["make_optimizer", "base_lr", "lr_factor", "grad_health", "clip_eye_grads"]


def make_optimizer(model, train_cfg):
    """Adam (eps 1e-15) over the model's trainable parameters, in groups: ``main`` at ``train.lr``; the
    texture parameters of the refractive eye (``texture``) at :data:`eyefast.scene.model.TEXTURE_LR_SCALE`
    times it; the camera corrections (``camera``, with ``train.camera_refine``) at ``train.camera_lr``.
    Returns ``(optimizer, trained)``: ``trained`` lists the optimised parameters, what ``backward``
    differentiates for. Each group's ``name`` picks its schedule (:func:`lr_factor`)."""
    lr = train_cfg.lr
    fast = {id(p) for p in model.texture_parameters()}
    cams = [model.cameras.delta] if getattr(model, "cameras", None) is not None else []
    special = fast | {id(p) for p in cams}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in special]
    groups = [{"params": params, "name": "main"}]
    if fast:
        groups.append({"params": model.texture_parameters(), "lr": lr * TEXTURE_LR_SCALE, "name": "texture"})
    if cams:
        groups.append({"params": cams, "lr": train_cfg.camera_lr, "name": "camera"})
    # fused: one multi-tensor kernel per step instead of ~10 ops per parameter (CPU and CUDA)
    opt = torch.optim.Adam(groups, lr=lr, eps=1e-15, fused=True)
    # What backward differentiates for: the optimised parameters only. Without `inputs` autograd
    # would also compute the gradient of every leaf in the graph, e.g. the sample points that the
    # normals were differentiated against (a Hessian term in the hash grid's double backward).
    return opt, [p for g in groups for p in g["params"]]


def base_lr(train_cfg, name: str) -> float:
    """The learning rate of parameter group ``name`` before its schedule."""
    return {"main": train_cfg.lr, "texture": train_cfg.lr * TEXTURE_LR_SCALE, "camera": train_cfg.camera_lr}[name]


def lr_factor(train_cfg, step: int, name: str = "main") -> float:
    """Learning-rate multiplier of parameter group ``name`` at ``step``: a linear warm-up (the network
    and textures from 0.01 over ``warmup_steps``; the camera corrections from 0 over ``camera_warmup``,
    and 0 from ``camera_stop`` on when it is set), then x0.33 at each of ``milestones``."""
    t = train_cfg
    if name == "camera":
        if 0 < t.camera_stop <= step:
            return 0.0
        f = min(1.0, step / t.camera_warmup) if t.camera_warmup > 0 else 1.0
    elif t.warmup_steps > 0 and step < t.warmup_steps:
        f = 0.01 + 0.99 * step / t.warmup_steps
    else:
        f = 1.0
    return f * 0.33 ** sum(1 for m in t.milestones if step >= m)


def grad_health(grads):
    """``(norm, nonfinite)`` of a list of gradients, as device tensors (no host sync): the global 2-norm
    (logged as ``grad_norm``; it can overflow for huge finite gradients) and, per gradient, whether it
    holds a NaN or an infinity (its max-abs norm is not finite: exact, a finite max never overflows)."""
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    nonfinite = ~torch.isfinite(torch.stack(torch._foreach_norm(grads, float("inf"))))
    return norm, nonfinite


def clip_eye_grads(model, optimizer, k: float) -> None:
    """Clip each eye centre's gradient (a row of 3) and the radius parameter's to ``k``
    (``train.eye_grad_clip``) times its running RMS, the square root of Adam's bias-corrected second
    moment.

    Why: the eyes are glossy (roughness 0.05), so a sample that lands in the flash's glint moves the
    colour steeply with the normal, and so with the centre. In the demo such a step's centre gradient
    was 2000x its median (132 against 0.07). Adam's step is bounded, but the spike fills the second
    moment, which forgets over ~1/(1 - beta2) = 1000 steps: the momentum carried the eye ~0.5 r along the
    spike's direction in the next 20 steps, and the landmark and mask terms' ordinary gradients then
    moved it back at a fraction of the learning rate. Clipping relative to the RMS bounds what one step
    can do without a scale to tune: Adam normalises by that RMS anyway. Parameters without a second
    moment yet (the first step), and rows whose second moment is still 0, are not clipped."""
    if k <= 0 or model.ignore_eyeball:
        return
    beta2 = optimizer.param_groups[0]["betas"][1]  # the eye parameters' group
    with torch.no_grad():
        for p in (model.eye_centers, model.eye_s):
            st = optimizer.state.get(p)
            if p.grad is None or not st or "exp_avg_sq" not in st:
                continue
            v = st["exp_avg_sq"] / (1.0 - beta2 ** st["step"])  # a tensor: no host sync on a GPU
            rows = p.grad.reshape(-1, 3) if p.dim() == 2 else p.grad.reshape(1, -1)
            lim = k * v.reshape(rows.shape).sum(-1).double().sqrt()
            lim = torch.where(lim > 0, lim, torch.inf)  # no gradient yet: nothing to compare with
            norm = rows.double().norm(dim=-1)  # float64: a huge finite float32 row does not overflow
            scale = (lim / norm.clamp_min(1e-300)).clamp(max=1.0).to(rows.dtype)
            p.grad.copy_((rows * scale[:, None]).reshape(p.grad.shape))
