import json
import shutil
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh

from eyefast.data import config as C
from eyefast.cli.synth import main as synth_main
from eyefast.data import synth
from eyefast.data import Capture, CaptureError

N_VIEWS = 21  # frames 0, 10, 20 are validation


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "cap"
    synth.generate(out, preset="tiny", views=N_VIEWS, seed=3)
    return out


@pytest.fixture
def cap_copy(capture_dir, tmp_path):
    dst = tmp_path / "cap"
    shutil.copytree(capture_dir, dst)
    return dst


def _hand_convert(m):
    """Independent re-statement of SPEC section 1, element by element."""
    out = [[0.0] * 4 for _ in range(4)]
    for col in range(4):
        out[0][col] = m[1][col]
        out[1][col] = m[2][col]
        out[2][col] = m[0][col]
    for row in range(3):
        out[row][1] = -out[row][1]
        out[row][2] = -out[row][2]
    out[3] = [0.0, 0.0, 0.0, 1.0]
    return np.array(out)


def test_synth_folder_layout_and_config(capture_dir):
    for sub in ("image", "mask", "hair_mask", "leye_mask", "reye_mask", "specular_bfm"):
        assert len(list((capture_dir / sub).glob("*.png"))) == N_VIEWS, sub
    img = iio.imread(capture_dir / "image" / "00004.png")
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    cfg = C.load(capture_dir / "config.yaml")
    assert cfg.data.meta_path == str(capture_dir)
    eyes = json.loads((capture_dir / "gt" / "eyes.json").read_text())
    r = eyes["left"]["radius"]
    assert cfg.data.eyeball_min_size < r < cfg.data.eyeball_max_size
    # left = subject's left = +x
    assert eyes["left"]["center"][0] > 0 > eyes["right"]["center"][0]
    assert np.allclose(np.array(cfg.data.eyeball_left_center) * cfg.data.bound, eyes["left"]["center"], atol=1e-5)
    for side, key in (("left", "left_eye_ldm"), ("right", "right_eye_ldm")):
        ldm = np.array(getattr(cfg.data, key))
        d = np.linalg.norm(ldm - eyes[side]["center"], axis=1)
        assert np.allclose(d, r, atol=1e-5)
        assert (ldm[:, 2] > eyes[side]["center"][2]).all()  # front surface
    mesh = trimesh.load(capture_dir / "gt" / "face.obj", process=False)
    alb = np.load(capture_dir / "gt" / "albedo.npy")
    assert alb.shape == (len(mesh.vertices), 3) and (alb >= 0).all() and (alb <= 1).all()
    assert mesh.volume > 0  # outward normals
    ext = mesh.bounds[1] - mesh.bounds[0]
    assert 0.9 < ext[1] < 1.6 and (np.abs(mesh.bounds) < 1.0).all()  # ~1 unit head inside the bound


def test_from_config(capture_dir):
    cfg = C.load(capture_dir / "config.yaml", ["device=cpu", "light.gamma=2.0"])
    cap = Capture.from_config(cfg, split="val")
    assert cap.root == str(capture_dir) and cap.gamma == 2.0 and cap.n_frames == 3
    assert torch.allclose(cap.full_image(0, linear=True), cap.full_image(0) ** 2.0, atol=1e-6)


def test_camera_conversion_round_trip(capture_dir):
    meta = json.loads((capture_dir / "transforms.json").read_text())
    cap = Capture(capture_dir, split="all")
    frames = sorted(meta["frames"], key=lambda f: f["file_path"])
    hand = np.stack([_hand_convert(f["transform_matrix"]) for f in frames])
    assert np.allclose(cap.c2w64.numpy(), hand, atol=1e-12)
    # ... and gives back the cameras the generator rendered with
    scene = json.loads((capture_dir / "gt" / "scene.json").read_text())
    assert np.allclose(hand, np.array(scene["c2w_converted"]), atol=1e-9)
    # rotation is proper, cameras look at the head (+z camera axis towards the origin)
    R = hand[:, :3, :3]
    assert np.allclose(np.linalg.det(R), 1.0)
    to_head = -hand[:, :3, 3] / np.linalg.norm(hand[:, :3, 3], axis=1, keepdims=True)
    assert (np.einsum("ij,ij->i", R[:, :, 2], to_head) > 0.98).all()


