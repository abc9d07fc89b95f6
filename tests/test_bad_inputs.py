"""Bad inputs (the hardening issue): every expected failure of the ``eyefast`` commands is one line on
stderr naming the file, key or argument, with exit status 2 (130 for an interrupted training); no bad
input loses a run, escapes its folder or silently trains on garbage.

``CASES`` is the table: (id, issue item, setup -> argv, expected exit status, expected stderr
fragment). The library-level items (0/1 masks, the ops on the meta device and at large magnitudes,
HashGrid's check, the messages of the loaders) follow it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from eyefast.checkpoint import load_checkpoint
from eyefast.cli import main as eyefast_main

QUIET = ["--device", "cpu", "--quiet", "--set", "train.val_freq=0", "--set", "train.vis_freq=0"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- shared setup
class Env:
    """A tiny capture (copied: cases may damage it), its config, a workspace and a 2-step run in it."""

    def __init__(self, root, tiny):
        self.root = root
        self.cap = os.path.join(root, "cap")
        shutil.copytree(tiny, self.cap)
        self.cfg = os.path.join(self.cap, "config.yaml")
        self.ws = os.path.join(root, "ws")
        self.run = os.path.join(self.ws, "synth_tiny")
        assert eyefast_main(["train", self.cfg, "--workspace", self.ws, "--max-steps", "2", *QUIET]) == 0

    def fresh_ws(self, name):
        """An empty workspace of its own (a case that trains)."""
        return os.path.join(self.root, "ws_" + name)

    def train(self, *extra, ws=None):
        return ["train", self.cfg, "--workspace", ws or self.ws, *QUIET, *extra]


@pytest.fixture(scope="module")
def env(tiny, tmp_path_factory):
    return Env(str(tmp_path_factory.mktemp("bad")), tiny)


def _write_obj(path, verts, uvs, faces):
    with open(path, "w") as f:
        np.savetxt(f, verts, fmt="v %.7f %.7f %.7f")
        np.savetxt(f, uvs, fmt="vt %.7f %.7f")
        np.savetxt(f, np.repeat(faces + 1, 2, axis=1), fmt="f %d/%d %d/%d %d/%d")


def _uv_quad(env):
    """A UV-mapped quad in front of the tiny capture's face (the whole UV square), for eye-masks."""
    p = os.path.join(env.root, "quad_uv.obj")
    if not os.path.isfile(p):
        v = np.array([[-0.6, -0.6, 0.3], [0.6, -0.6, 0.3], [0.6, 0.6, 0.3], [-0.6, 0.6, 0.3]])
        uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        _write_obj(p, v, uv, np.array([[0, 1, 2], [0, 2, 3]]))
    return p


