"""The refractive eye model (``eye_model: cornea``, SPEC section 8): shading, gradients, training,
export, on the `tiny --refractive` synthetic capture."""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np
import pytest
from conftest import tiny_cfg
import torch
import torch.nn.functional as F

from eyefast.scene import backend
from eyefast.export import export_run
from eyefast.scene.model import TEXTURE_LR_SCALE, HeadModel
from eyefast.scene.shading import CORNEA_ROUGHNESS
from eyefast.core.eyes import MODEL_EYE, REGION_IRIS
from eyefast.reference.eye import trace_eyes
from eyefast.training import Trainer


def _model(tiny_refractive, tmp_path, dtype=torch.float32):
    cfg = tiny_cfg(tiny_refractive, tmp_path, "data.fix_eye_gaze=false")
    assert cfg.eye_model == "cornea"  # the synth writes it for --refractive
    m = HeadModel(cfg, backend.get("reference"), 4).to(dtype)
    with torch.no_grad():
        m.gaze.copy_(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    return m


def _apex_ray(m, k, dist):
    """A ray along -gaze through eye k's corneal apex, starting ``dist`` in front of it."""
    g = F.normalize(m.gaze.detach()[k], dim=0)
    apex = m.eye_centers.detach()[k] + g * (MODEL_EYE["cornea_offset"] + MODEL_EYE["cornea_radius"]) * m.eye_radius.detach()
    return (apex + dist * g)[None].to(m.gaze.dtype), (-g)[None].to(m.gaze.dtype)


def test_cornea_colour_at_normal_incidence_is_reflection_plus_transmitted_iris(tiny_refractive, tmp_path):
    m = _model(tiny_refractive, tmp_path, torch.float64)
    albedo = 0.3
    with torch.no_grad():
        m.iris_texture[0].fill_(math.log(albedo / (1 - albedo)))  # the pyramid sums logits: level 0 carries it
    o, d = _apex_ray(m, 0, 2.0)
    tr = trace_eyes(o, d, m.eyes_packed().double())
    assert int(tr[2]) == REGION_IRIS and int(tr[1]) == 0
    light = {"color": [1.0, 1.0, 1.0], "intensity": 12.0}
    occ = torch.ones(1, dtype=torch.float64)
    rgb, alb = m.cornea_rgb(tr, o, d, occ, light)
    n = MODEL_EYE["ior"]
    Fr = ((n - 1) / (n + 1)) ** 2
    assert float(tr[5].detach()) == pytest.approx(Fr, rel=1e-9)
    a = CORNEA_ROUGHNESS ** 2
    t_iris = MODEL_EYE["iris_depth"] * float(m.eye_radius.detach())
    assert float(tr[6].detach()) == pytest.approx(t_iris, rel=1e-9)
    # GGX at n.h = 1: D = 1 / (pi a^2), Smith / (4 n.l n.v) = 1 / 4; Burley at normal incidence: albedo / pi;
    # ambient: softplus(0) / beta (SH coefficients start at 0) x occlusion x albedo x sh_scale
    refl = Fr * 12.0 / 2.0 ** 2 / (4 * math.pi * a * a)
    diffuse = albedo / math.pi * 12.0 / (2.0 + t_iris) ** 2
    ambient = math.log(2.0) / m.sh_beta * albedo * m.sh_scale
    want = refl + (1 - Fr) ** 2 * (diffuse + ambient)
    # rtol: GGX with alpha = 0.0025 is so sharp at n.h = 1 that a 1e-13 rounding of the cosine moves D by 1e-7
    assert torch.allclose(rgb.detach(), torch.full_like(rgb, want), rtol=1e-6)
    assert torch.allclose(alb.detach(), torch.full_like(alb, albedo), rtol=1e-9)


def test_cornea_colour_trains_the_eye_geometry_and_the_iris(tiny_refractive, tmp_path):
    m = _model(tiny_refractive, tmp_path)
    g = torch.Generator().manual_seed(0)
    o, d = _apex_ray(m, 1, 2.0)
    # a bundle of rays around the apex ray: iris, cornea-only and sclera hits
    jitter = (torch.rand(256, 3, generator=g) - 0.5) * 0.03
    d = F.normalize(d + jitter, dim=-1)
    o = o.expand_as(d)
    tr = trace_eyes(o, d, m.eyes_packed())
    sel = torch.nonzero(tr[2] >= REGION_IRIS).squeeze(-1)
    assert sel.numel() > 20
    rgb, _ = m.cornea_rgb(tuple(v[sel] for v in tr), o[sel], d[sel], torch.ones(sel.numel()),
                          {"color": [1.0, 1.0, 1.0], "intensity": 12.0})
    (rgb * torch.linspace(0, 1, 3)).sum().backward()
    for name, p in (("gaze", m.gaze), ("eye_centers", m.eye_centers), ("eye_s", m.eye_s),
                    ("iris_texture[0]", m.iris_texture[0]), ("light_scale", m.light_scale)):
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    assert torch.isfinite(m.gaze.grad).all()


def test_gaze_is_fixed_by_default_and_comes_from_the_config(tiny_refractive, tmp_path):
    tr = Trainer(tiny_cfg(tiny_refractive, tmp_path, "data.eye_gaze=[0.0,0.1,1.0]"), quiet=True)
    assert not tr.model.gaze.requires_grad
    assert all(tr.model.gaze is not p for g in tr.optimizer.param_groups for p in g["params"])
    assert torch.allclose(tr.model.gaze, F.normalize(torch.tensor([[0.0, 0.1, 1.0]]), dim=-1).expand(2, 3))
    with pytest.raises(ValueError, match="eye_gaze"):
        Trainer(tiny_cfg(tiny_refractive, tmp_path, "data.eye_gaze=[0.0,0.0,-1.0]"), quiet=True)


def test_eye_sdf_is_the_union_of_globe_and_cornea(tiny_refractive, tmp_path):
    m = _model(tiny_refractive, tmp_path)
    o, d = _apex_ray(m, 0, 0.0)  # the apex: on the cornea, outside the globe
    e = m.eye_sdf(o)
    assert abs(float(e[0, 0].detach())) < 1e-6
    r = float(m.eye_radius.detach())
    c = m.eye_centers.detach()[0]
    assert float(((o[0] - c).norm() - r)) > 0.05 * r  # the cornea stands out of the globe
    n = m.eye_normal(o, torch.zeros(1, dtype=torch.long))
    assert torch.allclose(n, F.normalize(m.gaze.detach()[0], dim=0)[None], atol=1e-6)


def test_train_and_export_refractive(tiny_refractive, tmp_path):
    tr = Trainer(tiny_cfg(tiny_refractive, tmp_path, "data.fix_eye_gaze=false"), quiet=True)
    assert tr.model.cornea and len(tr.optimizer.param_groups) == 2
    g0 = tr.model.gaze.detach().clone()
    res = [tr.train_step() for _ in range(4)]
    assert all(np.isfinite(r["loss"]) for r in res)
    assert not torch.equal(g0, tr.model.gaze.detach())  # fix_eye_gaze=false: the gaze learns
    # the iris texture trains at TEXTURE_LR_SCALE x the rate (its gradients: the test above; at the start
    # the eyes sit inside the initial face sphere, so the first steps give them no opacity)
    fast = tr.optimizer.param_groups[1]
    assert {id(p) for p in fast["params"]} == {id(p) for p in tr.model.texture_parameters()}
    assert fast["initial_lr"] == pytest.approx(tr.optimizer.param_groups[0]["initial_lr"] * TEXTURE_LR_SCALE)
    r = tr.render_view(tr.val_cap, 0)
    assert torch.isfinite(r["rgb"]).all()
    out = tmp_path / "export"
    paths = export_run(tr.as_run(), str(out), uv_size=64, mc_res=40, preview=True)
    for side in ("left", "right"):
        for f in ("cornea.obj", "iris.obj", "iris.mtl", "iris.png", "mesh.obj"):
            assert os.path.getsize(out / side / f) > 0, f"{side}/{f}"
    meta = json.loads((out / "export.json").read_text())
    assert meta["eye_model"] == "cornea"
    assert meta["cornea"]["left"]["ior"] == pytest.approx(MODEL_EYE["ior"])
    data = open(paths["glb"], "rb").read()
    clen, _ = struct.unpack_from("<II", data, 12)
    js = json.loads(data[20:20 + clen])
    mats = {m["name"]: m for m in js["materials"]}
    assert "KHR_materials_transmission" in js["extensionsUsed"]
    for side in ("left", "right"):
        ext = mats[f"{side}_cornea"]["extensions"]
        assert ext["KHR_materials_transmission"]["transmissionFactor"] == 1.0
        assert ext["KHR_materials_ior"]["ior"] == pytest.approx(MODEL_EYE["ior"])
        assert "baseColorTexture" in mats[f"{side}_iris"]["pbrMetallicRoughness"]
    names = {n.get("name") for n in js["nodes"]}
    assert {"left_cornea", "right_cornea", "left_iris", "right_iris"} <= names
    # the globe keeps the sclera up to the seam: a frontal ray 0.55 r off the axis (outside the cornea's rim,
    # 0.51 r) hits the exported globe mesh
    Vg = np.array([[float(x) for x in ln.split()[1:4]] for ln in open(out / "left" / "mesh.obj") if ln.startswith("v ")])
    Fg = np.array([[int(x.split("/")[0]) - 1 for x in ln.split()[1:4]] for ln in open(out / "left" / "mesh.obj")
                   if ln.startswith("f ")])
    cl = tr.model.eye_centers.detach()[0].double().numpy()
    rl = float(tr.model.eye_radius.detach())

    def hits(off):  # Moeller-Trumbore, one ray along -z against every triangle
        ro, rd = cl + np.array([off * rl, 0.0, 2.0]), np.array([0.0, 0.0, -1.0])
        a, b, c = Vg[Fg[:, 0]], Vg[Fg[:, 1]], Vg[Fg[:, 2]]
        e1, e2 = b - a, c - a
        p = np.cross(rd, e2)
        det = (e1 * p).sum(-1)
        ok = np.abs(det) > 1e-15
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = ro - a
        u = (s * p).sum(-1) * inv
        q = np.cross(s, e1)
        v = (rd * q).sum(-1) * inv
        t = (e2 * q).sum(-1) * inv
        front = ro[2] + t * rd[2] - cl[2] > 0.5 * rl  # on the front of the globe, not its back
        return bool((ok & (u >= 0) & (v >= 0) & (u + v <= 1) & front).any())

    assert hits(0.55) and hits(0.8) and not hits(0.3) and not hits(1.1)
    # the cornea cap meets the globe: its rim lies on the globe sphere
    V = np.array([[float(x) for x in ln.split()[1:]] for ln in open(out / "left" / "cornea.obj") if ln.startswith("v ")])
    c = tr.model.eye_centers.detach()[0].numpy()
    rad = float(tr.model.eye_radius.detach())
    dist = np.linalg.norm(V - c, axis=1)
    assert dist.max() == pytest.approx(rad * (MODEL_EYE["cornea_offset"] + MODEL_EYE["cornea_radius"]), rel=1e-4)
    assert dist.min() == pytest.approx(rad, rel=1e-3)


def test_parity_eyefast_vs_reference_backend_with_corneas(tiny_refractive, tmp_path):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {}
        for be in ("eyefast", "reference"):
            tr = Trainer(tiny_cfg(tiny_refractive, tmp_path / be, f"ops_backend={be}"), quiet=True)
            runs[be] = [tr.train_step() for _ in range(3)]
    finally:
        torch.set_num_threads(old)
    for x, y in zip(runs["eyefast"], runs["reference"]):
        assert x["n_samples"] == y["n_samples"]
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4)


