"""Small image helpers shared by the previews, the evaluation report and the renders: panels with
their names written on them, sheets of panels, and a heat-map colour scale.

Images are float tensors ``[H, W, 3]`` in 0..1 (or uint8 arrays where said). Text is drawn with
Pillow's built-in font (a scalable one where Pillow has FreeType, its bitmap font otherwise), white
on a dark box in the panel's top-left corner: the panel keeps its size and the labelled pixels are
the only ones that change.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["label", "label_panels", "sheet", "heatmap"]


@functools.lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # an old Pillow, or one without FreeType
        return ImageFont.load_default()


def label(img: torch.Tensor, text: str, size: int | None = None) -> torch.Tensor:
    """``img [H, W, 3]`` (0..1) with ``text`` written in its top-left corner (a copy; same size).
    ``size``: the font's pixel height (default: about a tenth of the panel, 8 to 16 px)."""
    from PIL import Image, ImageDraw

    if not text:
        return img
    H, W = img.shape[:2]
    size = int(size or max(8, min(16, round(min(H, W) / 10))))
    layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))  # drawn apart, then blended: other pixels stay exact
    draw = ImageDraw.Draw(layer)
    font = _font(size)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    pad = max(1, size // 5)
    draw.rectangle([0, 0, min(W - 1, x1 - x0 + 2 * pad), min(H - 1, y1 - y0 + 2 * pad)], fill=(0, 0, 0, 160))
    draw.text((pad - x0, pad - y0), text, fill=(255, 255, 255, 255), font=font)
    ov = torch.from_numpy(np.asarray(layer).astype(np.float32) / 255.0).to(img.device)
    a = ov[..., 3:]
    return torch.where(a > 0, img[..., :3].float() * (1 - a) + ov[..., :3] * a, img[..., :3].float())


def label_panels(panels, names, size: int | None = None) -> list:
    """Each panel ``[H, W, 3]`` with its name (see :func:`label`); all panels get the same font size."""
    if len(panels) != len(names):
        raise ValueError(f"label_panels: {len(panels)} panels but {len(names)} names")
    if size is None and panels:
        H, W = panels[0].shape[:2]
        size = max(8, min(16, round(min(H, W) / 10)))
    return [label(p, n, size) for p, n in zip(panels, names)]


def sheet(panels, columns: int | None = None) -> torch.Tensor:
    """Panels of one size ``[H, W, 3]`` side by side, ``columns`` per row (default: all in one row);
    a last row that is not full is padded with black."""
    if not panels:
        raise ValueError("sheet: no panels")
    columns = len(panels) if columns is None else max(1, min(int(columns), len(panels)))
    blank = torch.zeros_like(panels[0])
    rows = []
    for r in range(0, len(panels), columns):
        row = list(panels[r:r + columns])
        row += [blank] * (columns - len(row))
        rows.append(torch.cat(row, 1))
    return torch.cat(rows, 0)


#: the heat-map scale: black, purple, red, orange, yellow, white (perceptually ordered, like inferno)
_STOPS = torch.tensor([[0.0, 0.0, 0.0], [0.34, 0.06, 0.43], [0.80, 0.21, 0.26], [0.98, 0.55, 0.04],
                       [0.98, 0.90, 0.25], [1.0, 1.0, 1.0]])


def heatmap(x: torch.Tensor, vmax: float) -> torch.Tensor:
    """Colours ``x [H, W]`` (0 .. ``vmax``, clamped) on a black-to-white heat scale: ``[H, W, 3]``."""
    t = (x.float().cpu() / max(float(vmax), 1e-12)).clamp(0, 1) * (len(_STOPS) - 1)
    i = t.floor().long().clamp(max=len(_STOPS) - 2)
    f = (t - i)[..., None]
    return _STOPS[i] * (1 - f) + _STOPS[i + 1] * f
