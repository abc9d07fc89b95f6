"""The training driver on the `tiny` synthetic capture (a few seconds each)."""

from __future__ import annotations

import contextlib
import json
import os
import signal

import numpy as np
import pytest
from conftest import tiny_cfg
import torch

from eyefast.data import config as config_mod
from eyefast.checkpoint import load_checkpoint
from eyefast.cli.train import main as train_main
from eyefast.training import Trainer



_cfg = tiny_cfg


@contextlib.contextmanager
def _threads(n):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def steps_of(rows, tag):
    """The steps at which scalars.csv logged ``tag``."""
    return [int(r.split(",")[0]) for r in rows if r.split(",")[1:2] == [tag]]


def _params(tr):
    return {k: v.detach().clone() for k, v in tr.model.state_dict().items()}


def test_short_run_lowers_the_loss(tiny, tmp_path):
    tr = Trainer(_cfg(tiny, tmp_path), quiet=True)
    losses = [tr.train_step()["loss"] for _ in range(40)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


def test_resume_equals_uninterrupted_run(tiny, tmp_path):
    with _threads(1):  # one thread: the CPU kernels' float sums are then in a fixed order
        # a grid refresh every 2 steps: the resumed part uses the restored global RNG too
        a = Trainer(_cfg(tiny, tmp_path / "a", "renderer.grid_update_freq=2"), quiet=True)
        for _ in range(8):
            a.train_step()
        b = Trainer(_cfg(tiny, tmp_path / "b", "renderer.grid_update_freq=2"), quiet=True)
        for _ in range(4):
            b.train_step()
        ck = str(tmp_path / "mid.pth")
        b.save(ck)
        # a fresh process would start from other RNG states: disturb them
        torch.manual_seed(1234)
        c = Trainer(_cfg(tiny, tmp_path / "c", "train.seed=7", "renderer.grid_update_freq=2"), quiet=True)
        c.load(ck)
        assert c.step == 4
        for _ in range(4):
            c.train_step()
    pa, pc = _params(a), _params(c)
    assert pa.keys() == pc.keys()
    for k in pa:
        torch.testing.assert_close(pc[k], pa[k], rtol=1e-5, atol=1e-6, msg=lambda m: f"{k}: {m}")
    torch.testing.assert_close(c.grid.occs, a.grid.occs)
    assert c.n_rays == a.n_rays


def test_checkpoint_is_atomic_and_weights_only(tiny, tmp_path):
    tr = Trainer(_cfg(tiny, tmp_path), quiet=True)
    tr.train_step()
    path = tmp_path / "x" / "latest.pth"
    tr.save(str(path))
    assert sorted(os.listdir(path.parent)) == ["latest.pth"]  # no temporary file left
    ck = torch.load(path, weights_only=True)
    for k in ("step", "model", "grid", "optimizer", "scheduler", "rng", "metrics", "config"):
        assert k in ck
    assert ck["step"] == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        load_checkpoint(str(bad))


def test_parity_eyefast_vs_reference_backend(tiny, tmp_path):
    runs = {}
    with _threads(1):
        for be in ("eyefast", "reference"):
            tr = Trainer(_cfg(tiny, tmp_path / be, f"ops_backend={be}"), quiet=True)
            runs[be] = (tr, [tr.train_step() for _ in range(3)])
    (ta, ra), (tb, rb) = runs["eyefast"], runs["reference"]
    for x, y in zip(ra, rb):
        assert x["n_samples"] == y["n_samples"]
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4)
    # Adam divides by sqrt(v): where a gradient is ~0, float32 rounding differences between the
    # kernels and the reference become full-size (lr) steps of either sign. Those are rare; every
    # other entry must agree.
    pa, pb = _params(ta), _params(tb)
    for k in pa:
        bad = ~torch.isclose(pa[k], pb[k], rtol=1e-3, atol=1e-5)
        assert bad.float().mean() < 1e-4, f"{k}: {int(bad.sum())} of {bad.numel()} entries differ"


