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


# ------------------------------------------------------------------------------------ runs
@pytest.fixture(scope="module")
def tiny_run(tiny, tmp_path_factory):
    """A run folder of the tiny capture trained for 2 steps, and its trainer."""
    from eyefast.training import Trainer

    ws = tmp_path_factory.mktemp("ws")
    tr = Trainer(tiny_cfg(tiny, ws, "train.max_steps=2"), quiet=True)
    tr.callback_steps = []
    tr.fit(callback=lambda t: t.callback_steps.append(t.step))  # the hook of train --view
    return tr, tr.run_dir


class _BumpySphere(torch.nn.Module):
    """The analytic face of test_export: ``|x - C| - R + a sin(kx) sin(ky) sin(kz)``."""

    C = torch.tensor([0.0, 0.0, 0.05])

    def forward(self, x):
        return (x - self.C).norm(dim=-1) - 0.40 + 0.004 * torch.sin(50.0 * x).prod(-1), x.new_zeros(x.shape[0], 15)

    def set_active_levels(self, k):
        pass


class _Smooth(torch.nn.Module):
    def forward(self, x):
        c = _BumpySphere.C
        return ((0.5 + 0.4 * (x - c) / 0.5).clamp(0.05, 0.95), (0.5 + 0.4 * x[:, 1]).clamp(0.0, 1.0),
                0.1 + 0.7 * torch.sigmoid(4.0 * x[:, 0]))


@pytest.fixture(scope="module")
def analytic_export(tiny, tmp_path_factory):
    """A model with the analytic face and material (sharp density: beta 0.005), exported (with head.glb
    and preview.png); ``(run, export folder)``."""
    from eyefast import export
    from eyefast.training import Trainer

    ws = tmp_path_factory.mktemp("ws_analytic")
    tr = Trainer(tiny_cfg(tiny, ws), quiet=True)
    tr.model.sdf, tr.model.material = _BumpySphere(), _Smooth()
    with torch.no_grad():
        tr.model.beta_param.fill_(0.005)
    for k in range(4):  # the occupancy grid of this surface
        tr.grid.update_every_n_steps(16 * k, tr._occ_eval, occ_thre=1e-2, n=16)
    run = tr.as_run()
    out = os.path.join(str(ws), "export")
    export.export_run(run, out, uv_size=128, mc_res=64, preview=True)
    return run, out


