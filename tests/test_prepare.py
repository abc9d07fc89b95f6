"""``eyefast prepare``: cameras from a synthetic textured head, eye masks on a real photo, robust eye-landmark
triangulation, bad input, and a video to a few training steps. Needs the optional extra ``eyefast[prepare]``
(pycolmap, mediapipe 0.10.14, imageio-ffmpeg) and scikit-image (the photo); skipped without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")
pytest.importorskip("mediapipe")

N_VIEWS, RES = 30, 256


# --------------------------------------------------------------------------- the synthetic capture
@pytest.fixture(scope="module")
def synth_cap(tmp_path_factory):
    """A textured synthetic head (30 views at 256 px, rasterised) and its capture prepared with --no-face and
    the synthetic masks."""
    from eyefast.data import synth
    from eyefast.prepare import prepare

    root = tmp_path_factory.mktemp("prep")
    src = root / "synth"
    synth.generate(src, preset="tiny", views=N_VIEWS, resolution=RES, texture="fine", renderer="mesh")
    out = root / "cap"
    rep = prepare(src / "image", out, no_face=True, masks=src / "mask", progress=False)
    return {"src": str(src), "out": str(out), "report": rep}


def test_cameras_of_a_synthetic_head_come_back(synth_cap):
    """frames + poses (--no-face): every view registers; after a similarity fit the cameras match the truth."""
    from benchmarks.prepare_synth import similarity_errors

    ids, rot, centre, T, _ = similarity_errors(synth_cap["out"], synth_cap["src"])
    rep = synth_cap["report"]
    assert sorted(ids) == list(range(N_VIEWS))
    assert rep["poses"]["registered_fraction"] == 1.0
    assert rep["poses"]["reprojection_error_px"] < 1.0
    assert np.median(rot) < 0.5, rot
    assert centre.max() < 0.01, centre
    # the head frame from the cameras: +y up, the face towards +z, about the synthetic head's scale
    assert T.R[1, 1] > 0.99 and T.R[2, 2] > 0.99, T.R
    assert 0.6 < T.s < 1.6, T.s
    meta = json.load(open(os.path.join(synth_cap["out"], "transforms.json")))
    assert meta["w"] == RES and meta["h"] == RES
    assert abs(meta["fl_x"] / (2.2 * RES) - 1.0) < 0.05  # the synthetic focal length


def test_capture_layout_report_and_config(synth_cap):
    from eyefast.data import Capture
    from eyefast.data import config as config_mod

    out = synth_cap["out"]
    for d in ("image", "mask", "prepare/frames", "prepare/undistorted"):
        assert len(os.listdir(os.path.join(out, d))) == N_VIEWS, d
    for d in ("leye_mask", "reye_mask", "hair_mask"):
        assert not os.path.exists(os.path.join(out, d))  # --no-face: no face masks
    assert not [f for f in os.listdir(out) + os.listdir(os.path.join(out, "prepare")) if ".tmp" in f or f.startswith(".")]
    cap = Capture(out, split="all")
    assert cap.n_frames == N_VIEWS
    # the background is black; the foreground is the given mask
    img, m = cap.images.float(), cap.masks["mask"].float() / 255
    assert img[m < 0.5].max() == 0 and m.mean() > 0.2
    cfg = config_mod.load(os.path.join(out, "config.yaml"))
    assert cfg.data.ignore_eyeball and cfg.loss.w_abdmm == 0 and cfg.loss.w_abdmm_refine == 0
    assert cfg.name == "cap" and os.path.samefile(cfg.data.meta_path, out)
    quick = config_mod.load(os.path.join(out, "config_quick.yaml"))
    assert quick.train.max_steps < cfg.train.max_steps
    assert cfg.train.camera_refine and quick.train.camera_refine  # structure-from-motion cameras get refined
    rep = json.load(open(os.path.join(out, "prepare", "report.json")))
    assert set(rep["stages"]) == {"frames", "poses", "masks", "eyes", "config"}
    assert all(v["seconds"] is not None for v in rep["stages"].values())
    assert "skipped" in rep["eyes"] and os.path.isfile(os.path.join(out, "prepare", "report.png"))


def test_stages_skip_finished_work_and_force_reruns(synth_cap):
    from eyefast.prepare import prepare

    out = synth_cap["out"]
    rep = prepare(None, out, stages=["eyes", "config"], progress=False)
    assert rep["ran"] == [] and rep["skipped"] == ["eyes", "config"]
    before = json.load(open(os.path.join(out, "prepare", "config.json")))["run_id"]
    rep = prepare(None, out, stages=["config"], force=True, progress=False)
    assert rep["ran"] == ["config"]
    assert json.load(open(os.path.join(out, "prepare", "config.json")))["run_id"] != before


def test_prepared_capture_trains(synth_cap, tmp_path):
    """synth frames -> prepare --no-face (given masks) -> a few training steps."""
    from eyefast.data import config as config_mod
    from eyefast.training import Trainer

    cfg = config_mod.load(os.path.join(synth_cap["out"], "config.yaml"),
                          ["device=cpu", f"workspace={tmp_path}", "train.val_freq=0", "train.vis_freq=0",
                           "train.save_freq=0", "renderer.sample_batch_size=8192", "renderer.max_num_ray=1024",
                           "renderer.grid_resolution=32", "network.num_levels=8"])
    tr = Trainer(cfg, quiet=True)
    losses = [tr.train_step()["loss"] for _ in range(4)]
    assert np.isfinite(losses).all()


# --------------------------------------------------------------------------- undistortion
def test_undistortion_map_sends_pinhole_pixels_to_their_distorted_place():
    from eyefast.prepare.poses import _remap, _undistort_map

    cam = pycolmap.Camera.create_from_model_name(1, "SIMPLE_RADIAL", 200.0, 160, 120)
    cam.params = [200.0, 80.0, 60.0, -0.15]
    new = pycolmap.undistort_camera(pycolmap.UndistortCameraOptions(), cam)
    coords = _undistort_map(cam, new)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.uniform(-0.25, 0.25, (50, 2)), np.ones((50, 1))], -1)
    fx, fy, cx, cy = new.params
    und = X[:, :2] * [fx, fy] + [cx, cy]  # the point in the undistorted image (continuous coordinates)
    dist = np.asarray(cam.img_from_cam(X))  # ... and in the distorted one
    ok = (und[:, 0] > 1) & (und[:, 0] < new.width - 1) & (und[:, 1] > 1) & (und[:, 1] < new.height - 1)
    # sample the map (array indices) bilinearly at the undistorted position
    rows = _remap(coords[0], np.stack([und[ok, 1] - 0.5, und[ok, 0] - 0.5]))
    cols = _remap(coords[1], np.stack([und[ok, 1] - 0.5, und[ok, 0] - 0.5]))
    np.testing.assert_allclose(cols + 0.5, dist[ok, 0], atol=0.05)
    np.testing.assert_allclose(rows + 0.5, dist[ok, 1], atol=0.05)


# --------------------------------------------------------------------------- eye landmarks
def _ring_cameras(n, dist=2.6, seed=0):
    from eyefast.data.synth import look_at

    rng = np.random.default_rng(seed)
    c2w = []
    for i in range(n):
        az = np.radians(-60 + 120 * i / (n - 1))
        el = np.radians(rng.uniform(-15, 15))
        pos = dist * np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
        c2w.append(look_at(pos, (0.0, 0.0, 0.1)))
    return np.stack(c2w)


def test_eye_landmarks_survive_noise_and_outlier_views():
    """Known 3D points, projected with pixel noise, with a few grossly wrong views: back within 1e-3 (the head
    is 1 unit tall)."""
    from eyefast.prepare.common import project
    from eyefast.prepare.triangulate import triangulate_points

    c2w = _ring_cameras(24)
    K = np.array([[1500.0, 0, 480], [0, 1500.0, 360], [0, 0, 1]])
    rng = np.random.default_rng(1)
    P = np.array([[0.115, 0.03, 0.37], [0.115, 0.0, 0.36], [0.14, 0.03, 0.36], [0.09, 0.03, 0.36],
                  [-0.115, 0.03, 0.37], [-0.115, 0.0, 0.36], [-0.09, 0.03, 0.36], [-0.14, 0.03, 0.36]])
    w2c = np.linalg.inv(c2w)
    uv = np.stack([project(K, w2c[v], P) for v in range(len(c2w))])
    uv += rng.normal(0, 0.5, uv.shape)
    bad = [3, 11, 17]
    uv[bad] += rng.uniform(25, 60, (len(bad), len(P), 2)) * rng.choice([-1, 1], (len(bad), len(P), 2))
    uv[5, :2] = np.nan  # not seen in one view
    pts, inl, rms = triangulate_points(K, c2w, uv, threshold=max(2.0, 0.008 * 960))
    assert np.abs(pts - P).max() < 1e-3, np.abs(pts - P).max()
    assert not inl[bad].any() and inl[[0, 1, 2, 8]].all()
    assert (rms < 1.5).all()


# --------------------------------------------------------------------------- a real face
def _photo():
    skdata = pytest.importorskip("skimage.data")
    return skdata.astronaut()


def _rotate(img, deg):
    """Counter-clockwise rotation about the centre, canvas enlarged; returns (image, point map)."""
    from PIL import Image

    H, W = img.shape[:2]
    out = np.asarray(Image.fromarray(img).rotate(deg, resample=Image.BILINEAR, expand=True))
    H2, W2 = out.shape[:2]
    t = np.radians(deg)

    def f(p):
        x, y = p[..., 0] - W / 2, p[..., 1] - H / 2
        return np.stack([W2 / 2 + x * np.cos(t) + y * np.sin(t), H2 / 2 - x * np.sin(t) + y * np.cos(t)], -1)

    return out, f


def _scale(img, s):
    from PIL import Image

    H, W = img.shape[:2]
    out = np.asarray(Image.fromarray(img).resize((int(W * s), int(H * s)), Image.LANCZOS))
    return out, (lambda p: p * s)


def test_eye_masks_on_a_photo_rotated_scaled_and_flipped():
    """Eye masks contain the iris landmarks, lie inside the face, and left/right are the subject's left/right:
    in a mirrored photo the subject's left eye is the original's right eye."""
    from eyefast.prepare.face import FACE_OVAL, LEFT_IRIS, RIGHT_IRIS, FaceLandmarks, eye_masks, fill_polygon

    img = _photo()
    W = img.shape[1]
    copies = {"original": (img, lambda p: p, False), "rotated +25": (*_rotate(img, 25), False),
              "rotated -30": (*_rotate(img, -30), False), "rotated 90": (*_rotate(img, 90), False),
              "half size": (*_scale(img, 0.5), False), "double size": (*_scale(img, 2.0), False),
              "mirrored": (img[:, ::-1].copy(), lambda p: np.stack([W - p[..., 0], p[..., 1]], -1), True)}
    with FaceLandmarks() as detect:
        ref = detect(img)
        assert ref is not None
        # the subject's left eye is on the viewer's right in this frontal photo
        assert ref[LEFT_IRIS[0], 0] > ref[RIGHT_IRIS[0], 0] + 20
        for name, (im, f, mirrored) in copies.items():
            lm = detect(im)
            assert lm is not None, name
            left, right = eye_masks(im.shape[:2], lm)
            face = fill_polygon(im.shape[:2], lm[FACE_OVAL])
            for mask, iris in ((left, LEFT_IRIS), (right, RIGHT_IRIS)):
                x, y = lm[iris[0]].astype(int)
                assert mask[y, x], (name, iris[0])
                assert mask.sum() > 10 and (mask & ~face).sum() <= 0.02 * mask.sum(), name
                assert not (left & right).any(), name
            # not swapped: the original's eye (the other one when mirrored) lands in this copy's left mask
            src_left = ref[RIGHT_IRIS[0] if mirrored else LEFT_IRIS[0]]
            src_right = ref[LEFT_IRIS[0] if mirrored else RIGHT_IRIS[0]]
            for p, mask, other in ((src_left, left, right), (src_right, right, left)):
                x, y = f(p).astype(int)
                assert mask[y, x] and not other[y, x], name


def test_eye_aspect_ratio_tells_closed_eyes():
    from eyefast.prepare.face import EAR_LEFT, EAR_RIGHT, FaceLandmarks, eye_aspect_ratio
    from eyefast.prepare.frames import EAR_MIN

    with FaceLandmarks() as detect:
        lm = detect(_photo())
    assert eye_aspect_ratio(lm) > 0.2
    closed = lm.copy()
    for c0, c1, u0, l0, u1, l1 in (EAR_LEFT, EAR_RIGHT):  # lids shut: upper onto lower
        for u, lo in ((u0, l0), (u1, l1)):
            closed[u] = closed[lo] = 0.5 * (lm[u] + lm[lo]) + [0.0, 0.3]
    assert eye_aspect_ratio(closed) < EAR_MIN


def test_hair_mask_on_a_photo():
    from eyefast.prepare.face import FACE_OVAL, FaceLandmarks, PersonSegmentation, fill_polygon
    from eyefast.prepare.masks import hair_mask

    img = _photo()
    with FaceLandmarks() as detect, PersonSegmentation() as seg:
        lm = detect(img)
        fg = seg(img) >= 0.5
    hair = hair_mask(img, fg, lm)
    face = fill_polygon(img.shape[:2], lm[FACE_OVAL])
    top = int(lm[10, 1])  # the forehead's top
    assert hair[: top].sum() > 500  # hair above the forehead
    assert (hair & face).sum() < 0.15 * face.sum()  # the face is skin (the eyebrows are hair)
    assert not hair[int(lm[152, 1]) + 5:].any()  # nothing below the chin


# --------------------------------------------------------------------------- a face, end to end
def _render_photo_on_a_cylinder(out, views=15, res=384):
    """The photo's head wrapped on a half cylinder (radius 0.5, facing +z), filmed from 15 directions 60 degrees
    apart: a face that mediapipe finds and structure from motion can register (black background, masks)."""
    import imageio.v3 as iio
    import torch

    from eyefast.core import ops
    from eyefast.data.synth import look_at

    tex = torch.from_numpy(_photo()[10:230, 110:340].copy()).float() / 255
    Ht, Wt = tex.shape[:2]
    R, half = 0.5, np.radians(75)
    nu, nv = 96, 48
    T, Y = np.meshgrid(np.linspace(-half, half, nu), np.linspace(0.5, 0.5 - 2 * half * R * Ht / Wt, nv))
    verts = torch.tensor(np.stack([R * np.sin(T), Y, R * np.cos(T)], -1).reshape(-1, 3), dtype=torch.float32)
    uvs = torch.tensor(np.stack([(T + half) / (2 * half), 1 - (Y - Y[0, 0]) / (Y[-1, 0] - Y[0, 0])], -1).reshape(-1, 2),
                       dtype=torch.float32)
    a = (np.arange(nv - 1)[:, None] * nu + np.arange(nu - 1)[None]).reshape(-1)
    faces = torch.tensor(np.concatenate([np.stack([a, a + nu, a + 1], -1), np.stack([a + 1, a + nu, a + nu + 1], -1)]))
    yc = float(Y.mean())
    K = torch.tensor([[1.6 * res, 0, res / 2], [0, 1.6 * res, res / 2], [0, 0, 1.0]])
    (out / "image").mkdir(parents=True)
    (out / "mask").mkdir()
    for k in range(views):
        az, el = np.radians(-30 + 60 * k / (views - 1)), np.radians(8 * np.sin(2 * np.pi * k / views))
        pos = np.array([0, yc, 0.2]) + 1.7 * np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
        c2w = torch.tensor(look_at(pos, (0.0, yc, 0.2)), dtype=torch.float32)
        p2f, bary, _ = ops.rasterize(ops.project_to_clip(verts, K, torch.linalg.inv(c2w), res, res), faces, res, res)
        uv = ops.interpolate(uvs, faces, p2f, bary)
        grid = torch.stack([2 * uv[..., 0] - 1, 1 - 2 * uv[..., 1]], -1)[None]
        img = torch.nn.functional.grid_sample(tex.permute(2, 0, 1)[None], grid, align_corners=False)[0].permute(1, 2, 0)
        hit = p2f >= 0
        iio.imwrite(out / "image" / f"{k:05d}.png", ((img * hit[..., None]).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
        iio.imwrite(out / "mask" / f"{k:05d}.png", hit.to(torch.uint8).numpy() * 255)


def test_a_face_end_to_end(tmp_path):
    """A face through every stage: cameras, the head frame from the face landmarks, eye and hair masks, eye
    landmarks at the subject's left (+x) and right, a config with them."""
    from eyefast.data import config as config_mod
    from eyefast.prepare import prepare
    from eyefast.prepare.common import load_cameras, project, read_image

    src, out = tmp_path / "src", tmp_path / "cap"
    _render_photo_on_a_cylinder(src)
    rep = prepare(src / "image", out, masks=src / "mask", progress=False)
    assert rep["poses"]["registered_fraction"] == 1.0 and rep["head_frame"]["method"] == "face"
    assert max(rep["head_frame"]["anchor_residual_mm"]) < 25  # the template is a mean head, this one a cylinder
    ey = rep["eyes"]
    L, R = np.array(ey["left_eye_ldm"]), np.array(ey["right_eye_ldm"])
    assert L[:, 0].min() > 0.03 and R[:, 0].max() < -0.03  # the subject's left eye at +x
    assert 0.15 < L[0, 0] - R[0, 0] < 0.5  # a person: about 63 mm apart (0.26; this photo on a cylinder: 0.37)
    assert np.abs(L[:, 1]).max() < 0.1 and L[:, 2].min() > 0.2  # at eye level, at the front of the head
    for e in ("left_eye", "right_eye"):
        assert rep["landmark_residuals"][e]["inlier_views"] >= 12
        assert rep["landmark_residuals"][e]["residual_rms_px"] < 2.0
    np.testing.assert_allclose(ey["eyeball_left_center"], L[0] - [0, 0, ey["eye_radius"]])
    # the eye masks: in every frame, and the projected iris centre inside its own eye's mask
    meta, names, K, c2w = load_cameras(out)
    inside = 0
    for i, n in enumerate(names):
        for kind, P, other in (("leye_mask", L, "reye_mask"), ("reye_mask", R, "leye_mask")):
            m = read_image(out / kind / f"{n}.png") >= 128
            o = read_image(out / other / f"{n}.png") >= 128
            x, y = project(K, np.linalg.inv(c2w[i]), P[0]).astype(int)
            assert m.sum() > 20
            inside += bool(m[y - 1:y + 2, x - 1:x + 2].any() and not o[y, x])
    assert inside >= 0.9 * 2 * len(names), inside
    hair = np.mean([(read_image(out / "hair_mask" / f"{n}.png") >= 128).mean() for n in names])
    assert hair > 0.01
    cfg = config_mod.load(out / "config.yaml")
    assert not cfg.data.ignore_eyeball and np.allclose(cfg.data.left_eye_ldm, L, atol=1e-6)
    np.testing.assert_allclose(cfg.data.eyeball_right_center, ey["eyeball_right_center"], atol=1e-6)


