"""Rendered views against the capture's photos: the metrics of validation and evaluation, and the
training previews."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..core.imaging import label_panels
from .metrics import psnr, ssim

__all__ = ["to_srgb", "view_metrics", "preview_image", "write_preview", "PREVIEW_PANELS"]


def to_srgb(lin: torch.Tensor, gamma: float) -> torch.Tensor:
    """Linear radiance -> the capture's sRGB-ish values: ``clamp(lin, 0, 1) ** (1 / gamma)``."""
    return lin.clamp(0.0, 1.0) ** (1.0 / gamma)


def view_metrics(render, cap, n_views: int, gamma: float, progress: bool = False, each=None) -> dict:
    """Mean PSNR and SSIM (sRGB-ish, as stored) of frames ``0 .. n_views - 1`` of ``cap``, and the mean
    PSNR on their eye pixels (the union of ``leye_mask`` and ``reye_mask``; None when no view shows an
    eye). ``render(cap, i)`` returns :func:`eyefast.scene.render.render_image`'s dict. ``each``, when
    given, is called per view as ``each(i, render, pred, truth, metrics)`` (``pred``, ``truth``: sRGB-ish
    ``[H, W, 3]`` on the CPU; ``metrics``: that view's ``psnr``, ``ssim``, ``psnr_eye``)."""
    ps, ss, pe = [], [], []
    views = range(n_views)
    if progress:
        from tqdm import tqdm

        views = tqdm(views, desc="evaluate", leave=False)
    for i in views:
        r = render(cap, i)
        pred = to_srgb(r["rgb"], gamma).cpu()
        gt = cap.full_image(i).cpu()
        ps.append(psnr(pred, gt))
        ss.append(ssim(pred, gt))
        eye = (cap.full_mask(i, "leye_mask") + cap.full_mask(i, "reye_mask")).cpu()
        pe_i = psnr(pred, gt, eye) if bool((eye > 0.5).any()) else None
        if pe_i is not None:
            pe.append(pe_i)
        if each is not None:
            each(i, r, pred, gt, {"psnr": ps[-1], "ssim": ss[-1], "psnr_eye": pe_i})
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "psnr_eye": float(np.mean(pe)) if pe else None}


#: the panels of :func:`preview_image`, left to right, as written on them
PREVIEW_PANELS = ("prediction", "truth", "normal", "diffuse", "specular", "eye opacity")


def preview_image(r: dict, photo: torch.Tensor, gamma: float, labels: bool = True) -> torch.Tensor:
    """``[H, 6 W, 3]`` in 0..1: prediction | photo | normal | diffuse | specular | eye opacities (R left,
    G right, B face), from a render ``r`` (with extras) of the photo's view; each panel carries its
    name (:data:`PREVIEW_PANELS`) in its top-left corner unless ``labels`` is False."""
    obj = r["obj_opacity"]
    if obj.shape[-1] == 1:
        eyes = torch.cat([torch.zeros_like(obj), torch.zeros_like(obj), obj], -1)
    else:
        eyes = torch.stack([obj[..., 1], obj[..., 2], obj[..., 0] * 0.3], -1)
    panels = [to_srgb(r["rgb"], gamma), photo.to(r["rgb"].device), (r["normal"] * 0.5 + 0.5) * r["opacity"][..., None],
              to_srgb(r["diffuse"], gamma), to_srgb(r["spec_rgb"], gamma), eyes.clamp(0, 1)]
    panels = [p.clamp(0, 1).cpu() for p in panels]
    if labels:
        panels = label_panels(panels, PREVIEW_PANELS)
    return torch.cat(panels, 1)


def write_preview(path: str, img: torch.Tensor) -> None:
    """Writes an image in 0..1 as an 8-bit PNG (folders created)."""
    import imageio.v3 as iio

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    iio.imwrite(path, (img.numpy() * 255).round().astype(np.uint8))
