"""The evaluation report: ``RUN/eval/`` (written by ``eyefast evaluate``).

* ``view_XX.png``: per validation view, prediction | truth | error heat-map (the mean absolute error
  over the colour channels, sRGB-ish, on a black-to-white scale from 0 to :data:`ERROR_VMAX`);
* ``eyes_XX.png``: the eye crops of that view side by side (left eye prediction | truth, right eye
  prediction | truth), around each eye's mask, enlarged;
* ``curves.png``: the training curves from ``scalars.csv``: PSNR (training batches, validation), the
  losses, and with ground truth the eye-centre error at each saved checkpoint (matplotlib; left out,
  with a note, when matplotlib is not installed);
* ``index.html``: the metrics table, the images and the curves in one page (open it in a browser);
* ``report.json``: the numbers of the page.
"""

from __future__ import annotations

import csv
import glob
import html
import json
import os
import re

import numpy as np
import torch
import torch.nn.functional as F

from ..core.imaging import heatmap, label, label_panels

__all__ = ["ReportWriter", "ERROR_VMAX", "read_scalars", "eye_center_history", "plot_curves"]

#: the top of the error heat-map scale (mean absolute error of the sRGB-ish values)
ERROR_VMAX = 0.25
#: eye crops are enlarged to this many pixels per side
EYE_CROP = 128
#: views smaller than this (shorter side, pixels) are enlarged by a whole factor in the pictures
MIN_SIDE = 192


def _u8(img: torch.Tensor) -> np.ndarray:
    return (img.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def _write(path: str, img: torch.Tensor) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, _u8(img))