def test_ignore_eyeball_trains_without_eyes(tiny, tmp_path):
    tr = Trainer(_cfg(tiny, tmp_path, "data.ignore_eyeball=true"), quiet=True)
    res = [tr.train_step() for _ in range(3)]
    assert "loss_sdf_mask" not in res[-1] and "loss_ldm" not in res[-1]
    assert np.isfinite(res[-1]["loss"])
    assert tr.model.eye_centers.grad is None  # the eyes take no part
    r = tr.render_view(tr.val_cap, 0)
    assert r["obj_opacity"].shape[-1] == 1


def test_fit_writes_the_workspace_and_ctrl_c_saves(tiny, tmp_path):
    cfg = config_mod.load(os.path.join(tiny, "config.yaml"),
                          ["device=cpu", f"workspace={tmp_path}", "train.max_steps=6", "train.val_freq=3",
                           "train.vis_freq=3", "train.save_freq=3"])
    tr = Trainer(cfg, quiet=True)
    norms = []
    orig_step = tr.step_async

    def step_and_record():
        r = orig_step()
        norms.append(float(r["grad_norm"]))
        return r

    tr.step_async = step_and_record
    m = tr.fit()
    del tr.step_async
    run = tmp_path / cfg.name
    assert {"val/psnr", "val/ssim", "loss"} <= set(m)
    for f in ("config.yaml", "latest.pth", "scalars.csv", "val.json", "vis/step_000003.png",
              "vis/step_000006.png", "checkpoints/step_000003.pth", "checkpoints/step_000006.pth"):
        assert (run / f).is_file(), f
    rows = (run / "scalars.csv").read_text().splitlines()
    assert rows[0] == "step,tag,value" and any(",val/psnr," in r for r in rows)
    gn = [float(r.split(",")[2]) for r in rows if ",train/grad_norm," in r]
    gmax = [float(r.split(",")[2]) for r in rows if ",train/grad_norm_max," in r]
    # the scalars are read (and logged) at steps 3 and 6 (validation, previews, checkpoints), not at 1, 2, 4, 5
    assert len(norms) == 6 and len(gn) == len(gmax) == 2
    assert steps_of(rows, "train/loss") == [3, 6]
    assert gn == pytest.approx([norms[2], norms[5]], rel=1e-6)
    assert gmax == pytest.approx([max(norms[:3]), max(norms[3:])], rel=1e-6)
    assert load_checkpoint(str(run / "latest.pth"))["metrics"]["loss"] == pytest.approx(m["loss"])
    # Ctrl-C during step 8: the step finishes, latest.pth is saved, fit returns
    orig = tr.step_async

    def step_and_interrupt():
        r = orig()
        if tr.step == 8:
            os.kill(os.getpid(), signal.SIGINT)
        return r

    tr.step_async = step_and_interrupt
    tr.fit(max_steps=20)
    assert tr.step == 8
    assert load_checkpoint(str(run / "latest.pth"))["step"] == 8


def test_cli_and_seed_spelling(tiny, tmp_path, capsys):
    cfgp = os.path.join(tiny, "config.yaml")
    common = ["--device", "cpu", "--workspace", str(tmp_path), "--quiet", "--set", "train.val_freq=0",
              "--set", "train.vis_freq=0"]
    assert train_main([cfgp, "--max-steps", "2", *common]) == 0
    run = tmp_path / "synth_tiny"
    assert load_checkpoint(str(run / "latest.pth"))["step"] == 2
    # CoRA spelling, resuming from the checkpoint
    assert train_main(["--config_path", cfgp, "--ckpt_path", str(run / "latest.pth"), "--max-steps", "3",
                       "--chunk_size", "1024", *common]) == 0
    assert load_checkpoint(str(run / "latest.pth"))["step"] == 3


def test_broken_config_gives_clear_errors(tiny, tmp_path, capsys):
    cfgp = os.path.join(tiny, "config.yaml")
    assert train_main([cfgp, "--device", "cpu", "--set", "train.max_step=3"]) == 2
    err = capsys.readouterr().err
    assert "max_step" in err and "max_steps" in err  # names the bad key and lists the known ones
    assert train_main([cfgp, "--device", "tpu"]) == 2
    assert "--device" in capsys.readouterr().err
    assert train_main([cfgp, "--device", "cpu", "--set", "data.meta_path=/nonexistent/capture"]) == 2
    assert "/nonexistent/capture" in capsys.readouterr().err
    assert train_main([cfgp, "--device", "cpu", "--resume", str(tmp_path / "nope.pth")]) == 2
    assert "nope.pth" in capsys.readouterr().err