def test_splits_every_tenth_frame(capture_dir):
    val = Capture(capture_dir, split="val")
    train = Capture(capture_dir, split="train")
    assert val.image_names == ["00000", "00010", "00020"]
    assert val.frame_ids.tolist() == [0, 10, 20]
    assert train.n_frames == N_VIEWS - 3 and "00010" not in train.image_names
    g = torch.Generator().manual_seed(0)
    b = val.sample_batch(500, g)
    assert set(b["frame_idx"].unique().tolist()) <= {0, 1, 2}
    assert b["rays_o"].shape == (500, 3) and b["rgb"].shape == (500, 3) and b["mask"].shape == (500,)
    # batch values agree with the images and the ray generator
    f, xy = b["frame_idx"], b["pixel_xy"]
    for i in range(0, 500, 50):
        img = val.full_image(int(f[i]), linear=True)
        assert torch.allclose(b["rgb"][i], img[xy[i, 1], xy[i, 0]])
        assert b["mask"][i] == val.full_mask(int(f[i]))[xy[i, 1], xy[i, 0]]
        o, d = val.rays(int(f[i]), xy[i : i + 1])
        assert torch.allclose(o[0], b["rays_o"][i]) and torch.allclose(d[0], b["rays_d"][i], atol=1e-6)
    assert torch.allclose(b["rays_d"].norm(dim=-1), torch.ones(500), atol=1e-6)
    # linear = srgb ** gamma
    assert torch.allclose(val.full_image(1, linear=True), val.full_image(1) ** 2.2, atol=1e-6)


def test_rays_and_project_are_inverse(capture_dir):
    cap = Capture(capture_dir, split="all")
    g = torch.Generator().manual_seed(1)
    pts = (torch.rand(200, 3, generator=g) - 0.5) * 0.8
    for fi in (0, 7, 20):
        uv = cap.project(pts, fi)
        o, d = cap.rays(fi, uv - 0.5)  # rays() adds the half-pixel offset
        to_p = torch.nn.functional.normalize(pts - o, dim=-1)
        assert (1 - (to_p * d).sum(-1)).abs().max() < 1e-6
    # all pixels, row-major, central pixel ray direction ~ camera axis
    o, d = cap.rays(3)
    assert d.shape == (32 * 32, 3)
    centre = d.reshape(32, 32, 3)[16, 16]
    assert (centre * cap.c2w[3, :3, 2]).sum() > 0.999


def test_face_points_project_into_foreground(capture_dir):
    cap = Capture(capture_dir, split="all")
    mesh = trimesh.load(capture_dir / "gt" / "face.obj", process=False)
    V = torch.tensor(mesh.vertices, dtype=torch.float32)
    Nn = torch.tensor(mesh.vertex_normals, dtype=torch.float32)
    rng = np.random.RandomState(0)
    for fi in (0, 5, 10, 15, 20):
        view = torch.nn.functional.normalize(cap.cam_centers[fi] - V, dim=-1)
        facing = torch.nonzero((Nn * view).sum(-1) > 0.6).squeeze(-1)
        idx = facing[torch.from_numpy(rng.choice(len(facing), 300, replace=False))]
        uv = cap.project(V[idx], fi)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < cap.W) & (uv[:, 1] >= 0) & (uv[:, 1] < cap.H)
        px = uv[inside].floor().long()
        m = cap.full_mask(fi)[px[:, 1], px[:, 0]]
        assert inside.float().mean() > 0.8  # only the neck leaves the frame
        assert (m > 0.5).float().mean() > 0.97, fi
        # the head covers under half of the frame, so 97% is far from chance
        assert cap.full_mask(fi).mean() < 0.6


def test_eye_front_pole_projects_onto_its_eye_mask(capture_dir):
    cap = Capture(capture_dir, split="all")
    eyes = json.loads((capture_dir / "gt" / "eyes.json").read_text())
    # most frontal frame: camera axis closest to -z
    fi = int(torch.argmin(cap.c2w[:, 2, 2]))
    xs = {}
    for side, mask_kind, other in (("left", "leye_mask", "reye_mask"), ("right", "reye_mask", "leye_mask")):
        c = torch.tensor(eyes[side]["center"])
        pole = c + eyes[side]["radius"] * torch.tensor(eyes["axis"])
        uv = cap.project(pole[None], fi)[0]
        x, y = int(uv[0]), int(uv[1])
        assert cap.full_mask(fi, mask_kind)[y, x] == 1.0, side
        assert cap.full_mask(fi, other)[y, x] == 0.0
        assert cap.full_mask(fi, "mask")[y, x] == 1.0
        assert cap.full_mask(fi, "hair_mask")[y, x] == 0.0
        xs[side] = float(uv[0])
    # subject's left eye appears on the viewer's right in a frontal view
    assert xs["left"] > xs["right"]
    # hair is at the top of the image in that view
    hm = cap.full_mask(fi, "hair_mask")
    rows = torch.nonzero(hm.sum(1) > 0).squeeze(-1)
    assert rows.float().mean() < cap.H / 2