def _enlarge(img: torch.Tensor, min_side: int = MIN_SIDE) -> torch.Tensor:
    """``img`` enlarged by a whole factor (nearest) until its shorter side is at least ``min_side``."""
    k = max(1, -(-min_side // min(img.shape[:2])))
    return img if k == 1 else img.repeat_interleave(k, 0).repeat_interleave(k, 1)


def _eye_box(mask: torch.Tensor, margin: float = 0.6):
    """Square box ``(y0, y1, x0, x1)`` around ``mask > 0.5`` with ``margin`` times its size around it."""
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    if len(ys) == 0:
        return None
    H, W = mask.shape
    cy, cx = (float(ys.min()) + float(ys.max()) + 1) / 2, (float(xs.min()) + float(xs.max()) + 1) / 2
    side = max(float(ys.max() - ys.min() + 1), float(xs.max() - xs.min() + 1)) * (1 + 2 * margin)
    side = max(8.0, min(side, float(min(H, W))))
    y0 = int(round(min(max(cy - side / 2, 0), H - side)))
    x0 = int(round(min(max(cx - side / 2, 0), W - side)))
    s = int(round(side))
    return y0, y0 + s, x0, x0 + s


def _crop(img: torch.Tensor, box) -> torch.Tensor:
    y0, y1, x0, x1 = box
    c = img[y0:y1, x0:x1].permute(2, 0, 1)[None].float()
    return F.interpolate(c, size=(EYE_CROP, EYE_CROP), mode="nearest")[0].permute(1, 2, 0)


class ReportWriter:
    """Collects the views of an evaluation (pass :meth:`view` as ``each`` to
    :func:`eyefast.evaluation.views.view_metrics`) and writes the report into ``folder``
    (:meth:`finish`)."""

    def __init__(self, folder: str, cap):
        self.folder, self.cap = folder, cap
        os.makedirs(folder, exist_ok=True)
        for old in glob.glob(os.path.join(folder, "view_*.png")) + glob.glob(os.path.join(folder, "eyes_*.png")):
            os.remove(old)  # a report of fewer views must not show stale ones
        self.views: list = []

    def view(self, i: int, r: dict, pred: torch.Tensor, gt: torch.Tensor, m: dict) -> None:
        err = (pred - gt).abs().mean(-1)
        panels = label_panels([_enlarge(p) for p in (pred, gt, heatmap(err, ERROR_VMAX))],
                              ["prediction", "truth", f"error (0 to {ERROR_VMAX:g})"])
        name = f"view_{i:02d}.png"
        _write(os.path.join(self.folder, name), torch.cat(panels, 1))
        entry = {"index": i, "frame": self.cap.image_names[i], "image": name, **m,
                 "mean_abs_error": float(err.mean())}
        crops, names = [], []
        for side, kind in (("left", "leye_mask"), ("right", "reye_mask")):
            box = _eye_box(self.cap.full_mask(i, kind).cpu())
            if box is None:
                continue
            crops += [_crop(pred, box), _crop(gt, box)]
            names += [f"{side}: prediction", f"{side}: truth"]
        if crops:
            crops = [label(c, n, 12) for c, n in zip(crops, names)]
            entry["eyes"] = f"eyes_{i:02d}.png"
            _write(os.path.join(self.folder, entry["eyes"]), torch.cat(crops, 1))
        self.views.append(entry)

    def finish(self, res: dict, run_folder: str | None, gt_eyes: dict | None = None) -> str:
        """Writes ``curves.png`` (when there is a ``scalars.csv``), ``report.json`` and ``index.html``;
        returns the page's path."""
        curves, note = None, None
        if run_folder and os.path.isfile(os.path.join(run_folder, "scalars.csv")):
            scal = read_scalars(os.path.join(run_folder, "scalars.csv"))
            hist = eye_center_history(run_folder, gt_eyes) if gt_eyes else []
            try:
                plot_curves(scal, hist, os.path.join(self.folder, "curves.png"))
                curves = "curves.png"
            except ImportError:
                note = "the training curves need matplotlib: pip install matplotlib (or 'eyefast[report]')"
        else:
            note = "no scalars.csv in the run folder: no training curves"
        with open(os.path.join(self.folder, "report.json"), "w") as fh:
            json.dump({"metrics": res, "views": self.views}, fh, indent=1)
        page = os.path.join(self.folder, "index.html")
        with open(page, "w") as fh:
            fh.write(_html(res, self.views, curves, note, run_folder))
        return page


def read_scalars(path: str) -> dict:
    """``scalars.csv`` -> ``{tag: (steps [n], values [n])}`` (sorted by step)."""
    out: dict = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                out.setdefault(row["tag"], []).append((int(row["step"]), float(row["value"])))
            except (KeyError, ValueError, TypeError):
                continue
    return {k: (np.array([s for s, _ in sorted(v)]), np.array([x for _, x in sorted(v)])) for k, v in out.items()}


def eye_center_history(run_folder: str, gt_eyes: dict) -> list:
    """``[(step, mean eye-centre error)]`` over the run's saved checkpoints (``checkpoints/step_*.pth``
    and ``latest.pth``), against the true eyes ``gt_eyes`` (``gt/eyes.json``)."""
    from ..checkpoint import load_checkpoint

    true = torch.tensor([gt_eyes["left"]["center"], gt_eyes["right"]["center"]], dtype=torch.float64)
    paths = sorted(glob.glob(os.path.join(run_folder, "checkpoints", "step_*.pth")))
    latest = os.path.join(run_folder, "latest.pth")
    if os.path.isfile(latest):
        paths.append(latest)
    hist = {}
    for p in paths:
        m = re.search(r"step_(\d+)\.pth$", p)
        try:
            if m and int(m.group(1)) in hist:
                continue
            ck = load_checkpoint(p)
        except (ValueError, FileNotFoundError):
            continue
        c = ck["model"].get("eye_centers")
        if c is None:
            continue
        hist[int(ck["step"])] = float((c.double().cpu() - true).norm(dim=-1).mean())
    return sorted(hist.items())


def plot_curves(scal: dict, eye_hist: list, path: str) -> None:
    """``curves.png``: PSNR, losses and (when given) the eye-centre error over the steps."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = 3 if eye_hist else 2
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), dpi=100)
    ax = axes[0]
    for tag, lab in (("train/psnr", "training batches"), ("val/psnr", "validation"), ("val/psnr_eye", "validation, eyes")):
        if tag in scal:
            s, v = scal[tag]
            ax.plot(s, v, "-o" if len(s) < 20 else "-", ms=3, label=lab)
    ax.set_title("PSNR [dB]")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    losses = sorted(t for t in scal if t.startswith("train/loss"))
    for tag in losses:
        s, v = scal[tag]
        if np.all(v <= 0):
            continue
        ax.plot(s, np.maximum(v, 1e-8), lw=2 if tag == "train/loss" else 1,
                label="total" if tag == "train/loss" else tag[len("train/loss_"):])
    ax.set_yscale("log")
    ax.set_title("losses")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    if eye_hist:
        ax = axes[2]
        s, v = zip(*eye_hist)
        ax.plot(s, v, "-o", ms=4)
        ax.set_title("eye-centre error (world units)")
        ax.set_xlabel("step (saved checkpoints)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.5g}"
    return html.escape(str(v))


def _html(res: dict, views: list, curves, note, run_folder) -> str:
    e = html.escape
    title = f"eyefast evaluation: {os.path.basename(run_folder.rstrip('/')) if run_folder else 'run'}"
    rows = "".join(f"<tr><th>{e(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in res.items() if not isinstance(v, dict))
    vrows = []
    for v in views:
        eyes = f'<br><img src="{e(v["eyes"])}" alt="eye crops">' if v.get("eyes") else ""
        vrows.append(f"<tr><td>{v['index']}<br>{e(str(v['frame']))}</td><td>{_fmt(v['psnr'])}</td>"
                     f"<td>{_fmt(v['ssim'])}</td><td>{_fmt(v.get('psnr_eye'))}</td>"
                     f"<td><img src=\"{e(v['image'])}\" alt=\"view {v['index']}\">{eyes}</td></tr>")
    curves_html = f'<img src="{curves}" alt="training curves">' if curves else f"<p><i>{e(note or '')}</i></p>"
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; background: #fafafa; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #eee; }}
img {{ image-rendering: pixelated; max-width: 100%; }}
</style></head>
<body>
<h1>{e(title)}</h1>
<p>{e(run_folder or '')}: step {_fmt(res.get('step'))}, {_fmt(res.get('views'))} validation views.
Images: prediction | truth | error heat-map (mean absolute error of the sRGB-ish values, black 0 to white
{ERROR_VMAX:g}); eye crops: prediction | truth per eye.</p>
<h2>Metrics</h2>
<table>{rows}</table>
<h2>Training curves</h2>
{curves_html}
<h2>Validation views</h2>
<table><tr><th>view</th><th>PSNR</th><th>SSIM</th><th>PSNR eyes</th><th>images</th></tr>
{''.join(vrows)}
</table>
</body></html>
"""