def test_evaluate_reports_the_metrics(tiny, tmp_path):
    from eyefast.cli.evaluate import main as eval_main

    cfg = _cfg(tiny, tmp_path, "train.max_steps=3")
    tr = Trainer(cfg, quiet=True)
    tr.fit()
    out = tmp_path / "eval.json"
    assert eval_main(["--workspace", str(tmp_path / cfg.name), "--device", "cpu", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for k in ("psnr", "ssim", "psnr_eye", "eye_center_error", "eye_radius", "eye_radius_error", "surface_error"):
        assert k in res
    assert res["step"] == 3 and np.isfinite(res["psnr"]) and res["eye_center_error"] >= 0
    from eyefast.evaluation.metrics import eye_errors

    centers = load_checkpoint(str(tmp_path / cfg.name / "latest.pth"))["model"]["eye_centers"]
    gt = os.path.join(tiny, "gt", "eyes.json")
    e = eye_errors(centers, 0.05, gt)
    with open(gt) as fh:
        r_true = json.load(fh)["left"]["radius"]
    assert res["eye_center_error_max_rel"] == pytest.approx(max(e["center_left"], e["center_right"]) / r_true, rel=1e-5)


def test_stage2_trains_only_the_material_on_the_mesh(tiny, tmp_path):
    cfg = _cfg(tiny, tmp_path, "train.mesh_render=true", "train.mesh_render_iter=30", "train.mesh_resolution=48",
               "train.max_steps=34")
    tr = Trainer(cfg, quiet=True)
    for _ in range(30):
        tr.train_step()
    frozen = {k: v.detach().clone() for k, v in tr.model.named_parameters() if not k.startswith("material.")}
    mat = {k: v.detach().clone() for k, v in tr.model.named_parameters() if k.startswith("material.")}
    res = tr.train_step()
    assert res["stage"] == 2 and np.isfinite(res["loss"]) and tr.stage2 is not None
    assert tr.stage2.faces.shape[1] == 3 and tr.stage2.faces.shape[0] > 0
    for k, v in tr.model.named_parameters():
        if k in frozen:
            assert torch.equal(v, frozen[k]), f"{k} changed in stage 2"
    assert any(not torch.equal(v, mat[k]) for k, v in tr.model.named_parameters() if k in mat)
    # resume inside stage 2 equals going on: the mesh comes back from the checkpoint
    ck = str(tmp_path / "s2.pth")
    tr.save(ck)
    tr2 = Trainer(cfg, quiet=True)
    tr2.load(ck)
    assert tr2.stage2 is not None and torch.equal(tr2.stage2.faces, tr.stage2.faces)
    with _threads(1):
        r1, r2 = tr.train_step(), tr2.train_step()
    assert r2["stage"] == 2 and r1["loss"] == pytest.approx(r2["loss"], rel=1e-5)
    # evaluate/export load the weights alone: no optimiser, no capture, no stage-2 set-up
    from eyefast.run import Run

    cfg_path = str(tmp_path / "s2.yaml")
    config_mod.save(cfg, cfg_path)
    r = Run.load(config=cfg_path, ckpt=ck)
    assert r.step == 31 and not r._captures and not hasattr(r, "optimizer")
    saved = load_checkpoint(ck)["model"]
    for k, v in r.model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_resume_rejects_a_different_model_config(tiny, tmp_path):
    tr = Trainer(_cfg(tiny, tmp_path), quiet=True)
    tr.train_step()
    ck = str(tmp_path / "a.pth")
    tr.save(ck)
    other = Trainer(_cfg(tiny, tmp_path, "data.bound=1.5"), quiet=True)
    with pytest.raises(ValueError, match="data.bound"):
        other.load(ck)
    lr = Trainer(_cfg(tiny, tmp_path, "train.lr=0.005", "renderer.max_num_ray=128"), quiet=True)
    lr.load(ck)
    assert lr.scheduler.base_lrs == [0.005] * len(lr.scheduler.base_lrs)
    assert lr.n_rays <= 128


def test_render_modes_and_volsdf_density(tiny, tmp_path):
    from eyefast.scene.model import volsdf_density
    from eyefast.scene.render import render_rays

    beta = torch.tensor(0.05, dtype=torch.float64)
    sdf = torch.linspace(-0.3, 0.3, 61, dtype=torch.float64)
    lap_cdf = torch.where(-sdf <= 0, 0.5 * torch.exp(-sdf / beta), 1 - 0.5 * torch.exp(sdf / beta))
    torch.testing.assert_close(volsdf_density(sdf, beta), lap_cdf / beta)
    tr = Trainer(_cfg(tiny, tmp_path), quiet=True)
    for _ in range(20):
        tr.train_step()
    b = tr.train_cap.sample_batch(256, torch.Generator().manual_seed(3))
    fids = tr.train_cap.frame_ids[b["frame_idx"]]
    outs = {}
    for mode in ("surface", "sample"):
        outs[mode] = render_rays(tr.model, tr.grid, tr.ops, b["rays_o"], b["rays_d"], fids, tr.light,
                                 step=tr.step_size, train=True, shading=mode, with_extras=True)
        o = outs[mode]
        assert o["rgb"].shape == (256, 3) and o["obj_opacity"].shape == (256, 3)
        assert torch.isfinite(o["rgb"]).all() and (o["opacity"] <= 1 + 1e-5).all()
        o["rgb"].sum().backward()  # differentiable in both modes
    torch.testing.assert_close(outs["surface"]["opacity"], outs["sample"]["opacity"])
    # the per-object opacities add up to at least the scene opacity where objects do not overlap
    assert (outs["surface"]["obj_opacity"].sum(-1) + 1e-5 >= outs["surface"]["opacity"]).all()
    # rays that miss everything: zero samples, zero output, still a graph for the loss
    o = render_rays(tr.model, tr.grid, tr.ops, torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[0.0, 0.0, 1.0]]),
                    fids[:1], tr.light, step=tr.step_size, train=True)
    assert o["n_samples"] == 0 and float(o["rgb"].abs().sum()) == 0.0