def test_downscale_keeps_pixel_convention(capture_dir):
    full = Capture(capture_dir, split="val")
    half = Capture(capture_dir, split="val", downscale=2)
    assert (half.H, half.W) == (16, 16)
    pts = torch.tensor([[0.0, 0.0, 0.3], [0.1, -0.2, 0.2]])
    assert torch.allclose(half.project(pts, 1), full.project(pts, 1) / 2, atol=1e-4)
    ref = full.images[1].float().reshape(16, 2, 16, 2, 3).mean((1, 3))
    assert (half.images[1].float() - ref).abs().max() <= 0.5


def test_lenient_file_paths(cap_copy):
    tf = cap_copy / "transforms.json"
    meta = json.loads(tf.read_text())
    styles = ["./image/{}", "image/{}.png", "{}.png", "{}", "./image/{}.png"]
    for i, fr in enumerate(meta["frames"]):
        stem = fr["file_path"].split("/")[-1].split(".")[0]
        fr["file_path"] = styles[i % len(styles)].format(stem)
    meta["frames"] = meta["frames"][::-1]  # sorted by file_path on load regardless of order
    tf.write_text(json.dumps(meta))
    cap = Capture(cap_copy, split="all")
    assert cap.n_frames == N_VIEWS
    assert len(set(cap.image_names)) == N_VIEWS
    # frames are sorted by file_path: each name maps to its own image
    for name, img in zip(cap.image_names, cap.images):
        disk = iio.imread(cap_copy / "image" / f"{name}.png")
        assert np.array_equal(img.numpy(), disk)
    # each frame keeps its own camera
    scene = json.loads((cap_copy / "gt" / "scene.json").read_text())
    for name, m in zip(cap.image_names, cap.c2w64.numpy()):
        assert np.allclose(m, scene["c2w_converted"][int(name)])


def test_transforms_aligned_taken_as_is(cap_copy):
    cap = Capture(cap_copy, split="all")
    meta = json.loads((cap_copy / "transforms.json").read_text())
    meta["frames"] = sorted(meta["frames"], key=lambda f: f["file_path"])
    for fr, m in zip(meta["frames"], cap.c2w64.numpy()):
        fr["transform_matrix"] = m.tolist()
    (cap_copy / "transforms.json").unlink()
    (cap_copy / "transforms_aligned.json").write_text(json.dumps(meta))
    al = Capture(cap_copy / "transforms_aligned.json", split="all")  # a json path works too
    assert not al.converted
    assert torch.allclose(al.c2w64, cap.c2w64)


def test_missing_transforms(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="transforms.json") as e:
        Capture(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)
    with pytest.raises(CaptureError, match="does not exist"):
        Capture(tmp_path / "nope")


def test_missing_image(cap_copy):
    (cap_copy / "image" / "00003.png").unlink()
    with pytest.raises(CaptureError) as e:
        Capture(cap_copy, split="all")
    assert "00003" in str(e.value) and str(cap_copy) in str(e.value)


def test_unreadable_image(cap_copy):
    bad = cap_copy / "image" / "00002.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(CaptureError) as e:
        Capture(cap_copy, split="all")
    assert str(bad) in str(e.value)


def test_wrong_image_size(cap_copy):
    bad = cap_copy / "image" / "00005.png"
    iio.imwrite(bad, np.zeros((16, 20, 3), np.uint8))
    with pytest.raises(CaptureError) as e:
        Capture(cap_copy, split="all")
    assert str(bad) in str(e.value) and "20x16" in str(e.value) and "32x32" in str(e.value)
    bad_mask = cap_copy / "leye_mask" / "00001.png"
    iio.imwrite(cap_copy / "image" / "00005.png", np.zeros((32, 32, 3), np.uint8))
    iio.imwrite(bad_mask, np.zeros((8, 8), np.uint8))
    with pytest.raises(CaptureError) as e:
        Capture(cap_copy, split="all")
    assert str(bad_mask) in str(e.value)