def _paint(path, h, w, left=True, scale=255):
    img = np.zeros((h, w), np.uint8)
    img[: h // 2, : w // 2] = scale  # a block in one quarter
    iio.imwrite(path, img)
    return path


def _eye_masks_capture(env, name):
    """A copy of the capture's cameras with painted UV masks (and the capture's own eye masks)."""
    d = os.path.join(env.root, name)
    if not os.path.isdir(d):
        shutil.copytree(env.cap, d)
        _paint(os.path.join(d, "diffuse_leye_mask.png"), 64, 64)
        _paint(os.path.join(d, "diffuse_reye_mask.png"), 64, 64)
    return d


def _landmarks(env, mutate):
    """A triangulate landmark file for the capture (two views of both eyes), changed by ``mutate``."""
    from eyefast.data import Capture, synth

    cap = Capture(env.cap, split="all", pixels=False)
    head = synth.Head(seed=0)
    lm = {}
    for i in (0, 3):
        lm[f"{cap.image_names[i]}.png"] = {"left_eye": cap.project(head.landmarks(0), i).double().tolist(),
                                           "right_eye": cap.project(head.landmarks(1), i).double().tolist()}
    mutate(lm)
    p = os.path.join(env.root, f"lm_{len(os.listdir(env.root))}.json")
    with open(p, "w") as f:
        json.dump(lm, f)
    return p


def _ckpt_without(env, key):
    ck = torch.load(os.path.join(env.run, "latest.pth"), weights_only=True)
    del ck[key]
    p = os.path.join(env.root, f"no_{key}.pth")
    torch.save(ck, p)
    return p


def _file(env, name, text="x"):
    p = os.path.join(env.root, name)  # (an absolute name stays as it is)
    with open(p, "w") as f:
        f.write(text)
    return p


def _read(path):
    with open(path) as f:
        return f.read()


# --------------------------------------------------------------------------- the table
#: (id, issue item, setup(env) -> argv, exit status, fragment of stderr)
CASES = [
    # 1. an existing run is not replaced without --resume or --overwrite
    ("existing-run", 1, lambda e: e.train(), 2, "already holds a run"),
    # 4. the run name stays inside the workspace
    ("name-parent", 4, lambda e: e.train("--set", "name=../../escape"), 2, "config key 'name'"),
    ("name-absolute", 4, lambda e: e.train("--set", f"name={e.root}/abs"), 2, "config key 'name'"),
    ("name-separator", 4, lambda e: e.train("--set", "name=a/b"), 2, "not a plain run name"),
    # 5. every numeric key has a range, checked at load, naming the key, the value and the range
    ("gamma-zero", 5, lambda e: e.train("--set", "light.gamma=0"), 2, "'light.gamma': 0 is out of range: the value must be > 0 and <= 10"),
    ("gamma-negative", 5, lambda e: e.train("--set", "light.gamma=-2.2"), 2, "'light.gamma': -2.2 is out of range"),
    ("beta-zero", 5, lambda e: e.train("--set", "data.beta=0"), 2, "'data.beta': 0 is out of range: the value must be > 0"),
    ("geo-feat-negative", 5, lambda e: e.train("--set", "network.geo_feat_dim=-1"), 2, "'network.geo_feat_dim': -1 is out of range: the value must be >= 1 and <= 256"),
    ("seed-overflow", 5, lambda e: e.train("--set", f"train.seed={2 ** 70}"), 2, "'train.seed'"),
    ("max-steps-negative", 5, lambda e: e.train("--max-steps", "-5", "--resume"), 2, "'train.max_steps': -5 is out of range: the value must be >= 1"),
    ("intensity-negative", 5, lambda e: e.train("--set", "light.intensity=-20"), 2, "'light.intensity'"),
    ("color-negative", 5, lambda e: e.train("--set", "light.color=[1, -1, 1]"), 2, "'light.color': [1, -1, 1] is out of range: every value must be >= 0"),
    ("grid-resolution-1", 5, lambda e: e.train("--set", "renderer.grid_resolution=1"), 2, "'renderer.grid_resolution': 1 is out of range"),
    ("dilate-even", 5, lambda e: e.train("--set", "data.dilate_ks=4"), 2, "'data.dilate_ks': 4 is out of range: the value must be >= 0 and <= 255, 0 (off) or odd"),
    ("loss-weight-negative", 5, lambda e: e.train("--set", "loss.w_l1=-1"), 2, "'loss.w_l1': -1 is out of range"),
    ("milestone-negative", 5, lambda e: e.train("--set", "train.milestones=[-3]"), 2, "'train.milestones'"),
    ("lr-huge-int", 5, lambda e: e.train("--set", f"train.lr={10 ** 400}"), 2, "'train.lr': expected a finite number"),
    ("center-nan", 5, lambda e: e.train("--set", "data.eyeball_left_center=[.nan, 0, 0]"), 2, "'data.eyeball_left_center'"),
    ("ckpt-no-optimizer", 5, lambda e: e.train("--resume", _ckpt_without(e, "optimizer"), ws=e.fresh_ws("noopt")), 2, "has no 'optimizer' entry"),
    ("export-out-is-file", 5, lambda e: ["export", "--run", e.run, "--out", _file(e, "out.txt")], 2, "--out"),
    ("export-uv-size", 5, lambda e: ["export", "--run", e.run, "--uv-size", "0"], 2, "--uv-size must be >= 16"),
    ("synth-out-is-file", 5, lambda e: ["synth", _file(e, "synth.txt"), "--preset", "tiny"], 2, "is a file, not a folder"),
    ("synth-out-is-a-capture", 5, lambda e: ["synth", os.path.join(e.root, "cap_noGT"), "--preset", "tiny"], 2, "not a synthetic capture"),
    ("synth-resolution-negative", 5, lambda e: ["synth", os.path.join(e.root, "s1"), "--resolution", "-5"], 2, "--resolution"),
    ("synth-views-zero", 5, lambda e: ["synth", os.path.join(e.root, "s2"), "--views", "0"], 2, "--views must be 1 to"),
    ("tools-device-bogus", 5, lambda e: ["tools", "eye-masks", "--capture", _eye_masks_capture(e, "em_dev"), "--mesh-uv",
                                          _uv_quad(e), "--out", os.path.join(e.root, "em_dev_out"), "--device", "bogus"], 2, "--device"),
    ("train-device-bogus", 5, lambda e: ["train", e.cfg, "--device", "gpu"], 2, "--device: expected cpu, cuda"),
    ("evaluate-device-bogus", 5, lambda e: ["evaluate", "--run", e.run, "--device", "tpu"], 2, "--device"),
    ("config-device-gpu", 9, lambda e: ["train", _file(e, "gpu.yaml", f"device: gpu\ndata: {{meta_path: {e.cap}}}\n"), "--quiet"],
     2, "config key 'device': expected auto, cpu, cuda, cuda:N or a CUDA index N, got 'gpu'"),
    # 7. the tools do not overwrite their inputs, and check sizes and ranges
    ("eye-masks-existing", 7, lambda e: ["tools", "eye-masks", "--capture", _eye_masks_capture(e, "em_exist"), "--mesh-uv", _uv_quad(e)],
     2, "leye_mask' already holds"),
    ("eye-masks-aspect", 7, lambda e: ["tools", "eye-masks", "--capture", e.cap, "--mesh-uv", _uv_quad(e), "--out", os.path.join(e.root, "o1"),
                                        "--left-mask", _paint(os.path.join(e.root, "wide.png"), 64, 256),
                                        "--right-mask", _paint(os.path.join(e.root, "sq.png"), 64, 64)], 2, "is 256x64 (w x h), but the UV map is square"),
    ("eye-masks-tiny", 7, lambda e: ["tools", "eye-masks", "--capture", e.cap, "--mesh-uv", _uv_quad(e), "--out", os.path.join(e.root, "o2"),
                                      "--left-mask", _paint(os.path.join(e.root, "tiny.png"), 4, 4),
                                      "--right-mask", _paint(os.path.join(e.root, "sq.png"), 64, 64)], 2, "too small"),
    ("eye-masks-black", 7, lambda e: ["tools", "eye-masks", "--capture", e.cap, "--mesh-uv", _uv_quad(e), "--out", os.path.join(e.root, "o3"),
                                       "--left-mask", _paint(os.path.join(e.root, "black.png"), 64, 64, scale=0),
                                       "--right-mask", _paint(os.path.join(e.root, "sq.png"), 64, 64)], 2, "has no white texel"),
    ("triangulate-outside", 7, lambda e: ["tools", "triangulate", "--capture", e.cap, "--landmarks",
                                           _landmarks(e, lambda lm: lm["00000.png"]["left_eye"][1].__setitem__(0, 500.0))],
     2, "'00000.png' left_eye point 1 (500, "),
    ("triangulate-normalised", 7, lambda e: ["tools", "triangulate", "--capture", e.cap, "--landmarks",
                                              _landmarks(e, lambda lm: lm["00003.png"].__setitem__("right_eye", [[-0.9, 0.5]] * 4))],
     2, "lies outside the 32x32 image"),
    ("triangulate-same-eyes", 7, lambda e: ["tools", "triangulate", "--capture", e.cap, "--landmarks",
                                             _landmarks(e, lambda lm: [v.__setitem__("right_eye", v["left_eye"]) for v in lm.values()])],
     2, "gives the same points for left_eye and right_eye"),
    ("triangulate-misspelt-key", 7, lambda e: ["tools", "triangulate", "--capture", e.cap, "--landmarks",
                                                _landmarks(e, lambda lm: lm["00003.png"].__setitem__("rigth_eye", lm["00003.png"].pop("right_eye")))],
     2, "unknown key(s) 'rigth_eye'"),
    ("uv-landmarks-tolerance", 7, lambda e: ["tools", "uv-landmarks", "--image", "x.png", "--coord-map", "c.npy", "--tolerance", "300"],
     2, "--tolerance must be 0 to 255"),
    # 9. unclear messages
    ("ckpt-empty", 9, lambda e: e.train("--resume", _file(e, "empty.pth", ""), ws=e.fresh_ws("empty")), 2, "is empty (0 bytes)"),
    ("ckpt-garbage", 9, lambda e: e.train("--resume", _file(e, "garbage.pth", "not a checkpoint"), ws=e.fresh_ws("garbage")), 2, "cannot be read"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_a_status(env, case, capsys):
    cid, _item, setup, code, fragment = case
    if cid == "synth-out-is-a-capture":
        shutil.copytree(env.cap, os.path.join(env.root, "cap_noGT"), dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("gt"))
    argv = setup(env)
    before = sorted(os.listdir(env.run))
    scalars = _read(os.path.join(env.run, "scalars.csv"))
    assert eyefast_main(argv) == code, capsys.readouterr().err
    err = capsys.readouterr().err
    assert fragment in err, err
    errors = [ln for ln in err.splitlines() if ": error: " in ln]
    assert "Traceback" not in err and len(errors) == 1 and fragment in errors[0], err  # the error is one line
    # the run in the workspace is untouched by every bad command
    assert sorted(os.listdir(env.run)) == before
    assert _read(os.path.join(env.run, "scalars.csv")) == scalars
    assert load_checkpoint(os.path.join(env.run, "latest.pth"))["step"] == 2


def test_the_table_covers_every_item():
    assert {c[1] for c in CASES} >= {1, 4, 5, 7, 9}  # 2, 3, 6, 8 (and more of 7, 9) below


def test_every_numeric_config_key_has_a_range(env):
    from eyefast.data import config as C

    numeric = {C._full(sec, k) for sec, keys in C.SCHEMA.items() for k, (kind, _) in keys.items()
               if kind in ("int", "float", "vec3", "ldm", "int_list")}
    assert numeric == set(C.RANGES)
    for key, rng in C.RANGES.items():  # every default lies in its range
        sec, _, k = key.rpartition(".")
        default = C.SCHEMA[sec][k][1]
        values = default if isinstance(default, list) else [default]
        assert all(v in rng for v in np.ravel(values).tolist()) if default is not None else True, key
    # the edges of a range load: the smallest occupancy grid, dilation off, the largest seed
    cfg = C.load(env.cfg, ["renderer.grid_resolution=8", "data.dilate_ks=0", "data.dilate_ks=1",
                           f"train.seed={2 ** 32 - 1}", "light.gamma=10", "loss.w_l1=0"])
    assert cfg.renderer.grid_resolution == 8 and cfg.train.seed == 2 ** 32 - 1


# --------------------------------------------------------------------------- 2. the lock
def _holder(run_dir):
    """A process holding the run folder's lock, until killed."""
    code = ("import sys, time; from eyefast.training.run_folder import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code, run_dir], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_second_training_into_a_locked_run_is_refused(env, capsys):
    holder = _holder(env.run)
    try:
        assert eyefast_main(env.train("--resume", "--max-steps", "3")) == 2
        err = capsys.readouterr().err
        assert f"run folder '{env.run}' is in use by another training (PID {holder.pid}" in err
        assert load_checkpoint(os.path.join(env.run, "latest.pth"))["step"] == 2  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # the holder died without removing its lock file: the next training takes it over, with a note
    lock = os.path.join(env.run, "train.lock")
    assert os.path.isfile(lock) and _read(lock).split()[0] == str(holder.pid)
    ws2 = env.fresh_ws("stale")
    shutil.copytree(env.run, os.path.join(ws2, "synth_tiny"))
    assert eyefast_main(env.train("--resume", "--max-steps", "3", "--set", "train.save_freq=0", ws=ws2)) == 0
    assert f"taking over the stale lock of PID {holder.pid}" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(ws2, "synth_tiny", "train.lock"))  # released at the end
    assert load_checkpoint(os.path.join(ws2, "synth_tiny", "latest.pth"))["step"] == 3


def test_two_concurrent_trainings_one_wins(env):
    """Two real `eyefast train` processes into one new run: one trains, the other exits 2 naming the holder."""
    ws = env.fresh_ws("race")
    cmd = [sys.executable, "-m", "eyefast", "train", env.cfg, "--workspace", ws, *QUIET, "--max-steps", "30",
           "--set", "renderer.max_num_ray=256"]
    e = {**os.environ, "PYTHONPATH": REPO}
    a = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=e)
    lock = os.path.join(ws, "synth_tiny", "train.lock")
    t0 = time.time()
    while not os.path.isfile(lock) and a.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    b = subprocess.run(cmd, check=False, stderr=subprocess.PIPE, text=True, env=e, timeout=300)
    a_err = a.communicate(timeout=600)[1]
    assert a.returncode == 0, a_err
    assert b.returncode == 2 and f"(PID {a.pid}" in b.stderr, b.stderr
    rows = _read(os.path.join(ws, "synth_tiny", "scalars.csv")).splitlines()
    steps = [int(r.split(",")[0]) for r in rows[1:]]
    assert steps == sorted(steps)  # one writer


# --------------------------------------------------------------------------- 3. 0/1 masks
def test_masks_stored_as_0_1_are_read_as_0_255_with_one_warning(env, tmp_path):
    from eyefast.data import Capture

    cap01 = tmp_path / "cap01"
    shutil.copytree(env.cap, cap01)
    for f in os.listdir(cap01 / "mask"):
        m = iio.imread(cap01 / "mask" / f)
        iio.imwrite(cap01 / "mask" / f, (m > 127).astype(np.uint8))  # 0/1
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = Capture(cap01, split="all")
    notes = [str(x.message) for x in w if "0/1" in str(x.message)]
    assert len(notes) == 1 and str(cap01 / "mask") in notes[0]
    want = Capture(env.cap, split="all")
    assert torch.equal(got.masks["mask"], (want.masks["mask"] > 127).to(torch.uint8) * 255)
    assert int(got.masks["mask"].max()) == 255


def test_painted_uv_masks_stored_as_0_1_work(env, tmp_path):
    cap = _eye_masks_capture(env, "em_01")
    _paint(os.path.join(cap, "diffuse_leye_mask.png"), 64, 64, scale=1)
    out = tmp_path / "masks"
    assert eyefast_main(["tools", "eye-masks", "--capture", cap, "--mesh-uv", _uv_quad(env), "--out", str(out)]) == 0
    assert any(iio.imread(out / "leye_mask" / f).max() == 255 for f in os.listdir(out / "leye_mask"))


# --------------------------------------------------------------------------- 6. exit codes, leftovers
def test_ctrl_c_saves_latest_and_exits_130(env, monkeypatch, capsys):
    from eyefast.training.trainer import Trainer

    ws = env.fresh_ws("ctrlc")
    orig = Trainer.step_async

    def step(self):
        r = orig(self)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return r

    monkeypatch.setattr(Trainer, "step_async", step)
    assert eyefast_main(env.train("--max-steps", "50", ws=ws)) == 130
    assert "interrupted at step 3" in capsys.readouterr().err
    assert load_checkpoint(os.path.join(ws, "synth_tiny", "latest.pth"))["step"] == 3
    # `train && export` stops: a second Ctrl-C (or one outside the loop) is 130 too, without a traceback
    monkeypatch.setattr(Trainer, "fit", lambda self, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert eyefast_main(env.train("--resume", ws=ws)) == 130
    assert "interrupted" in capsys.readouterr().err


def test_non_finite_loss_without_a_checkpoint_says_so(env, monkeypatch, capsys):
    from eyefast.training.trainer import Trainer

    def fit(self, **k):
        raise FloatingPointError("step 1: the loss is not finite")

    monkeypatch.setattr(Trainer, "fit", fit)
    assert eyefast_main(env.train(ws=env.fresh_ws("nan"))) == 2
    err = capsys.readouterr().err
    assert "no checkpoint was saved" in err and "--resume" not in err
    assert eyefast_main(env.train("--resume", ws=os.path.dirname(env.run))) == 2  # a run with latest.pth
    assert f"{os.path.join(env.run, 'latest.pth')}: continue it with --resume" in capsys.readouterr().err


def test_leftover_temporaries_are_removed_at_the_next_start(env, capsys):
    ws = env.fresh_ws("tmp")
    run = os.path.join(ws, "synth_tiny")
    shutil.copytree(env.run, run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.makedirs(os.path.join(run, "checkpoints"), exist_ok=True)
    stale = [os.path.join(run, f".latest.pth.tmp{dead.pid}"),
             os.path.join(run, "checkpoints", f".step_000100.pth.tmp{dead.pid}")]
    alive = os.path.join(run, f".latest.pth.tmp{os.getppid()}")  # a running process's: kept
    for p in stale + [alive]:
        _file(env, p, "partial")
    assert eyefast_main(env.train("--resume", "--max-steps", "3", ws=ws)) == 0
    assert not any(os.path.exists(p) for p in stale) and os.path.exists(alive)
    assert "removed 2 unfinished checkpoint file(s)" in capsys.readouterr().err


def test_max_steps_below_one_is_refused_by_fit(env):
    from eyefast.data import config as config_mod
    from eyefast.training.trainer import Trainer

    cfg = config_mod.load(env.cfg, ["device=cpu", f"workspace={json.dumps(env.fresh_ws('fit'))}"])
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1"):
        Trainer(cfg, quiet=True).fit(max_steps=-5)


# --------------------------------------------------------------------------- 7. more tools, paths
def test_eye_masks_overwrite_and_out(env):
    cap = _eye_masks_capture(env, "em_over")
    before = {f: iio.imread(os.path.join(cap, "leye_mask", f)) for f in os.listdir(os.path.join(cap, "leye_mask"))}
    assert eyefast_main(["tools", "eye-masks", "--capture", cap, "--mesh-uv", _uv_quad(env)]) == 2
    assert all(np.array_equal(iio.imread(os.path.join(cap, "leye_mask", f)), m) for f, m in before.items())
    assert eyefast_main(["tools", "eye-masks", "--capture", cap, "--mesh-uv", _uv_quad(env), "--overwrite"]) == 0
    assert any(not np.array_equal(iio.imread(os.path.join(cap, "leye_mask", f)), m) for f, m in before.items())


def test_uv_landmarks_json_into_a_missing_folder(tmp_path, capsys):
    H, W = 48, 64
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    coord = np.stack([(cols + 0.5 - W / 2) / W * 0.4, (H / 2 - rows - 0.5) / H * 0.2, np.full((H, W), 0.3)], -1)
    np.save(tmp_path / "coord.npy", coord.astype(np.float32))
    img = np.full((H, W, 3), 90, np.uint8)
    for r, c in [(10, 5), (10, 12), (20, 5), (20, 12), (10, 45), (10, 52), (20, 45), (20, 52)]:
        img[r, c] = (0, 255, 0)
    iio.imwrite(tmp_path / "painted.png", img)
    out = tmp_path / "new" / "folder" / "ldm.json"
    assert eyefast_main(["tools", "uv-landmarks", "--image", str(tmp_path / "painted.png"), "--coord-map",
                         str(tmp_path / "coord.npy"), "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())) == {"left_eye_ldm", "right_eye_ldm"}


def test_paths_with_colon_space_survive_the_overrides(env, tmp_path):
    ws = str(tmp_path / "runs: a")
    assert eyefast_main(env.train("--max-steps", "1", ws=ws)) == 0
    run = os.path.join(ws, "synth_tiny")
    from eyefast.run import Run

    r = Run.load(run, capture=env.cap, device="cpu")
    assert r.cfg.workspace == ws and r.step == 1
    out = str(tmp_path / "exp: b")
    assert eyefast_main(["export", "--run", run, "--out", out, "--mc-res", "32", "--uv-size", "64", "--no-glb",
                         "--quiet"]) == 0
    assert os.path.isfile(os.path.join(out, "mesh_uv.obj"))


# --------------------------------------------------------------------------- 8. the ops
def _op_calls():
    """(name, call(device_of_arg_k) ) for every op: its arguments on CPU except argument k on meta."""
    from eyefast import ops
    from eyefast.core.eyes import pack_eyes
    from eyefast.core.nn import HashGrid, sh_encode, softplus

    o = torch.zeros(4, 3)
    d = torch.tensor([[0.0, 0.0, 1.0]]).repeat(4, 1)
    c, r = torch.tensor([[0.0, 0.0, 3.0]]), torch.ones(1)
    eyes = pack_eyes(c, r, torch.tensor([[0.0, 0.3, -1.0]]))
    hg = HashGrid(n_levels=2, log2_hashmap_size=8)
    table = hg.params.detach()
    clip = torch.tensor([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2]])
    return {
        "ray_sphere_intersect": ((o, d, c, r), lambda *a: ops.ray_sphere_intersect(*a)),
        "refract": ((d, -d, torch.tensor(0.75)), lambda *a: ops.refract(*a)),
        "trace_eyes": ((o, d, eyes), lambda *a: ops.trace_eyes(*a)),
        "hash_grid_encode": ((o + 0.5, table), lambda x, t: torch.ops.eyefast.hash_grid_encode(x, t, hg.scales, 2, False)),
        "sh_encode": ((d,), lambda x: sh_encode(x, 4)),
        "softplus": ((o,), lambda z: softplus(z, 10.0)),
        "rasterize": ((clip, faces), lambda v, f: ops.rasterize(v, f, 4, 4)),
        "interpolate": ((torch.ones(3, 2), faces, torch.zeros(2, 2, dtype=torch.int32), torch.full((2, 2, 3), 1 / 3)),
                        lambda *a: ops.interpolate(*a)),
    }


OPS = ["ray_sphere_intersect", "refract", "trace_eyes", "hash_grid_encode", "sh_encode", "softplus", "rasterize",
       "interpolate"]


@pytest.mark.parametrize("op", OPS)
def test_an_argument_on_the_meta_device(op):
    args, call = _op_calls()[op]
    # all on meta: meta results of the real op's shapes
    real = call(*args)
    meta = call(*[a.to("meta") for a in args])
    for x, y in zip(real if isinstance(real, tuple) else (real,), meta if isinstance(meta, tuple) else (meta,)):
        assert y.device.type == "meta" and y.shape == x.shape and y.dtype == x.dtype
    # one on meta, the rest on the CPU: an error naming the argument, not uninitialised CPU memory
    if len(args) > 1:
        for k in range(len(args)):
            mixed = [a.to("meta") if j == k else a for j, a in enumerate(args)]
            with pytest.raises(RuntimeError, match=f"eyefast.{op}: .* must be on .*(all tensor arguments must be on one device)"):
                call(*mixed)


def test_occupancy_sampling_with_an_argument_on_the_meta_device():
    from eyefast.core.occupancy import OccupancyGrid, occupancy_sampling

    g = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=16)
    o, d = torch.zeros(4, 3), torch.tensor([[0.0, 0.0, 1.0]]).repeat(4, 1)
    with pytest.raises(RuntimeError, match="eyefast.occupancy_sampling: bitfield must be on cpu like rays_o"):
        occupancy_sampling(o, d, g.bitfield.to("meta"), g.aabbs, 16)
    with pytest.raises(RuntimeError):  # its output size depends on the data: meta arguments are an error
        occupancy_sampling(o.to("meta"), d.to("meta"), g.bitfield.to("meta"), g.aabbs.to("meta"), 16)


def test_fake_kernels_check_devices_under_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    from eyefast import ops

    with FakeTensorMode() as mode:
        o = mode.from_tensor(torch.zeros(4, 3))
        c = mode.from_tensor(torch.zeros(1, 3, device="meta"))
        with pytest.raises(RuntimeError, match="centers must be on cpu like origins"):
            ops.ray_sphere_intersect(o, o, c, torch.ones(1))


@pytest.mark.parametrize("scale", [1e-30, 1e-22, 1e19, 1e25, 1e30, 2.0 ** 100, 2.0 ** -100])
def test_eye_ops_at_large_and_small_float32_magnitudes(scale):
    """Directions of any float32 length > 0 (|d|^2 over- or underflows outside ~1e-19..1e19): the same
    hits, t in units of the direction, unit refracted directions. The kernels scale each direction by
    a power of two, exactly: a direction scaled by a power of two gives bit-identical results. (Other
    scales round d * scale, which moves float32 results by ~1e-5.)"""
    from eyefast import ops
    from eyefast.core.eyes import pack_eyes
    from eyefast.reference import eye as ref

    g = torch.Generator().manual_seed(0)
    o = torch.tensor([[0.0, 0.0, 0.0]]).repeat(64, 1) + 0.05 * torch.randn(64, 3, generator=g)
    d = torch.tensor([[0.0, 0.0, 1.0]]) + 0.2 * torch.randn(64, 3, generator=g)
    c, r = torch.tensor([[0.0, 0.0, 3.0], [0.4, 0.0, 3.0]]), torch.tensor([0.5, 0.3])
    unit = ops.ray_sphere_intersect(o, d, c, r)
    big = ops.ray_sphere_intersect(o, d * scale, c, r)
    assert (unit[2] >= 0).sum() > 20 and torch.equal(big[2], unit[2])  # a hit stays a hit
    hit = unit[2] >= 0
    exact = float(np.log2(scale)).is_integer()
    close = (lambda a, b, tol: torch.equal(a, b)) if exact else (lambda a, b, tol: torch.allclose(a, b, rtol=tol, atol=tol))
    assert close(big[0][hit] * scale, unit[0][hit], 1e-5) and close(big[1][hit] * scale, unit[1][hit], 1e-5)
    assert close(big[3], unit[3], 1e-4)
    rb = ref.ray_sphere_intersect(o, d * scale, c, r)
    assert torch.equal(rb[2], big[2]) and torch.allclose(rb[0][hit] * scale, unit[0][hit], rtol=1e-5)
    # refract: unit directions for any length > 0
    n = torch.tensor([[0.0, 0.0, -1.0]]) + 0.3 * torch.randn(64, 3, generator=g)
    out, refl, tir = ops.refract(d * scale, n * scale, 1 / 1.376)
    out1, refl1, _ = ops.refract(d, n, 1 / 1.376)  # _: tir
    assert torch.allclose(out.norm(dim=-1), torch.ones(64), atol=1e-6)
    assert close(out, out1, 1e-6) and close(refl, refl1, 1e-6) and torch.equal(tir, _)
    assert torch.allclose(ref.refract(d * scale, n * scale, 1 / 1.376)[0], out1, atol=1e-6)
    # trace_eyes: the same hits, t in units of the direction
    eyes = pack_eyes(c, r, torch.tensor([[0.0, 0.3, -1.0], [0.2, 0.0, -1.0]]))
    t1, tb = ops.trace_eyes(o, d, eyes), ops.trace_eyes(o, d * scale, eyes)
    assert torch.equal(tb.region, t1.region) and (t1.region > 0).sum() > 20
    hit = t1.region > 0
    assert close(tb.t[hit] * scale, t1.t[hit], 1e-5)
    assert close(tb.refr_dir, t1.refr_dir, 1e-4) and close(tb.normal, t1.normal, 1e-4)
    assert close(tb.t_iris, t1.t_iris, 1e-4) and close(tb.iris_uv, t1.iris_uv, 1e-4)
    te = ref.trace_eyes(o, d * scale, eyes)
    assert torch.equal(te[2], t1.region) and torch.allclose(te[0][hit] * scale, t1.t[hit], rtol=1e-5)


def test_eye_op_gradients_at_large_magnitudes():
    from eyefast import ops

    o = torch.tensor([[0.05, 0.0, 0.0]], dtype=torch.float64)
    c, r = torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    grads = []
    for scale in (1.0, 1e200):  # |d|^2 overflows float64
        d = (torch.tensor([[0.01, 0.02, 1.0]], dtype=torch.float64) * scale).requires_grad_()
        t, _, _, nrm = ops.ray_sphere_intersect(o, d, c, r)
        (t.sum() * scale + nrm.sum()).backward()
        grads.append(d.grad * scale)
    assert torch.allclose(grads[0], grads[1], rtol=1e-9)


def test_hash_grid_rejects_non_finite_points_when_asked():
    from eyefast.core.nn import HashGrid, hash_grid_encode

    hg = HashGrid(n_levels=2, log2_hashmap_size=8)
    x = torch.rand(10, 3)
    x[6, 1] = float("nan")
    x[8, 0] = float("inf")
    out = hg(x)  # unchecked (the hot path): finite features for the bad rows
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"x has a non-finite value \(first bad row: x\[6\]"):
        hg(x, check=True)
    with pytest.raises(ValueError, match=r"first bad row: x\[6\]"):
        HashGrid(n_levels=2, log2_hashmap_size=8, check=True)(x)
    with pytest.raises(ValueError, match=r"first bad row: x\[1\]"):
        hash_grid_encode(x[7:], hg.params, hg.scales, check=True)


# --------------------------------------------------------------------------- 9. messages of the loaders
def test_loader_messages(env, tmp_path):
    from eyefast.data import Capture
    from eyefast.data.capture import CaptureError

    cap = tmp_path / "cap"
    shutil.copytree(env.cap, cap)
    img = cap / "image" / "00001.png"
    img.write_bytes(img.read_bytes()[:40])  # truncated
    with pytest.raises(CaptureError) as e:
        Capture(cap, split="all")
    assert str(img) in str(e.value) and "pip install" not in str(e.value)
    cap2 = tmp_path / "cap2"
    shutil.copytree(env.cap, cap2)
    meta = json.loads((cap2 / "transforms.json").read_text())
    meta["w"] = 1e6
    (cap2 / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(CaptureError, match="key 'w' .* must be an integer from 1 to 16384, got 1000000.0"):
        Capture(cap2, split="all")