def test_non_finite_gradient_is_named(tiny, tmp_path):
    """A step whose loss or gradients are not finite changes no weight; the next read of the scalars
    raises, naming the step and the parameters. Huge finite gradients are not errors."""
    tr = Trainer(_cfg(tiny, tmp_path), quiet=True)
    assert np.isfinite(tr.train_step()["loss"])  # a real step's gradients pass
    p = tr.model.light_scale
    w0 = p.detach().clone()
    tr._optimize(p * 1e19, clip_eyes=False)  # huge but finite (Adam squares it: 1e38 still fits float32)
    tr._read({})
    w1 = p.detach().clone()
    assert not torch.equal(w1, w0)  # a good step moves the weight
    tr._optimize(torch.sqrt((p - p.detach()).abs()), clip_eyes=False)  # loss 0, gradient NaN
    assert torch.equal(p.detach(), w1)  # the bad step does not
    assert float(tr.optimizer.state[p]["step"]) == 2  # nor does it count in Adam's step
    with pytest.raises(FloatingPointError, match="step 1: non-finite gradients in light_scale"):
        tr._read({})
    tr2 = Trainer(_cfg(tiny, tmp_path / "b"), quiet=True)
    tr2.train_step()
    w = tr2.model.light_scale.detach().clone()
    tr2._optimize(tr2.model.light_scale * float("inf"), clip_eyes=False)
    assert torch.equal(tr2.model.light_scale.detach(), w)
    with pytest.raises(FloatingPointError, match="step 1: the loss is not finite"):
        tr2._read({})