@pytest.mark.parametrize(
    "matrix,needle",
    [
        ([[1, 0], [0, 1]], "4x4"),
        ("eye", "4x4"),
        ([[1, 0, 0, float("nan")], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "non-finite"),
        ([[1, 0, 0, float("inf")], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "non-finite"),
        ([[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]], "singular"),
    ],
)
def test_malformed_matrices(cap_copy, matrix, needle):
    tf = cap_copy / "transforms.json"
    meta = json.loads(tf.read_text())
    meta["frames"][4]["transform_matrix"] = matrix
    tf.write_text(json.dumps(meta))
    with pytest.raises(CaptureError, match=needle) as e:
        Capture(cap_copy, split="all")
    assert str(tf) in str(e.value) and meta["frames"][4]["file_path"] in str(e.value)


def test_malformed_json_and_intrinsics(cap_copy):
    tf = cap_copy / "transforms.json"
    good = tf.read_text()
    tf.write_text(good[:-20])
    with pytest.raises(CaptureError, match="cannot parse") as e:
        Capture(cap_copy)
    assert str(tf) in str(e.value)
    meta = json.loads(good)
    meta["fl_x"] = float("nan")
    tf.write_text(json.dumps(meta))
    with pytest.raises(CaptureError, match="fl_x") as e:
        Capture(cap_copy)
    assert str(tf) in str(e.value)
    del meta["fl_x"]
    tf.write_text(json.dumps(meta))
    with pytest.raises(CaptureError, match="missing key 'fl_x'"):
        Capture(cap_copy)


def test_missing_foreground_mask_is_an_error(cap_copy):
    (cap_copy / "mask" / "00007.png").unlink()
    with pytest.raises(CaptureError) as e:
        Capture(cap_copy, split="all")
    assert str(cap_copy / "mask" / "00007") in str(e.value)


def test_missing_optional_masks_warn_once_and_give_zeros(cap_copy):
    shutil.rmtree(cap_copy / "hair_mask")
    (cap_copy / "leye_mask" / "00001.png").unlink()
    (cap_copy / "leye_mask" / "00002.png").unlink()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cap = Capture(cap_copy, split="all")
    msgs = [str(x.message) for x in w]
    assert sum("hair_mask" in m for m in msgs) == 1
    assert sum("leye_mask" in m for m in msgs) == 1
    assert len(msgs) == 2
    assert (cap.masks["hair_mask"] == 0).all()
    assert (cap.masks["leye_mask"][1:3] == 0).all()
    # frames that have the mask keep it
    assert cap.masks["leye_mask"].float().sum() > 0
    assert (cap.masks["reye_mask"] > 0).any()


def test_synth_deterministic_and_seeded(tmp_path):
    a = synth.generate(tmp_path / "a", preset="tiny", views=3, seed=5)
    b = synth.generate(tmp_path / "b", preset="tiny", views=3, seed=5)
    c = synth.generate(tmp_path / "c", preset="tiny", views=3, seed=6)
    for name in ("image/00001.png", "mask/00001.png", "transforms.json", "gt/face.obj", "config.yaml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "image/00001.png").read_bytes() != (tmp_path / "c" / "image/00001.png").read_bytes()
    assert a["seconds"] < 10 and b["views"] == 3 and c["resolution"] == 32


def test_synth_refractive_eye(tmp_path):
    synth.generate(tmp_path / "r", preset="tiny", views=2, resolution=48, refractive=True)
    eyes = json.loads((tmp_path / "r" / "gt" / "eyes.json").read_text())
    r = eyes["left"]["radius"]
    assert eyes["model"] == "cornea"
    assert eyes["left"]["cornea_radius"] == pytest.approx(7.77 / 12 * r)
    apex = np.array(eyes["left"]["cornea_center"])[2] + eyes["left"]["cornea_radius"]
    assert apex - eyes["left"]["center"][2] == pytest.approx(13.3 / 12 * r)
    cfg = C.load(tmp_path / "r" / "config.yaml")
    assert cfg.eye_model == "cornea"
    cap = Capture(tmp_path / "r", split="all")
    assert cap.masks["leye_mask"].any() and cap.masks["reye_mask"].any()
    # same scene without the cornea: identical away from the eyes, different on them
    synth.generate(tmp_path / "s", preset="tiny", views=2, resolution=48, refractive=False)
    sph = Capture(tmp_path / "s", split="all")
    eye = (cap.masks["leye_mask"] | cap.masks["reye_mask"] | sph.masks["leye_mask"] | sph.masks["reye_mask"]) > 0
    assert torch.equal(cap.images[~eye], sph.images[~eye])
    assert (cap.images[eye].int() - sph.images[eye].int()).abs().max() > 20


def test_synth_cli(tmp_path, capsys):
    assert synth_main([str(tmp_path / "cli"), "--preset", "tiny", "--views", "2", "--resolution", "24"]) == 0
    assert "2 views at 24x24" in capsys.readouterr().out
    assert iio.imread(tmp_path / "cli" / "image" / "00001.png").shape == (24, 24, 3)