# ------------------------------------------------------------------------------------ cameras
def test_camera_rays_are_the_captures_and_the_orbit_circles_the_target(tiny_run):
    from eyefast.visual import cameras as C

    tr, _ = tiny_run
    cap = tr.train_cap
    cams = C.capture_cameras(cap)
    o, d = C.camera_rays(cams[1])
    o_ref, d_ref = cap.rays(1)
    assert torch.equal(o, o_ref) and torch.equal(d, d_ref)
    rig = C.rig_of(cap)
    # the synthetic cameras look at (0, 0, 0.1) from 2.6 units (+-3%)
    torch.testing.assert_close(rig.target, torch.tensor([0.0, 0.0, 0.1]), atol=0.03, rtol=0)
    assert abs(rig.distance - 2.6) < 0.1
    orbit = C.orbit_cameras(cap, 6, 40)
    assert len(orbit) == 6 and all((c.W, c.H) == (40, 40) for c in orbit)
    for c in orbit:
        centre = c.c2w[:3, 3].float()
        assert abs(float((centre - rig.target).norm()) - rig.distance) < 1e-3
        assert abs(float(centre[1]) - rig.height) < 1e-3  # at the capture's mean height
        fwd = c.c2w[:3, 2].float()
        torch.testing.assert_close(fwd, torch.nn.functional.normalize(rig.target - centre, dim=0), atol=1e-5, rtol=0)
    full = C.orbit_cameras(cap, 4, (30, 20), arc_deg=360)
    az = [float(torch.atan2(c.c2w[0, 3] - rig.target[0], c.c2w[2, 3] - rig.target[2])) for c in full]
    steps = np.diff(np.unwrap(az))
    np.testing.assert_allclose(steps, np.pi / 2, atol=1e-4)  # once around, a quarter turn per frame
    assert (full[0].W, full[0].H) == (30, 20)
    js = json.dumps([{"position": [0, 0, 3], "look_at": [0, 0, 0], "w": 16, "h": 12, "fl_x": 20},
                     {"transform_matrix": np.eye(4).tolist()}])
    a, b = C.cameras_from_json(js, cap, 24)
    assert (a.W, a.H, a.fx, a.fy, a.cx, a.cy) == (16, 12, 20.0, 20.0, 8.0, 6.0)
    torch.testing.assert_close(a.c2w[:3, 2], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    assert max(b.W, b.H) == 24
    with pytest.raises(ValueError, match="needs c2w"):
        C.cameras_from_json('{"fl_x": 3}', cap)


def test_light_specs_parse_and_place():
    from eyefast.visual.cameras import Camera, look_at
    from eyefast.visual.lights import parse_light, place_lights

    assert parse_light("Left") == "left" and parse_light("1,2.5,-3") == (1.0, 2.5, -3.0)
    for bad in ("sun", "1,2", "1,x,3"):
        with pytest.raises(ValueError, match="flash"):
            parse_light(bad)
    cam = Camera(50, 50, 20, 20, 40, 40, look_at([0.0, 0.0, 3.0], [0.0, 0.0, 0.0]))
    tgt = torch.zeros(3)
    L = {s: place_lights([s], cam, tgt, 0.0, [1, 1, 1], 1.0)[0]["position"] for s in ("left", "right", "top", "bottom")}
    assert L["left"][0] < -1 and L["right"][0] > 1 and L["top"][1] > 1 and L["bottom"][1] < -1
    for p in L.values():
        assert abs(float(p.norm()) - 3.0) < 1e-4  # at the camera's distance from the target
    assert place_lights(["flash"], cam, tgt, 0.0, [1, 1, 1], 1.0)[0]["position"] is None
    orbit = [place_lights(["orbit"], cam, tgt, t, [1, 1, 1], 1.0)[0]["position"] for t in (0.0, 0.25, 0.5, 0.75)]
    assert orbit[0][0] < -1 and orbit[1][1] > 1 and orbit[2][0] > 1 and orbit[3][1] < -1  # left, top, right, bottom
    fixed = place_lights([(1.0, 2.0, 3.0)], cam, tgt, 0.3, [1, 1, 1], 2.0)[0]
    assert fixed["position"].tolist() == [1.0, 2.0, 3.0] and fixed["intensity"] == 2.0


# ------------------------------------------------------------------------------------ rendering
def test_the_flash_reproduces_render_image_and_a_side_light_changes_the_image(tiny_run):
    from eyefast.run import Run
    from eyefast.scene.render import render_view
    from eyefast.visual.cameras import capture_cameras
    from eyefast.visual.render import Renderer

    _, folder = tiny_run
    run = Run.load(folder)
    cap = run.capture("train")
    ref = render_view(run.model, run.grid, run.ops, run.cfg, cap, 1)
    R = Renderer(run)
    cam = capture_cameras(cap)[1]
    out = R.render(cam, R.lights(["flash"], cam))
    for k in ("rgb", "opacity", "normal", "albedo", "diffuse", "spec_rgb", "specular", "roughness", "obj_opacity"):
        assert torch.equal(out[k], ref[k].cpu()), k  # bitwise: the same rays, the same light
    fg = out["opacity"] > 0.5
    assert fg.float().mean() > 0.1
    left, right = R.render(cam, R.lights(["left"], cam)), R.render(cam, R.lights(["right"], cam))
    for r in (left, right):
        assert torch.equal(r["opacity"], out["opacity"])  # the light moves, the head does not
        assert float((r["rgb"] - out["rgb"]).abs()[fg].mean()) > 0.01
    # a light on the viewer's left lights the left half of the head more than the right half
    xs = torch.nonzero(fg, as_tuple=True)[1]
    cx = int(xs.float().mean())
    lum = {k: r["rgb"].mean(-1) for k, r in (("left", left), ("right", right))}
    halves = {k: (float(v[:, :cx][fg[:, :cx]].mean()), float(v[:, cx:][fg[:, cx:]].mean())) for k, v in lum.items()}
    assert halves["left"][0] > halves["left"][1] and halves["right"][1] > halves["right"][0], halves


def test_turntable_command_writes_n_frames_of_the_requested_size(tiny_run, tmp_path, capsys):
    import imageio.v3 as iio

    from eyefast.cli import main

    _, folder = tiny_run
    frames = tmp_path / "frames"
    assert main(["render", "--run", folder, "--orbit", "3", "--size", "20x16", "--light", "orbit", "--light", "left",
                 "--out", str(frames) + "/", "--quiet"]) == 0
    files = sorted(os.listdir(frames))
    assert files == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    imgs = [np.asarray(iio.imread(frames / f)) for f in files]
    assert all(i.shape == (16, 20, 3) for i in imgs)
    assert max(float(i.max()) for i in imgs) > 0
    # python -m eyefast.render: the same command; the capture's validation cameras, albedo, a strip
    strip = tmp_path / "strip.png"
    r = subprocess.run([sys.executable, "-m", "eyefast.render", "--run", folder, "--views", "--split", "val",
                        "--size", "12", "--mode", "albedo", "--out", str(strip)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and np.asarray(iio.imread(strip)).shape == (12, 12, 3)  # 1 validation view
    assert main(["render", "--run", folder, "--light", "sun", "--out", str(tmp_path / "x.png")]) == 2
    assert "flash" in capsys.readouterr().err


def test_frames_become_a_strip_a_gif_and_an_mp4(tmp_path):
    import imageio.v3 as iio

    from eyefast.visual.render import write_frames

    frames = [np.full((15, 21, 3), 20 * k, dtype=np.uint8) for k in range(10)]
    write_frames(frames, str(tmp_path / "s.png"), columns=4)
    assert np.asarray(iio.imread(tmp_path / "s.png")).shape == (45, 84, 3)
    write_frames(frames, str(tmp_path / "a.gif"))
    assert np.asarray(iio.imread(tmp_path / "a.gif", index=None)).shape[0] == 10
    with pytest.raises(ValueError, match="video"):
        write_frames(frames, str(tmp_path / "a.txt"))
    pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg is not installed (eyefast[video])")
    write_frames(frames, str(tmp_path / "v.mp4"), fps=5)
    import imageio.v2 as iio2

    with iio2.get_reader(str(tmp_path / "v.mp4"), format="FFMPEG") as rd:
        got = [f for f in rd]
    assert len(got) == 10 and got[0].shape == (16, 22, 3)  # odd sides padded to even (H.264, yuv420p)
    assert abs(float(got[9][:15, :21].mean()) - 180) < 6


#: --source export against --source model where the surface is seen: PSNR of the sRGB-ish images over the
#: pixels both cover (the rasterised mesh, the volume's opacity > 0.99, one pixel in from the silhouette),
#: lit from the side. Measured ~42 dB on the analytic head at 64 px (the mesh is marching cubes at 64^3, the
#: textures 128^2); the bound leaves room for a coarser mesh or texture.
EXPORT_PSNR_MIN = 30.0


def test_the_exported_assets_render_like_the_model(analytic_export):
    from eyefast.evaluation.metrics import psnr
    from eyefast.visual.cameras import capture_cameras, orbit_cameras
    from eyefast.visual.render import Renderer

    run, out = analytic_export
    cap = run.capture("train")
    model, assets = Renderer(run), Renderer(run, "export", out)
    for cam in capture_cameras(cap, 64)[:1] + orbit_cameras(cap, 2, 64)[1:]:
        lights = model.lights(["left"], cam)
        a, b = model.render(cam, lights), assets.render(cam, lights)
        both = (b["opacity"] > 0) & (a["opacity"] > 0.99)
        inner = both & torch.nn.functional.max_pool2d((~both).float()[None, None], 3, 1, 1)[0, 0].eq(0)
        assert inner.float().mean() > 0.15, cam.name
        p = psnr(model.image(a), assets.image(b), inner)
        assert p > EXPORT_PSNR_MIN, (cam.name, p)
        for mode in ("albedo", "normals", "roughness", "specular", "eyes"):
            assert assets.image(b, mode).shape == (64, 64, 3)


# ------------------------------------------------------------------------------------ report
def test_evaluate_writes_a_report_with_pictures_and_curves(tiny_run, capsys):
    import imageio.v3 as iio

    from eyefast.cli import main

    _, folder = tiny_run
    assert main(["evaluate", "--run", folder, "--max-views", "1"]) == 0
    out = capsys.readouterr().out
    rep = os.path.join(folder, "eval")
    assert f"report: {os.path.join(rep, 'index.html')}" in out
    view = np.asarray(iio.imread(os.path.join(rep, "view_00.png")))
    assert view.shape[1] == 3 * view.shape[0]  # prediction | truth | error, square views enlarged alike
    assert view.shape[0] >= 192
    eyes = np.asarray(iio.imread(os.path.join(rep, "eyes_00.png")))
    assert eyes.shape[0] == 128 and eyes.shape[1] in (256, 512)  # prediction | truth per eye shown
    page = open(os.path.join(rep, "index.html")).read()
    for s in ("<h2>Metrics</h2>", "psnr", "view_00.png", "eyes_00.png", "Training curves"):
        assert s in page, s
    rj = json.load(open(os.path.join(rep, "report.json")))
    assert rj["views"][0]["index"] == 0 and "psnr" in rj["metrics"]
    pytest.importorskip("matplotlib", reason="the curves need matplotlib (eyefast[report])")
    assert 'src="curves.png"' in page
    assert np.asarray(iio.imread(os.path.join(rep, "curves.png"))).shape[1] > 600
    from eyefast.evaluation.report import eye_center_history, read_scalars

    gt = json.load(open(os.path.join(tiny_run[0].cfg.data.meta_path, "gt", "eyes.json")))
    hist = eye_center_history(folder, gt)
    assert [s for s, _ in hist] == [2] and 0 <= hist[0][1] < 0.05  # latest.pth, step 2
    assert "train/psnr" in read_scalars(os.path.join(folder, "scalars.csv"))
    assert main(["evaluate", "--run", folder, "--max-views", "1", "--no-report", "--json",
                 os.path.join(folder, "e.json")]) == 0
    assert "report:" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------ viewer
def test_the_training_hook_runs_after_every_step(tiny_run):
    assert tiny_run[0].callback_steps == [1, 2]


def test_eyefast_view_is_callable_as_a_module_attribute():
    import importlib

    import eyefast

    assert callable(eyefast.view)
    mod = importlib.import_module("eyefast.view")  # importing the module keeps eyefast.view callable
    assert callable(mod) and callable(eyefast.view)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str | None:
    for c in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def _centre(img):
    h, w = img.shape[:2]
    return img[h // 2 - 20:h // 2 + 20, w // 2 - 20:w // 2 + 20, :3].astype(np.float64)


def test_the_viewer_shows_the_head_in_headless_chromium_and_the_light_moves(tiny_run, tmp_path):
    """The viewer (training mode: rendered by the trainer's hook, as train --view; then its own thread, as
    eyefast view) loaded in headless Chromium: the centre of the page shows the head, not the background,
    and moving the light through the Python API changes it."""
    pytest.importorskip("viser", reason="the viewer needs viser (eyefast[view])")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed and could not be: apt-get install -y chromium (.ci/run does)")
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(TOOLS, "node_modules", "playwright-core")):
        pytest.skip("node or tools/node_modules/playwright-core is missing: run `make tools`")
    import imageio.v3 as iio

    from eyefast.visual.viewer import Viewer

    tr, _ = tiny_run
    v = Viewer(tr.as_run(), port=_free_port(), size=64, preview_size=32, training=True, verbose=False)
    prefix = str(tmp_path / "shot")
    p = subprocess.Popen([node, os.path.join(TOOLS, "screenshot.js"), v.url, prefix], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CHROMIUM": chromium})

    def settle(step_hook: bool, timeout=180.0, quiet=1.5):
        """Until every browser has shown the current view for ``quiet`` seconds: a browser may report its
        camera again after the first image (its initial camera arrives after it connected), and in the
        training mode only the hook renders, so a late camera must be seen before the screenshot."""
        t0, idle_since = time.monotonic(), None
        while time.monotonic() - t0 < timeout:
            if step_hook:
                v.hook(tr)  # what the trainer calls between steps
            if v._clients and v.idle():
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= quiet:
                    return
            else:
                idle_since = None
            time.sleep(0.05)
        raise AssertionError(f"the viewer did not finish rendering in {timeout} s ({v.renders} images sent)")

    def cameras():
        ic = v.server.initial_camera
        return (f"initial camera {tuple(np.round(ic.position, 3))}; browsers' cameras "
                f"{[tuple(np.round(c.camera.position, 3)) for c, _st in v._clients.values()]}")

    def shot(k):
        p.stdin.write("shot 1000\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == f"shot {k}", p.stderr.read()
        return np.asarray(iio.imread(f"{prefix}_{k}.png"))

    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        assert v.wait_for_clients(1, 60), "the page did not connect to the viewer"
        settle(True)
        a = shot(0)
        background = a[340:380, 20:60, :3].astype(np.float64)  # left edge, mid height: no head, no panel
        assert np.abs(_centre(a) - background.mean((0, 1))).mean() > 20, cameras()  # the head, lit by the key light
        v.set_light(azimuth=100.0, elevation=0.0)  # from the side: the face's front goes dark
        settle(True)
        b = shot(1)
        assert np.abs(_centre(a) - _centre(b)).mean() > 10, cameras()
        v.start()  # after training: its own thread renders (eyefast view)
        v.set_light(flash=True)
        settle(False)
        c = shot(2)
        assert np.abs(_centre(c) - _centre(b)).mean() > 10, cameras()
        p.stdin.write("quit\n")
        p.stdin.flush()
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        v.close()


# ------------------------------------------------------------------------------------ glTF validator
def _validate_gltf(path) -> dict:
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(TOOLS, "node_modules", "gltf-validator")):
        pytest.skip("node or tools/node_modules/gltf-validator is missing: run `make tools`")
    r = subprocess.run([node, os.path.join(TOOLS, "gltf_validate.js"), str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _no_issues(report):
    iss = report["issues"]
    assert (iss["numErrors"], iss["numWarnings"]) == (0, 0), iss["messages"][:10]
    assert report["info"]["version"] == "2.0"


def test_head_glb_passes_the_khronos_gltf_validator(analytic_export):
    """docs/export.md: "The file passes the Khronos glTF validator with no errors or warnings"."""
    _, out = analytic_export
    rep = _validate_gltf(os.path.join(out, "head.glb"))
    _no_issues(rep)
    assert {"KHR_materials_specular", "KHR_materials_ior"} <= set(rep["info"]["extensionsUsed"])


def test_the_refractive_head_glb_passes_the_validator_too(tiny_refractive, tmp_path):
    from eyefast import export
    from eyefast.training import Trainer

    if shutil.which("node") is None or not os.path.isdir(os.path.join(TOOLS, "node_modules", "gltf-validator")):
        pytest.skip("node or tools/node_modules/gltf-validator is missing: run `make tools`")
    tr = Trainer(tiny_cfg(tiny_refractive, tmp_path), quiet=True)
    tr.model.sdf, tr.model.material = _BumpySphere(), _Smooth()
    paths = export.export_run(tr.as_run(), str(tmp_path / "export"), uv_size=64, mc_res=48)
    rep = _validate_gltf(paths["glb"])
    _no_issues(rep)
    assert "KHR_materials_transmission" in rep["info"]["extensionsUsed"]  # the clear corneas