def test_eye_gradient_spike_is_clipped_to_its_running_rms(tiny, tmp_path, monkeypatch):
    from eyefast.training import optim, trainer as trainer_mod

    tr = Trainer(_cfg(tiny, tmp_path), quiet=True)
    calls = []
    monkeypatch.setattr(trainer_mod, "clip_eye_grads",
                        lambda *a: (calls.append(tr.step), optim.clip_eye_grads(*a)))
    for _ in range(3):  # Adam's second moment of the eye parameters exists after a step
        tr.train_step()
    assert calls == [0, 1, 2]  # every stage-1 step clips
    monkeypatch.undo()
    m, k = tr.model, tr.cfg.train.eye_grad_clip

    def clip():
        optim.clip_eye_grads(m, tr.optimizer, float(tr.cfg.train.eye_grad_clip))

    assert k == 3.0
    st = tr.optimizer.state[m.eye_centers]
    beta2 = tr.optimizer.param_groups[0]["betas"][1]
    rms = (st["exp_avg_sq"] / (1 - beta2 ** float(st["step"]))).sum(-1).sqrt()  # per eye
    rms_s = float((tr.optimizer.state[m.eye_s]["exp_avg_sq"] / (1 - beta2 ** float(st["step"]))).sqrt())
    spike = torch.tensor([[3.0, -4.0, 12.0], [0.0, 0.0, 0.0]]) * 1e4  # left eye: a glint-like spike
    spike[1] = 0.5 * k * rms[1] * torch.tensor([0.6, 0.0, -0.8])  # right eye: an ordinary gradient
    m.eye_centers.grad = spike.clone()
    m.eye_s.grad = torch.tensor(-1e6)
    clip()
    g = m.eye_centers.grad
    torch.testing.assert_close(g[0].norm(), k * rms[0], rtol=1e-5, atol=0)  # bounded, direction kept
    torch.testing.assert_close(g[0] / g[0].norm(), spike[0] / spike[0].norm())
    assert torch.equal(g[1], spike[1])  # within the bound: untouched
    assert float(m.eye_s.grad) == pytest.approx(-k * rms_s, rel=1e-5)
    # a huge finite float32 gradient is clipped too (its norm does not overflow to a zero scale)
    m.eye_centers.grad = torch.full((2, 3), 3e38)
    clip()
    torch.testing.assert_close(m.eye_centers.grad.norm(dim=-1), k * rms, rtol=1e-5, atol=0)
    # a row with no second moment yet (all its gradients were 0) is not clipped to 0
    st["exp_avg_sq"][1] = 0.0
    m.eye_centers.grad = spike.clone()
    clip()
    assert torch.equal(m.eye_centers.grad[1], spike[1])
    # 0 turns it off
    tr.cfg.train.eye_grad_clip = 0.0
    m.eye_centers.grad = spike.clone()
    clip()
    assert torch.equal(m.eye_centers.grad, spike)
    with pytest.raises(config_mod.ConfigError, match="train.eye_grad_clip"):
        _cfg(tiny, tmp_path, "train.eye_grad_clip=-1")


def test_demo_seeds_study_moves_the_initial_eye_centres(tiny):
    from benchmarks.demo_seeds import perturbed_centers

    cfg = config_mod.load(os.path.join(tiny, "config.yaml"))
    with open(os.path.join(tiny, "gt", "eyes.json")) as fh:
        r = json.load(fh)["left"]["radius"]
    sets = perturbed_centers(os.path.join(tiny, "config.yaml"), 3, 0.35)
    moved = config_mod.load(os.path.join(tiny, "config.yaml"), sets)
    offs = []
    for key in ("eyeball_left_center", "eyeball_right_center"):
        off = (np.asarray(getattr(moved.data, key)) - np.asarray(getattr(cfg.data, key))) * cfg.data.bound
        assert np.linalg.norm(off) == pytest.approx(0.35 * r, rel=1e-3)
        offs.append(off)
    assert not np.allclose(offs[0], offs[1])  # each eye its own direction
    assert perturbed_centers(os.path.join(tiny, "config.yaml"), 3, 0.35) == sets  # drawn from the seed
    assert perturbed_centers(os.path.join(tiny, "config.yaml"), 4, 0.35) != sets