@pytest.mark.parametrize("be", ["eyefast", "reference"])
def test_cornea_blend_replaces_the_eye_share_and_leaves_the_eye_geometry_alone(tiny_refractive, tmp_path, be):
    from eyefast.scene.render import _cornea_blend

    cfg = tiny_cfg(tiny_refractive, tmp_path, "data.fix_eye_gaze=false", f"ops_backend={be}")
    m = HeadModel(cfg, backend.get(be), 4)
    o, d = _apex_ray(m, 0, 2.0)
    g = torch.Generator().manual_seed(1)
    d = F.normalize(d + (torch.rand(64, 3, generator=g) - 0.5) * 0.03, dim=-1)
    o = o.expand_as(d).contiguous()
    n = d.shape[0]
    base = torch.full((n, 3), 0.25, requires_grad=True)
    out = {"rgb": base * 1.0, "opacity": torch.ones(n)}
    light = {"color": [1.0, 1.0, 1.0], "intensity": 12.0}
    fid = torch.zeros(n, dtype=torch.long)
    _cornea_blend(out, m, backend.get(be), o, d, torch.ones(n), fid, light, False)
    tr = trace_eyes(o, d, m.eyes_packed().detach())
    corn = tr[2] >= REGION_IRIS
    assert 10 < int(corn.sum()) < n  # iris, cornea-only and sclera rays
    want, _ = m.cornea_rgb(tuple(v[corn] for v in tr), o[corn], d[corn], m.occlusion(fid[corn]), light)
    assert torch.allclose(out["rgb"][corn], want, rtol=1e-5, atol=1e-6)
    assert torch.equal(out["rgb"][~corn].detach(), base[~corn].detach())  # sclera rays keep their shading
    out["rgb"].sum().backward()
    assert m.eye_centers.grad is None and m.eye_s.grad is None  # detached: the geometry learns elsewhere
    assert m.gaze.grad is not None and bool(m.gaze.grad.abs().sum() > 0)
    assert bool(m.iris_texture[0].grad.abs().sum() > 0)