# --------------------------------------------------------------------------- bad input
def _write_video(path, frames, rotation=None):
    import imageio_ffmpeg

    H, W = frames[0].shape[:2]
    plain = str(path) + ".plain.mp4" if rotation else str(path)
    w = imageio_ffmpeg.write_frames(plain, (W, H), fps=10, codec="libx264", quality=9, macro_block_size=1,
                                    pix_fmt_out="yuv444p")
    w.send(None)
    for f in frames:
        w.send(np.ascontiguousarray(f))
    w.close()
    if rotation:
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation",
                        str(rotation), "-i", plain, "-c", "copy", str(path)], check=True)


def test_video_rotation_and_frame_selection(tmp_path):
    """A phone video's display rotation is applied; the sharpest frame of every N is kept."""
    from eyefast.prepare.frames import probe_video, sharpness, video_frames

    H, W = 48, 64
    base = np.zeros((H, W, 3), np.uint8)
    base[:8, :16] = (255, 0, 0)  # a red block at the top left
    rng = np.random.default_rng(0)
    frames = []
    for i in range(12):
        f = base.copy()
        if i % 4 == 2:  # the sharp one of its window of 4
            f[20:40, 10:50] = rng.integers(0, 255, (20, 40, 1), dtype=np.uint8)
        frames.append(f)
    vid = tmp_path / "rot.mp4"
    _write_video(vid, frames, rotation=90)  # displayed rotated 90 degrees counter-clockwise
    info = probe_video(str(vid))
    assert info["rotation"] == 90 and info["size"] == (W, H)
    got = list(video_frames(str(vid), info))
    assert len(got) == 12 and got[0].shape == (W, H, 3)
    # the red block was at the top left; turned counter-clockwise it is at the bottom left
    assert got[0][-8:, :8, 0].mean() > 150 and got[0][:8, :8, 0].mean() < 100
    s = [sharpness(f) for f in got]
    assert [int(np.argmax(s[k:k + 4])) for k in (0, 4, 8)] == [2, 2, 2]


