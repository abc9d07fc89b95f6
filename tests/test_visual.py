"""Looking at a trained head (``eyefast.visual``, ``eyefast render``, ``eyefast view``, the evaluation
report, labelled previews) on the `tiny` synthetic capture, on the CPU.

Most tests share one tiny run trained for 2 steps (an almost untrained model: a blurry head is enough
to see that cameras, lights and outputs do what they say); the export comparison uses the analytic
face of test_export (a bumpy sphere with smooth materials), whose volume render and rasterised
export should agree.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import tiny_cfg

from eyefast.scene import shading as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")


# ------------------------------------------------------------------------------------ shading
def _surface(n=257, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g) * 0.3
    nrm = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    cam = torch.tensor([0.2, 0.1, 2.5])
    nrm = torch.where(((cam - x) * nrm).sum(-1, keepdim=True) < 0, -nrm, nrm)  # facing the camera
    alb = torch.rand(n, 3, generator=g)
    spec = torch.rand(n, 1, generator=g)
    rough = 0.1 + 0.7 * torch.rand(n, 1, generator=g)
    return x, nrm, cam, alb, spec, rough


def test_a_flash_light_shades_exactly_as_the_colocated_light():
    x, nrm, cam, alb, spec, rough = _surface()
    sh = torch.randn(9, 3, generator=torch.Generator().manual_seed(1)) * 0.2
    ref = S.shade_colocated(x, nrm, cam, alb, spec, rough, [1.0, 0.9, 0.8], 12.0, 0.7, sh, 10.0, 0.6, 1.0)
    out = S.shade_lights(x, nrm, cam, alb, spec, rough, [S.point_light(None, [1.0, 0.9, 0.8], 12.0)], 0.7, sh,
                         10.0, 0.6, 1.0)
    for k in ("diffuse", "specular", "ambient", "rgb", "n_dot_l", "dist"):
        assert torch.equal(out[k], ref[k]), k  # bitwise: the training path's light is this one
    # a light placed at the camera is the same light (to rounding: l and v computed apart)
    at_cam = S.shade_lights(x, nrm, cam, alb, spec, rough, [S.point_light(cam, [1.0, 0.9, 0.8], 12.0)], 0.7, sh,
                            10.0, 0.6, 1.0)
    torch.testing.assert_close(at_cam["rgb"], ref["rgb"], rtol=1e-5, atol=1e-6)


def test_lights_add_up_and_a_side_light_lights_the_side_facing_it():
    x, nrm, cam, alb, spec, rough = _surface()
    a, b = S.point_light([2.0, 0.0, 1.0], [1, 1, 1], 10.0), S.point_light([-2.0, 0.5, 1.0], [1, 0.5, 0.2], 5.0)
    one = S.shade_lights(x, nrm, cam, alb, spec, rough, [a])
    two = S.shade_lights(x, nrm, cam, alb, spec, rough, [b])
    both = S.shade_lights(x, nrm, cam, alb, spec, rough, [a, b])
    torch.testing.assert_close(both["rgb"], one["rgb"] + two["rgb"])
    none = S.shade_lights(x, nrm, cam, alb, spec, rough, [])
    assert torch.equal(none["rgb"], torch.zeros_like(none["rgb"]))  # no ambient given: black
    facing = (nrm[:, 0] > 0.5)  # normals towards +x see the light at +x, the others not as much
    away = (nrm[:, 0] < -0.5)
    assert one["rgb"][facing].mean() > 3 * one["rgb"][away].mean()


# ------------------------------------------------------------------------------------ labels
def test_label_writes_only_in_the_corner_and_sheets_tile():
    from eyefast.core.imaging import heatmap, label, sheet

    img = torch.full((48, 64, 3), 0.3)
    out = label(img, "albedo")
    changed = (out != img).any(-1)
    ys, xs = torch.nonzero(changed, as_tuple=True)
    assert changed.any() and int(ys.max()) < 20 and int(xs.max()) < 48  # a box in the top-left corner
    assert float(out.max()) > 0.6  # light letters (anti-aliased)
    assert torch.equal(label(img, ""), img)
    s = sheet([img] * 5, columns=2)
    assert s.shape == (3 * 48, 2 * 64, 3) and float(s[96:, 64:].abs().max()) == 0.0  # padded last row
    h = heatmap(torch.linspace(0, 1, 11)[None], 1.0)[0]
    assert torch.allclose(h[0], torch.zeros(3)) and torch.allclose(h[-1], torch.ones(3))
    assert bool((h.sum(-1)[1:] >= h.sum(-1)[:-1]).all())  # brighter with the error


def test_training_preview_panels_carry_their_names():
    from eyefast.evaluation.views import PREVIEW_PANELS, preview_image

    H, W = 64, 64
    g = torch.Generator().manual_seed(0)
    r = {"rgb": torch.rand(H, W, 3, generator=g), "normal": torch.rand(H, W, 3, generator=g) * 2 - 1,
         "opacity": torch.ones(H, W), "diffuse": torch.rand(H, W, 3, generator=g),
         "spec_rgb": torch.rand(H, W, 3, generator=g), "obj_opacity": torch.rand(H, W, 3, generator=g)}
    photo = torch.rand(H, W, 3, generator=g)
    plain = preview_image(r, photo, 2.2, labels=False)
    named = preview_image(r, photo, 2.2)
    assert named.shape == plain.shape == (H, 6 * W, 3)
    diff = (named != plain).any(-1)
    for k in range(len(PREVIEW_PANELS)):
        d = diff[:, k * W:(k + 1) * W]
        assert d[:H // 3].any(), PREVIEW_PANELS[k]  # its name, top-left
        assert not d[H // 3:].any()  # and nothing else changed