def test_bad_gaze_is_a_clear_error(tiny_refractive, tmp_path):
    for bad in ("[0.0,0.0,0.0]", "[0.0,.nan,1.0]"):
        with pytest.raises(ValueError, match="eye_gaze"):
            Trainer(tiny_cfg(tiny_refractive, tmp_path, f"data.eye_gaze={bad}"), quiet=True)


def test_resume_checks_the_gaze_setting_only_with_corneas(tiny, tiny_refractive, tmp_path):
    tr = Trainer(tiny_cfg(tiny_refractive, tmp_path), quiet=True)
    tr.train_step()
    ck = str(tmp_path / "cornea.pth")
    tr.save(ck)
    other = Trainer(tiny_cfg(tiny_refractive, tmp_path, "data.fix_eye_gaze=false"), quiet=True)
    with pytest.raises(ValueError, match="fix_eye_gaze"):
        other.load(ck)
    lr = Trainer(tiny_cfg(tiny_refractive, tmp_path, "train.lr=0.002"), quiet=True)
    lr.load(ck)  # the texture group keeps its multiple of the new rate
    assert lr.scheduler.base_lrs == pytest.approx([0.002, 0.002 * TEXTURE_LR_SCALE])
    sph = Trainer(tiny_cfg(tiny, tmp_path), quiet=True)
    sph.train_step()
    ck2 = str(tmp_path / "sphere.pth")
    sph.save(ck2)
    Trainer(tiny_cfg(tiny, tmp_path, "data.fix_eye_gaze=false"), quiet=True).load(ck2)  # no gaze: no error