def test_bad_input_is_named(tmp_path):
    from eyefast.prepare import PrepareError, prepare

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(PrepareError, match="broken.mp4"):
        prepare(bad, tmp_path / "o1", progress=False)
    with pytest.raises(PrepareError, match="does not exist"):
        prepare(tmp_path / "nothing.mov", tmp_path / "o2", progress=False)
    # no face in any frame: says so and suggests --no-face
    noise = tmp_path / "noise"
    noise.mkdir()
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    for i in range(6):
        iio.imwrite(noise / f"n{i}.png", rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    with pytest.raises(PrepareError, match="--no-face"):
        prepare(noise, tmp_path / "o3", progress=False)
    assert not os.path.exists(tmp_path / "o3" / "prepare" / "frames")


def test_too_few_registered_frames_is_an_error_listing_them(tmp_path):
    """Unrelated noise images do not register: an error that names the frames, and nothing half-written."""
    import imageio.v3 as iio

    from eyefast.prepare import PrepareError, prepare

    d = tmp_path / "noise"
    (d / "m").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        iio.imwrite(d / f"f{i}.png", rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        iio.imwrite(d / "m" / f"f{i}.png", np.full((96, 128), 255, np.uint8))
    out = tmp_path / "out"
    with pytest.raises(PrepareError, match=r"registered only .*f0.*f7"):
        prepare(d, out, no_face=True, masks=d / "m", progress=False)
    assert os.path.isdir(out / "prepare" / "frames")  # the frames stage finished
    assert not os.path.exists(out / "transforms.json") and not os.path.exists(out / "image")
    assert not [f for f in os.listdir(out / "prepare") if f.startswith(".")]


def test_missing_extra_names_the_package(monkeypatch):
    from eyefast.prepare.common import PrepareError, require

    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import pycolmap now fails
    with pytest.raises(PrepareError, match=r"pycolmap.*pip install 'eyefast\[prepare\]'"):
        require("pycolmap", "structure from motion")


def test_cli_help():
    from eyefast.cli import main

    assert main(["prepare", "--help"]) == 0
    r = subprocess.run([sys.executable, "-m", "eyefast.prepare", "--help"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    assert r.returncode == 0 and "--no-face" in r.stdout
