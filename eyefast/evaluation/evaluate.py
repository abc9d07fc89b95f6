"""Evaluate a training run against its capture: ``eyefast evaluate --run RUN [--capture CAP]``.

Renders the validation views (every 10th frame) from ``RUN/latest.pth`` (or ``--ckpt``) and
reports PSNR and SSIM of the whole image (sRGB-ish, as stored) and PSNR on the eye pixels
(``psnr_eye``: the union of ``leye_mask`` and ``reye_mask``). When the capture has ``gt/`` (the
synthetic capture of :mod:`eyefast.synth`), also:

* ``eye_center_error``: distance of the learned eye centres to the true ones (mean of both
  eyes, world units), ``eye_radius`` (learned) and ``eye_radius_error`` (absolute);
* ``surface_error``: mean distance from the exported face mesh (``RUN/export/mesh.obj``, or
  ``--mesh``) to the true face surface ``gt/face.obj`` (one way: the export covers only the
  part the cameras see). Skipped, with a note, when there is no exported mesh.

``RUN`` is the run folder ``<workspace>/<name>`` that ``eyefast train`` writes.  Prints a
table; ``--json PATH`` writes the numbers (keys ``psnr``, ``ssim``, ``psnr_eye``,
``eye_center_error``, ``eye_radius``, ``eye_radius_error``, ``surface_error``; plus ``step``,
``views``, ``eye_center_error_rel`` = centre error / true radius, ``eye_center_error_max_rel`` = the
worse eye's centre error / true radius). It also writes the report ``RUN/eval/`` (``--report DIR``
elsewhere, ``--no-report`` not at all): per view prediction | truth | error heat-map, the eye crops,
the training curves and ``index.html`` (:mod:`eyefast.evaluation.report`).
"""

from __future__ import annotations

import json
import os
import sys

from .metrics import eye_errors, surface_error
from .views import view_metrics

__all__ = ["evaluate", "format_table"]


def evaluate(run: str, capture: str | None = None, ckpt: str | None = None, device: str | None = None,
             mesh: str | None = None, max_views: int | None = None, report: str | None = None) -> dict:
    """Returns the metrics dict described in the module docstring. ``report``: a folder (``RUN/eval``
    for ``eyefast evaluate``) that receives the evaluation report of :mod:`eyefast.evaluation.report`
    (per-view images, eye crops, training curves, ``index.html``); its page is ``res["report"]``."""
    from ..run import Run

    r = Run.load(run, ckpt=ckpt, capture=capture, device=device)
    cap = r.capture("val")
    n = cap.n_frames if max_views is None else min(max_views, cap.n_frames)
    writer = None
    if report is not None:
        from .report import ReportWriter

        writer = ReportWriter(report, cap)
    m = view_metrics(r.render_view, cap, n, r.cfg.light.gamma, progress=sys.stderr.isatty(),
                     each=None if writer is None else writer.view)
    res = {"step": r.step, "views": n, **m}
    gt_dir = os.path.join(cap.root, "gt")
    res["eye_radius"] = r.model.eye_radius.item()
    gt_eyes = None
    if os.path.isfile(os.path.join(gt_dir, "eyes.json")):
        with open(os.path.join(gt_dir, "eyes.json")) as f:
            gt_eyes = json.load(f)
        e = eye_errors(r.model.eye_centers.detach().cpu(), r.model.eye_radius.item(), gt_eyes)
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
    if writer is not None:
        res["report"] = writer.finish(dict(res), r.folder, gt_eyes)
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
