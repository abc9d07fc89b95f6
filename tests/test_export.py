"""Export of relightable assets (``eyefast.export``) on the `tiny` synthetic capture.

Most checks use a model with an analytic face (a bumpy sphere) and analytic materials, so the
exported files can be compared with exact values; one test trains a few steps and goes through
the command lines (``python -m eyefast.export`` and the trainer's CoRA spelling).
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from conftest import tiny_cfg
import torch
import torch.nn.functional as F
from torch import nn

from eyefast import export
from eyefast.cli.export import main as export_main
from eyefast.geometry.mesh import MeshError
from eyefast.cli.train import main as train_main
from eyefast.training import Trainer

UV, MC = 128, 64
C = torch.tensor([0.0, 0.0, 0.05])  # analytic face: sphere centre and radius, plus small bumps
R, BUMP_A, BUMP_K = 0.40, 0.004, 50.0



_cfg = tiny_cfg


class BumpySphere(nn.Module):
    """Face SDF stand-in: ``|x - C| - R + a sin(kx) sin(ky) sin(kz)`` (returns ``(sdf, feature)``)."""

    def forward(self, x):
        s = torch.sin(BUMP_K * x)
        return (x - C).norm(dim=-1) - R + BUMP_A * s.prod(-1), x.new_zeros(x.shape[0], 15)

    def set_active_levels(self, k):
        pass


def albedo_fn(x):
    return (0.5 + 0.4 * (x - C) / 0.5).clamp(0.05, 0.95)


def specular_fn(x):
    return (0.5 + 0.4 * x[:, 1]).clamp(0.0, 1.0)


def roughness_fn(x):
    return 0.1 + 0.7 * torch.sigmoid(4.0 * x[:, 0])


class Smooth(nn.Module):
    def forward(self, x):
        return albedo_fn(x), specular_fn(x), roughness_fn(x)


def sdf_normal(x):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(BumpySphere()(x)[0].sum(), x)
    return F.normalize(g, dim=-1)


@pytest.fixture(scope="module")
def analytic(tiny, tmp_path_factory):
    """A Trainer whose face SDF and material are the analytic functions above, exported once."""
    ws = tmp_path_factory.mktemp("ws")
    tr = Trainer(_cfg(tiny, ws), quiet=True)
    tr.model.sdf = BumpySphere()
    tr.model.material = Smooth()
    with torch.no_grad():
        tr.model.eye_centers += torch.tensor([[0.003, -0.002, 0.001], [-0.001, 0.002, 0.0]])
        tr.model.eye_s.fill_(0.3)
    out = ws / "export"
    paths = export.export_run(tr.as_run(), str(out), uv_size=UV, mc_res=MC, preview=True)
    return tr, str(out), paths


def _load(path, **kw):
    import trimesh

    return trimesh.load(path, process=False, **kw)


def _png(path):
    import imageio.v3 as iio

    a = np.asarray(iio.imread(path)).astype(np.float64) / 255.0
    return a[..., None] if a.ndim == 2 else a


def _glb_json_and_bin(path):
    data = open(path, "rb").read()
    magic, _, length = struct.unpack_from("<III", data, 0)
    assert magic == 0x46546C67 and length == len(data)
    jl = struct.unpack_from("<I", data, 12)[0]
    js = json.loads(data[20:20 + jl])
    bl = struct.unpack_from("<I", data, 20 + jl)[0]
    return js, data[28 + jl: 28 + jl + bl]


def _accessor(js, blob, idx):
    a = js["accessors"][idx]
    bv = js["bufferViews"][a["bufferView"]]
    n = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[a["type"]]
    dt = {5126: np.float32, 5125: np.uint32}[a["componentType"]]
    off = bv.get("byteOffset", 0) + a.get("byteOffset", 0)
    return np.frombuffer(blob, dtype=dt, count=a["count"] * n, offset=off).reshape(a["count"], n)


# ------------------------------------------------------------------------------------ analytic
def test_face_mesh_is_the_zero_level_clipped_to_the_views(analytic):
    tr, out, paths = analytic
    st = paths["stats"]
    m = _load(os.path.join(out, "mesh.obj"))
    v = torch.as_tensor(np.asarray(m.vertices), dtype=torch.float32)
    # on the zero level (marching cubes error well below a voxel, 2/64)
    d = BumpySphere()(v)[0].abs()
    assert float(d.max()) < 0.02 and float(d.mean()) < 0.004
    # decimated by half, then clipped: the back of the sphere is gone, the front kept
    assert st["faces_decimated"] == st["faces_marching_cubes"] // 2
    assert 0.2 * st["faces_decimated"] < st["faces"] < 0.95 * st["faces_decimated"]
    assert float((v[:, 2] - C[2]).mean()) > 0.05  # cameras look at the face (+z side)
    # one connected piece, faces wound outwards
    import trimesh

    assert len(trimesh.graph.connected_components(m.face_adjacency, nodes=np.arange(len(m.faces)))) == 1
    ctr = torch.as_tensor(np.array(m.triangles_center), dtype=torch.float32)
    dots = (torch.as_tensor(np.array(m.face_normals), dtype=torch.float32) * sdf_normal(ctr)).sum(-1)
    assert float(dots.min()) > 0 and float(dots.mean()) > 0.95
    # every face of the export is seen in a training view (its centroid projects into a mask)
    cap = tr.train_cap
    ok = torch.zeros(len(ctr), dtype=torch.bool)
    for i in range(cap.n_frames):
        uv = cap.project(ctr, i)
        inside = torch.isfinite(uv).all(-1) & (uv >= 0).all(-1) & (uv[:, 0] < cap.W) & (uv[:, 1] < cap.H)
        px = uv.nan_to_num(0).floor().long()
        px[:, 0].clamp_(0, cap.W - 1)
        px[:, 1].clamp_(0, cap.H - 1)
        ok |= inside & (cap.masks["mask"][i][px[:, 1], px[:, 0]] > 0)
    assert float(ok.float().mean()) > 0.97  # (hole-filling triangles may sit on a mask edge)


def test_uv_mesh_coord_map_and_textures_agree(analytic):
    from eyefast.data.tools import bake_coord_map, load_mesh_uv

    tr, out, _ = analytic
    verts, uvs, faces = load_mesh_uv(os.path.join(out, "mesh_uv.obj"))
    assert float(uvs.min()) >= 0.0 and float(uvs.max()) <= 1.0
    m = _load(os.path.join(out, "mesh.obj"))
    assert len(faces) == len(m.faces)
    mtl = open(os.path.join(out, "mesh_uv.mtl")).read()
    for t in ("map_Kd diffuse.png", "map_Ks specular.png", "map_Pr roughness.png"):
        assert t in mtl
    coord = np.load(os.path.join(out, "coord.npy"))
    assert coord.shape == (UV, UV, 3) and coord.dtype == np.float32
    nan = np.isnan(coord)
    assert (nan.all(-1) == nan.any(-1)).all()  # a texel is empty in all 3 channels or in none
    valid = ~nan[..., 0]
    assert 0.2 < valid.mean() < 0.95
    # the same layout as rasterising mesh_uv.obj's UV islands (PNG orientation: row 0 = v near 1)
    again = bake_coord_map(verts, uvs, faces, UV, UV)
    same = np.isnan(again[..., 0]) == nan[..., 0]
    assert same.mean() > 0.995
    both = valid & ~np.isnan(again[..., 0])
    assert np.abs(again[both] - coord[both]).max() < 1e-4
    # v = 1 is the top row: the texel centre of the first UV vertex lies where its UV says
    t0 = uvs[faces[:, 0]]
    row = ((1.0 - t0[:, 1]) * UV).long().clamp(0, UV - 1)
    col = (t0[:, 0] * UV).long().clamp(0, UV - 1)
    hit = valid[row.numpy(), col.numpy()]
    assert hit.mean() > 0.9
    pts = torch.as_tensor(coord[valid])
    assert float(BumpySphere()(pts)[0].abs().max()) < 0.02  # texels lie on the surface
    # textures hold the analytic material at each texel's 3D point (8-bit quantisation)
    dif, spe, rou, nor = (_png(os.path.join(out, f"{k}.png")) for k in ("diffuse", "specular", "roughness", "normal"))
    assert dif.shape == (UV, UV, 3) and spe.shape == (UV, UV, 1) and rou.shape == (UV, UV, 1)
    np.testing.assert_allclose(dif[valid], (albedo_fn(pts) ** (1 / 2.2)).numpy(), atol=2.5 / 255)
    np.testing.assert_allclose(spe[valid][:, 0], specular_fn(pts).numpy(), atol=2.5 / 255)
    np.testing.assert_allclose(rou[valid][:, 0], roughness_fn(pts).numpy(), atol=2.5 / 255)
    n = nor[valid] * 2 - 1
    cos = (F.normalize(torch.as_tensor(n, dtype=torch.float32), dim=-1) * sdf_normal(pts)).sum(-1)
    assert float(cos.min()) > np.cos(np.radians(2.0))
    for a in (dif, spe, rou, nor):
        assert a[valid].std(0).max() > 0.02  # not constant
    # padding: the texels around each island continue it (mipmaps do not pull in the background)
    vt = torch.as_tensor(valid)[None, None].float()
    ring = (F.max_pool2d(vt, 3, 1, 1)[0, 0] > 0).numpy() & ~valid
    assert ring.sum() > 0
    nb_max = F.max_pool2d(torch.as_tensor(np.where(valid[..., None], dif, -1.0)).permute(2, 0, 1)[None], 3, 1, 1)
    assert np.abs(dif[ring] - nb_max[0].permute(1, 2, 0).numpy()[ring]).max() < 0.1


def test_eye_folders_hold_the_learned_spheres(analytic):
    tr, out, _ = analytic
    centers = tr.model.eye_centers.detach()
    r = float(tr.model.eye_radius.detach())
    assert float(centers[0, 0]) > 0  # "left" = the subject's left eye, at +x in the synthetic world
    cap = tr.train_cap
    for k, side in enumerate(("left", "right")):
        d = os.path.join(out, side)
        for f in ("mesh.obj", "mesh_uv.obj", "mesh_uv.mtl", "diffuse.png", "normal.png", "coord.npy"):
            assert os.path.isfile(os.path.join(d, f)), f
        m = _load(os.path.join(d, "mesh.obj"))
        v = np.asarray(m.vertices)
        np.testing.assert_allclose(np.linalg.norm(v - centers[k].numpy(), axis=-1), r, rtol=1e-5)
        assert 100 < len(m.faces) < 1280  # icosphere level 3 has 1280 faces; the unseen back is cut
        # every kept face faces some training camera
        ctr = torch.as_tensor(np.array(m.triangles_center), dtype=torch.float32)
        fn = torch.as_tensor(np.array(m.face_normals), dtype=torch.float32)
        front = ((cap.cam_centers[:, None] - ctr[None]) * fn[None]).sum(-1) > 0
        assert bool(front.any(0).all())
        mu = _load(os.path.join(d, "mesh_uv.obj"))
        assert mu.visual.uv.min() >= 0 and mu.visual.uv.max() <= 1
        dif = _png(os.path.join(d, "diffuse.png"))
        coord = np.load(os.path.join(d, "coord.npy"))
        ok = ~np.isnan(coord[..., 0])
        np.testing.assert_allclose(np.linalg.norm(coord[ok] - centers[k].numpy(), axis=-1), r, rtol=1e-4)
        np.testing.assert_allclose(dif[ok], (albedo_fn(torch.as_tensor(coord[ok])) ** (1 / 2.2)).numpy(),
                                   atol=2.5 / 255)
    meta = json.load(open(os.path.join(out, "export.json")))
    np.testing.assert_allclose(meta["eyes"]["left"]["center"], centers[0].numpy(), atol=1e-6)
    assert meta["eyes"]["right"]["radius"] == pytest.approx(r)


def test_glb_loads_and_its_tangent_space_normal_map_gives_the_world_normals(analytic):
    import trimesh

    from eyefast import ops

    _, out, _ = analytic
    path = os.path.join(out, "head.glb")
    scene = trimesh.load(path)
    assert set(scene.geometry) == {"face", "left_eye", "right_eye"}
    face = scene.geometry["face"]
    mat = face.visual.material
    assert mat.baseColorTexture is not None and mat.metallicRoughnessTexture is not None
    assert mat.normalTexture is not None
    assert face.visual.uv.min() >= 0 and face.visual.uv.max() <= 1
    js, blob = _glb_json_and_bin(path)
    assert {"KHR_materials_specular", "KHR_materials_ior"} <= set(js["extensionsUsed"])
    mesh = next(m for m in js["meshes"] if m["name"] == "face")
    attr = mesh["primitives"][0]["attributes"]
    assert {"POSITION", "NORMAL", "TEXCOORD_0", "TANGENT"} <= set(attr)
    pos = _accessor(js, blob, attr["POSITION"])
    nrm = _accessor(js, blob, attr["NORMAL"])
    tan = _accessor(js, blob, attr["TANGENT"])
    tex = _accessor(js, blob, attr["TEXCOORD_0"])
    idx = _accessor(js, blob, mesh["primitives"][0]["indices"]).reshape(-1, 3).astype(np.int64)
    assert set(np.unique(tan[:, 3])) <= {-1.0, 1.0}
    np.testing.assert_allclose(np.linalg.norm(tan[:, :3], axis=-1), 1, atol=1e-5)
    assert np.abs((tan[:, :3] * nrm).sum(-1)).max() < 1e-4
    # metallicRoughness: G roughness, B metallic 0
    mr = np.asarray(mat.metallicRoughnessTexture)
    assert (mr[..., 2] == 0).all()
    rough = _png(os.path.join(out, "roughness.png"))[..., 0]
    np.testing.assert_array_equal(mr[..., 1], np.round(rough * 255).astype(np.uint8))
    # rebuild world normals the way a viewer does: N, T interpolated, B = w cross(N, T), n = [T B N] n_ts
    uv = torch.as_tensor(tex.copy())
    uv[:, 1] = 1 - uv[:, 1]  # glTF v points down; OBJ / rasterize_uv: v up
    f = torch.as_tensor(idx)
    p2f, bary = ops.rasterize_uv(uv.contiguous(), f, UV, UV)
    valid = p2f >= 0
    N = F.normalize(ops.interpolate(torch.as_tensor(nrm.copy()), f, p2f, bary), dim=-1)[valid]
    T4 = ops.interpolate(torch.as_tensor(tan.copy()), f, p2f, bary)[valid]
    T = F.normalize(T4[:, :3] - N * (N * T4[:, :3]).sum(-1, keepdim=True), dim=-1)
    B = torch.where(T4[:, 3:] >= 0, 1.0, -1.0) * torch.linalg.cross(N, T)
    nts = torch.as_tensor(np.array(mat.normalTexture), dtype=torch.float32)[..., :3] / 255 * 2 - 1
    nts = nts[valid]
    world = F.normalize(nts[:, :1] * T + nts[:, 1:2] * B + nts[:, 2:3] * N, dim=-1)
    ref = F.normalize(torch.as_tensor(_png(os.path.join(out, "normal.png")), dtype=torch.float32)[valid] * 2 - 1, dim=-1)
    ang = torch.rad2deg(torch.arccos((world * ref).sum(-1).clamp(-1, 1)))
    assert float(ang.mean()) < 1.5 and float(ang.quantile(0.99)) < 4.0
    # the bumps make the map non-trivial: the per-texel normal leaves the interpolated vertex normal
    assert float(nts[:, 2].min()) < 0.99
    # same positions as mesh_uv.obj
    assert len(pos) == len(_load(os.path.join(out, "mesh_uv.obj")).vertices)


def test_preview_is_a_relit_sheet(analytic):
    _, out, paths = analytic
    img = _png(paths["preview"])
    H, W = img.shape[0] // 2, img.shape[1] // 3
    assert img.shape[0] == 2 * H and img.shape[1] == 3 * W
    panels = [img[r * H:(r + 1) * H, c * W:(c + 1) * W].mean(-1) for r in range(2) for c in range(3)]
    fg = panels[1] > 0
    assert fg.mean() > 0.05
    # light from the viewer's left makes the left half brighter than the right, and so on
    ys, xs = np.nonzero(fg)
    cx, cy = int(xs.mean()), int(ys.mean())

    def halves(p):
        return (p[:, :cx][fg[:, :cx]].mean(), p[:, cx:][fg[:, cx:]].mean(),
                p[:cy][fg[:cy]].mean(), p[cy:][fg[cy:]].mean())

    lft, rgt, top, bot = (halves(panels[k]) for k in (2, 3, 4, 5))
    assert lft[0] > lft[1] and rgt[1] > rgt[0] and top[2] > top[3] and bot[3] > bot[2]


def test_no_zero_crossing_is_a_clear_error(analytic, tmp_path):
    tr, _, _ = analytic

    class Empty(nn.Module):
        def forward(self, x):
            return x.norm(dim=-1) + 0.1, x.new_zeros(x.shape[0], 15)

        def set_active_levels(self, k):
            pass

    old = tr.model.sdf
    tr.model.sdf = Empty()
    try:
        with pytest.raises(MeshError, match="no zero crossing.*train longer"):
            export.export_run(tr.as_run(), str(tmp_path / "x"), uv_size=UV, mc_res=16)
    finally:
        tr.model.sdf = old


# ------------------------------------------------------------------------------------ trained run, CLIs
def test_cli_on_a_trained_run(tiny, tmp_path, monkeypatch, capsys):
    cfg = _cfg(tiny, tmp_path)
    tr = Trainer(cfg, quiet=True)
    tr.fit(max_steps=20)
    run = tmp_path / cfg.name
    ckpt = str(run / "latest.pth")
    cfgp = os.path.join(tiny, "config.yaml")
    # the trainer's CoRA spelling (it cannot pass --uv-size / --mc-res: make the defaults small)
    from eyefast.export import files as export_files

    monkeypatch.setattr(export_files, "DEFAULT_UV_SIZE", UV)
    monkeypatch.setattr(export_files, "DEFAULT_MC_RES", MC)
    out = tmp_path / "cora"
    assert train_main(["--config_path", cfgp, "--mode", "export_eyeball", "--ckpt_path", ckpt,
                       "--save_visual_dir", str(out), "--device", "cpu", "--quiet"]) == 0
    for f in ("mesh.obj", "mesh_uv.obj", "mesh_uv.mtl", "diffuse.png", "specular.png", "roughness.png",
              "normal.png", "coord.npy", "head.glb", "export.json", "left/mesh.obj", "right/mesh_uv.obj",
              "left/diffuse.png", "right/normal.png"):
        assert (out / f).is_file(), f
    assert np.load(out / "coord.npy").shape == (UV, UV, 3)
    meta = json.loads((out / "export.json").read_text())
    assert meta["step"] == 20
    np.testing.assert_allclose(meta["eyes"]["left"]["center"], tr.model.eye_centers[0].detach().numpy(), atol=1e-6)
    assert str(out) in capsys.readouterr().out  # says where the results are
    # --run shortcut: RUN/config.yaml + RUN/latest.pth -> RUN/export
    assert export_main(["--run", str(run), "--uv-size", "64", "--mc-res", "32", "--quiet"]) == 0
    import trimesh

    scene = trimesh.load(run / "export" / "head.glb")
    assert set(scene.geometry) == {"face", "left_eye", "right_eye"}
    assert np.asarray(trimesh.load(run / "export" / "mesh.obj").faces).shape[1] == 3


def test_bad_inputs_give_clear_errors(tiny, tmp_path, capsys):
    cfgp = os.path.join(tiny, "config.yaml")
    missing = str(tmp_path / "nope.pth")
    assert export_main([cfgp, "--ckpt", missing, "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "nope.pth" in err and "does not exist" in err
    assert train_main(["--config_path", cfgp, "--mode", "export_eyeball", "--ckpt_path", missing,
                       "--save_visual_dir", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "nope.pth" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert export_main([cfgp, "--ckpt", str(bad), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    assert "bad.pth" in capsys.readouterr().err
    assert export_main(["--run", str(tmp_path)]) == 2
    assert "config.yaml" in capsys.readouterr().err
    assert export_main([str(tmp_path / "none.yaml"), "--ckpt", missing]) == 2
    assert "none.yaml" in capsys.readouterr().err
    assert export_main([cfgp, "--ckpt", missing, "--set", "data.nosuchkey=1"]) == 2
    assert "nosuchkey" in capsys.readouterr().err
