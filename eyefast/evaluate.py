"""Evaluate a training run against its capture: ``python -m eyefast.evaluate --workspace RUN --capture CAP``.

Renders the validation views (every 10th frame) from ``RUN/latest.pth`` (or ``--ckpt``) and
reports PSNR and SSIM of the whole image (sRGB-ish, as stored) and PSNR on the eye pixels
(``psnr_eye``: the union of ``leye_mask`` and ``reye_mask``). When the capture has ``gt/`` (the
synthetic capture of :mod:`eyefast.synth`), also:

* ``eye_center_error``: distance of the learned eye centres to the true ones (mean of both
  eyes, world units), ``eye_radius`` (learned) and ``eye_radius_error`` (absolute);
* ``surface_error``: mean distance from the exported face mesh (``RUN/export/mesh.obj``, or
  ``--mesh``) to the true face surface ``gt/face.obj`` (one way: the export covers only the
  part the cameras see). Skipped, with a note, when there is no exported mesh.

``RUN`` is the run folder ``<workspace>/<name>`` that :mod:`eyefast.train` writes.  Prints a
table; ``--json PATH`` writes the numbers (keys ``psnr``, ``ssim``, ``psnr_eye``,
``eye_center_error``, ``eye_radius``, ``eye_radius_error``, ``surface_error``; plus ``step``,
``views``, ``eye_center_error_rel`` = centre error / true radius, ``eye_center_error_max_rel`` = the
worse eye's centre error / true radius).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

__all__ = ["evaluate", "main"]


def _run_config(run: str, capture: str | None, device: str | None, extra=()):
    from . import config as config_mod

    path = os.path.join(run, "config.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"'{run}' is not an eyefast run folder: no config.yaml (expected <workspace>/<name>)")
    overrides = list(extra)
    if capture is not None:
        overrides.append(f"data.meta_path={json.dumps(os.path.abspath(capture))}")
    if device is not None:
        overrides.append(f"device={device}")
    return config_mod.load(path, overrides)


def load_run(run: str, capture: str | None = None, ckpt: str | None = None, device: str | None = None, quiet=True):
    """A :class:`eyefast.train.Trainer` with the weights of ``ckpt`` (default ``RUN/latest.pth``)."""
    from .train import Trainer

    cfg = _run_config(run, capture, device, [f"workspace={json.dumps(os.path.dirname(os.path.abspath(run)))}"])
    tr = Trainer(cfg, quiet=quiet)
    tr.load(ckpt or os.path.join(run, "latest.pth"), weights_only_model=True)
    return tr


def evaluate(run: str, capture: str | None = None, ckpt: str | None = None, device: str | None = None,
             mesh: str | None = None, max_views: int | None = None) -> dict:
    """Returns the metrics dict described in the module docstring."""
    from .metrics import eye_errors, psnr, ssim, surface_error

    tr = load_run(run, capture, ckpt, device)
    cap = tr.val_cap
    g = tr.cfg.light.gamma
    n = cap.n_frames if max_views is None else min(max_views, cap.n_frames)
    ps, ss, pe = [], [], []
    from tqdm import tqdm

    for i in tqdm(range(n), desc="evaluate", leave=False, disable=not sys.stderr.isatty()):
        r = tr.render_view(cap, i)
        pred = r["rgb"].clamp(0, 1).pow(1.0 / g).cpu()
        gt = cap.full_image(i).cpu()
        ps.append(psnr(pred, gt))
        ss.append(ssim(pred, gt))
        eye = (cap.full_mask(i, "leye_mask") + cap.full_mask(i, "reye_mask")).cpu()
        if bool((eye > 0.5).any()):
            pe.append(psnr(pred, gt, eye))
    res = {"step": tr.step, "views": n, "psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)),
           "psnr_eye": float(np.mean(pe)) if pe else None}
    gt_dir = os.path.join(cap.root, "gt")
    res["eye_radius"] = tr.model.eye_radius.item()
    if os.path.isfile(os.path.join(gt_dir, "eyes.json")):
        with open(os.path.join(gt_dir, "eyes.json")) as f:
            gt_eyes = json.load(f)
        e = eye_errors(tr.model.eye_centers.detach().cpu(), tr.model.eye_radius.item(), gt_eyes)
        res["eye_center_error"] = e["center_mean"]
        res["eye_radius_error"] = e["radius_mean"]
        r_true = 0.5 * (gt_eyes["left"]["radius"] + gt_eyes["right"]["radius"])
        res["eye_center_error_rel"] = e["center_mean"] / r_true
        res["eye_center_error_max_rel"] = max(e["center_left"], e["center_right"]) / r_true  # the worse eye
    mesh = mesh or os.path.join(run, "export", "mesh.obj")
    gt_face = os.path.join(gt_dir, "face.obj")
    if os.path.isfile(mesh) and os.path.isfile(gt_face):
        res["surface_error"] = surface_error(mesh, gt_face, symmetric=False)
    else:
        res["surface_error"] = None
        res["surface_error_note"] = (f"no exported mesh at {mesh}" if not os.path.isfile(mesh)
                                     else "the capture has no gt/face.obj")
    return res


def format_table(res: dict) -> str:
    rows = [("views (step)", f"{res['views']} (step {res['step']})"),
            ("PSNR [dB]", f"{res['psnr']:.2f}"), ("SSIM", f"{res['ssim']:.4f}"),
            ("PSNR eye pixels [dB]", "-" if res.get("psnr_eye") is None else f"{res['psnr_eye']:.2f}")]
    if "eye_center_error" in res:
        rows += [("eye centre error", f"{res['eye_center_error']:.5f} ({100 * res['eye_center_error_rel']:.1f}% of r; "
                                      f"worse eye {100 * res['eye_center_error_max_rel']:.1f}%)"),
                 ("eye radius (error)", f"{res['eye_radius']:.5f} ({res['eye_radius_error']:.5f})")]
    else:
        rows.append(("eye radius", f"{res['eye_radius']:.5f}"))
    rows.append(("surface error", res.get("surface_error_note", "-") if res.get("surface_error") is None
                 else f"{res['surface_error']:.5f}"))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eyefast.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", required=True, metavar="RUN", help="run folder <workspace>/<name>")
    ap.add_argument("--capture", help="capture folder (default: the run config's data.meta_path)")
    ap.add_argument("--ckpt", help="checkpoint (default RUN/latest.pth)")
    ap.add_argument("--mesh", help="exported face mesh (default RUN/export/mesh.obj)")
    ap.add_argument("--device", help="cpu, cuda, cuda:N or N (default: the run's device)")
    ap.add_argument("--max-views", type=int, help="evaluate only the first N validation views")
    ap.add_argument("--json", help="write the numbers to this JSON file")
    a = ap.parse_args(argv)
    if a.max_views is not None and a.max_views < 1:
        ap.error(f"--max-views must be >= 1, got {a.max_views}")
    try:
        res = evaluate(a.workspace, a.capture, a.ckpt, a.device, a.mesh, a.max_views)
    except (ValueError, FileNotFoundError) as e:
        print(f"eyefast.evaluate: error: {e}", file=sys.stderr)
        return 2
    print(format_table(res))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
