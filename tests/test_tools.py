"""python -m eyefast.tools: triangulate, uv-landmarks, eye-masks (and bake_coord_map)."""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from eyefast.cli.tools import main as tools_main
from eyefast.data import synth, tools
from eyefast.data import Capture, cora_to_nerf


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tools") / "cap"
    synth.generate(out, preset="tiny", views=8, seed=0)
    return out


@pytest.fixture(scope="module")
def cap(capture_dir):
    return Capture(capture_dir, split="all")


# --------------------------------------------------------------------------- triangulate
def _truth_points():
    head = synth.Head(seed=0)
    return head.landmarks(0).double(), head.landmarks(1).double()


def _landmark_json(cap, frames, left, right, shift=0.0):
    out = {}
    for i in frames:
        out[f"{cap.image_names[i]}.png"] = {
            "left_eye": (cap.project(left, i).double() + shift).tolist(),
            "right_eye": (cap.project(right, i).double() + shift).tolist(),
        }
    return out


def test_triangulate_recovers_points(cap, capture_dir, tmp_path, capsys):
    left, right = _truth_points()
    lm = _landmark_json(cap, [0, 2, 5, 7], left, right)
    path = tmp_path / "lm.json"
    path.write_text(json.dumps(lm))
    res = tools.triangulate(capture_dir, path)
    assert np.abs(np.array(res["left_eye_ldm"]) - left.numpy()).max() < 1e-4
    assert np.abs(np.array(res["right_eye_ldm"]) - right.numpy()).max() < 1e-4
    assert res["views"] == {"left_eye": 4, "right_eye": 4} and res["rms_ray_distance"]["left_eye"] < 1e-4
    # OpenCV-style coordinates (pixel centres at integers) with the flag give the same points.
    path2 = tmp_path / "lm_int.json"
    path2.write_text(json.dumps(_landmark_json(cap, [0, 2, 5, 7], left, right, shift=-0.5)))
    res2 = tools.triangulate(capture_dir, path2, integer_pixel_centers=True)
    assert np.abs(np.array(res2["left_eye_ldm"]) - left.numpy()).max() < 1e-4
    # ... and without it they are off by half a pixel's footprint (about 0.02 world units here).
    res3 = tools.triangulate(capture_dir, path2)
    assert np.abs(np.array(res3["left_eye_ldm"]) - left.numpy()).max() > 3e-3
    # The CLI prints the config lines and writes the JSON.
    out_json = tmp_path / "ldm.json"
    assert tools_main(["triangulate", "--capture", str(capture_dir), "--landmarks", str(path), "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("left_eye_ldm: [[") and lines[1].startswith("right_eye_ldm: [[")
    parsed = json.loads(lines[0].split(": ", 1)[1])
    assert np.abs(np.array(parsed) - left.numpy()).max() < 1e-5
    assert np.allclose(json.loads(out_json.read_text())["right_eye_ldm"], res["right_eye_ldm"])


def test_landmark_convention_matches_capture_rays(cap):
    """A landmark at continuous pixel coordinate u lies on Capture.rays(pixel = u - 0.5)."""
    left, _ = _truth_points()
    for i in (1, 4):
        uv = cap.project(left.float(), i)
        o, d = cap.rays(i, uv - 0.5)
        v = left.float() - o
        dist = (v - (v * d).sum(-1, keepdim=True) * d).norm(dim=-1)
        assert dist.max() < 1e-5


def test_triangulate_errors(cap, capture_dir, tmp_path):
    left, right = _truth_points()
    lm = _landmark_json(cap, [0, 3], left, right)

    def run(obj):
        p = tmp_path / "x.json"
        p.write_text(json.dumps(obj))
        return tools.triangulate(capture_dir, p)

    with pytest.raises(tools.ToolError, match="unknown image name.*'nope.png'"):
        run({**lm, "nope.png": lm["00000.png"]})
    bad = json.loads(json.dumps(lm))
    bad["00003.png"]["left_eye"] = bad["00003.png"]["left_eye"][:3]
    with pytest.raises(tools.ToolError, match="'00003.png' has 3 left_eye landmark"):
        run(bad)
    one = {"00000.png": lm["00000.png"], "00003.png": {"left_eye": lm["00003.png"]["left_eye"]}}
    with pytest.raises(tools.ToolError, match="right_eye is given in 1 image.*at least 2 views"):
        run(one)
    with pytest.raises(tools.ToolError, match="does not exist"):
        tools.triangulate(capture_dir, tmp_path / "missing.json")
    assert tools_main(["triangulate", "--capture", str(capture_dir), "--landmarks", str(tmp_path / "missing.json")]) == 2


# --------------------------------------------------------------------------- uv-landmarks
def _plane_coord(H=48, W=64):
    """Texel-to-3D map of a plane: x from texel column, y from row (up), z = 0.3; a NaN band."""
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    coord = np.stack([(cols + 0.5 - W / 2) / W * 0.4, (H / 2 - rows - 0.5) / H * 0.2, np.full((H, W), 0.3)], -1)
    coord = coord.astype(np.float32)
    coord[:, 30:34] = np.nan  # no face there
    return coord


def _paint(H, W, texels, base=(90, 60, 50)):
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = base
    for r, c in texels:
        img[r, c] = (0, 255, 0)
    return img


def test_uv_landmarks_single_image(tmp_path, capsys):
    coord = _plane_coord()
    np.save(tmp_path / "coord.npy", coord)
    right = [(10, 5), (12, 9), (20, 14), (30, 4)]  # columns < 32: x < 0 -> the subject's right eye
    left = [(8, 40), (15, 50), (22, 45), (40, 60)]
    iio.imwrite(tmp_path / "ldm.png", _paint(48, 64, right + left))
    res = tools.uv_landmarks(tmp_path / "coord.npy", image=tmp_path / "ldm.png")
    assert np.allclose(res["left_eye_ldm"], [coord[r, c] for r, c in sorted(left)], atol=1e-7)
    assert np.allclose(res["right_eye_ldm"], [coord[r, c] for r, c in sorted(right)], atol=1e-7)
    assert tools_main(["uv-landmarks", "--image", str(tmp_path / "ldm.png"), "--coord-map", str(tmp_path / "coord.npy")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("left_eye_ldm: [[") and "\nright_eye_ldm: [[" in out


def test_uv_landmarks_two_images_and_blobs(tmp_path):
    coord = _plane_coord()
    np.save(tmp_path / "coord.npy", coord)
    left = [(8, 40), (15, 50), (22, 45), (40, 60)]
    right = [(10, 5), (12, 9), (20, 14), (30, 4)]
    img = _paint(48, 64, left + [(40, 61)])  # the last landmark is a 2-texel blob
    iio.imwrite(tmp_path / "l.png", img)
    iio.imwrite(tmp_path / "r.png", _paint(48, 64, right))
    res = tools.uv_landmarks(tmp_path / "coord.npy", left_image=tmp_path / "l.png", right_image=tmp_path / "r.png")
    assert np.allclose(res["left_eye_ldm"][3], (coord[40, 60] + coord[40, 61]) / 2, atol=1e-7)
    assert np.allclose(res["right_eye_ldm"], [coord[r, c] for r, c in sorted(right)], atol=1e-7)


def test_uv_landmarks_errors(tmp_path):
    coord = _plane_coord()
    np.save(tmp_path / "coord.npy", coord)
    pts = [(10, 5), (12, 9), (20, 14), (30, 4), (8, 40), (15, 50), (22, 45)]
    iio.imwrite(tmp_path / "seven.png", _paint(48, 64, pts))
    with pytest.raises(tools.ToolError, match=r"found 7 green.*seven.png.*exactly 8"):
        tools.uv_landmarks(tmp_path / "coord.npy", image=tmp_path / "seven.png")
    iio.imwrite(tmp_path / "nine.png", _paint(48, 64, pts + [(40, 60), (44, 20)]))
    with pytest.raises(tools.ToolError, match="found 9 green"):
        tools.uv_landmarks(tmp_path / "coord.npy", image=tmp_path / "nine.png")
    iio.imwrite(tmp_path / "hole.png", _paint(48, 64, pts + [(5, 31)]))  # on the NaN band
    with pytest.raises(tools.ToolError, match=r"row 5, column 31.*no 3D point"):
        tools.uv_landmarks(tmp_path / "coord.npy", image=tmp_path / "hole.png")
    iio.imwrite(tmp_path / "small.png", _paint(24, 64, []))
    with pytest.raises(tools.ToolError, match=r"small.png' is 64x24.*coord.npy' is 64x48"):
        tools.uv_landmarks(tmp_path / "coord.npy", image=tmp_path / "small.png")
    # 5 + 3 points: not two eyes of 4
    lop = [(10, 5), (12, 9), (20, 14), (30, 4), (8, 22), (8, 40), (15, 50), (22, 45)]
    iio.imwrite(tmp_path / "lop.png", _paint(48, 64, lop))
    with pytest.raises(tools.ToolError, match="5 and 3|3 and 5"):
        tools.uv_landmarks(tmp_path / "coord.npy", image=tmp_path / "lop.png")


def test_bake_coord_map_orientation():
    # A unit quad in the z = 0.5 plane with uv = (x, y): texel (i, j) maps to ((i+.5)/W, 1-(j+.5)/H).
    verts = torch.tensor([[0.0, 0.0, 0.5], [1.0, 0.0, 0.5], [1.0, 1.0, 0.5], [0.0, 1.0, 0.5]])
    uvs = verts[:, :2].clone()
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    coord = tools.bake_coord_map(verts, uvs, faces, 8, 16)
    j, i = np.meshgrid(np.arange(8), np.arange(16), indexing="ij")
    assert np.allclose(coord[..., 0], (i + 0.5) / 16, atol=1e-6)
    assert np.allclose(coord[..., 1], 1 - (j + 0.5) / 8, atol=1e-6)
    half = tools.bake_coord_map(verts, uvs, faces[:1], 8, 16)  # lower-right triangle only
    assert np.isnan(half[0, 0]).all() and np.isfinite(half[7, 15]).all()


# --------------------------------------------------------------------------- eye-masks
def _write_obj(path, verts, uvs, faces):
    with open(path, "w") as f:
        f.write("# test mesh with a UV map\n")
        np.savetxt(f, verts, fmt="v %.7f %.7f %.7f")
        np.savetxt(f, uvs, fmt="vt %.7f %.7f")
        np.savetxt(f, np.repeat(faces + 1, 2, axis=1), fmt="f %d/%d %d/%d %d/%d")


def _eye_scene_mesh(head):
    """The face near the eyes (fine marching cubes of the synth's face SDF) + both eyeballs.

    UV map: the face patch is projected into v < 0.1 (painted black); every eyeball face gets
    its own small UV triangle, the left eyeball's in u < 0.5, v > 0.15 and the right one's in
    u > 0.5, v > 0.15 (painted white in the left / right mask)."""
    import mcubes
    import trimesh

    lo, hi, step = np.array([-0.22, -0.2, 0.05]), np.array([0.22, 0.18, 0.5]), 0.004
    n = np.ceil((hi - lo) / step).astype(int) + 1
    axes = [lo[k] + step * np.arange(n[k]) for k in range(3)]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    sdf = head.face_sdf(torch.from_numpy(g).float()).numpy().reshape(*n)
    fv, ff = mcubes.marching_cubes(-sdf, 0.0)
    fv = fv * step + lo
    fuv = np.stack([(fv[:, 0] - lo[0]) / (hi[0] - lo[0]), 0.1 * (fv[:, 1] - lo[1]) / (hi[1] - lo[1])], -1)
    verts, uvs, faces = [fv], [fuv], [ff.astype(np.int64)]
    base = len(fv)
    ico = trimesh.creation.icosphere(subdivisions=4)
    cells = math.ceil(math.sqrt(len(ico.faces)))
    for k, c in enumerate(head.eye_centers.numpy()):
        pos = (np.asarray(ico.vertices)[ico.faces] * head.r + c).reshape(-1, 3)  # 3 own vertices per face
        idx = np.arange(len(ico.faces))
        cu, cv = 0.5 / cells, 0.85 / cells
        u0 = 0.5 * k + (idx % cells) * cu
        v0 = 0.15 + (idx // cells) * cv
        tri = np.stack([np.stack([u0 + 0.2 * cu, v0 + 0.2 * cv], -1), np.stack([u0 + 0.8 * cu, v0 + 0.2 * cv], -1),
                        np.stack([u0 + 0.2 * cu, v0 + 0.8 * cv], -1)], 1).reshape(-1, 2)
        verts.append(pos)
        uvs.append(tri)
        faces.append(base + np.arange(3 * len(ico.faces)).reshape(-1, 3))
        base += len(pos)
    return np.concatenate(verts), np.concatenate(uvs), np.concatenate(faces)


def test_eye_masks_match_the_capture(tmp_path):
    head = synth.Head(seed=0)
    R, fl = 64, 380.0  # zoomed on the eyes: eyeball radius ~7 px
    target = np.array([0.0, 0.03, 0.3])
    c2w = np.stack([synth.look_at(target + 2.6 * np.array([math.sin(a), 0.05, math.cos(a)]), target)
                    for a in np.radians([-35.0, 0.0, 30.0])])
    res = synth.render(head, c2w, R, R, fl)
    root = tmp_path / "cap"
    for sub in ("image", "mask"):
        (root / sub).mkdir(parents=True)
    frames = []
    for i in range(len(c2w)):
        iio.imwrite(root / "image" / f"{i:05d}.png", (res["rgb"][i].clamp(0, 1) * 255).to(torch.uint8).numpy())
        iio.imwrite(root / "mask" / f"{i:05d}.png", res["mask"][i].numpy().astype(np.uint8) * 255)
        frames.append({"file_path": f"image/{i:05d}.png", "transform_matrix": cora_to_nerf(c2w[i]).tolist()})
    meta = {"w": R, "h": R, "fl_x": fl, "fl_y": fl, "cx": R / 2, "cy": R / 2, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    verts, uvs, faces = _eye_scene_mesh(head)
    _write_obj(root / "mesh_uv.obj", verts, uvs, faces)
    T = 256
    jj, ii = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    u, v = (ii + 0.5) / T, 1 - (jj + 0.5) / T
    iio.imwrite(root / "diffuse_leye_mask.png", (((u < 0.5) & (v > 0.13)) * 255).astype(np.uint8))
    iio.imwrite(root / "diffuse_reye_mask.png", np.stack([((u > 0.5) & (v > 0.13)) * 255] * 3, -1).astype(np.uint8))
    assert tools_main(["eye-masks", "--capture", str(root), "--mesh-uv", str(root / "mesh_uv.obj")]) == 0
    checked = 0
    for i in range(len(c2w)):
        for sub, truth in (("leye_mask", res["leye"][i].numpy()), ("reye_mask", res["reye"][i].numpy())):
            out = iio.imread(root / sub / f"{i:05d}.png")
            assert out.dtype == np.uint8 and out.shape == (R, R) and set(np.unique(out)) <= {0, 255}
            got = out > 127
            if truth.sum() < 20:
                continue
            iou = (got & truth).sum() / (got | truth).sum()
            assert iou >= 0.9, (sub, i, iou, truth.sum(), got.sum())
            checked += 1
    assert checked >= 5
    # The subject's left eye appears on the viewer's right in the frontal view.
    left = iio.imread(root / "leye_mask" / "00001.png") > 0
    assert np.nonzero(left)[1].mean() > R / 2
    with pytest.raises(SystemExit):
        tools_main(["eye-masks", "--capture", str(root)])  # --mesh-uv is required
    assert tools_main(["eye-masks", "--capture", str(root), "--mesh-uv", str(root / "nope.obj")]) == 2
