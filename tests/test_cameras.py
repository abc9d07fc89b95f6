"""Camera refinement (train.camera_refine): the corrections' geometry, where they apply, and that they
survive checkpoints, reach the export and evaluation, and move perturbed cameras towards the truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_cfg

from eyefast.checkpoint import load_checkpoint
from eyefast.data.capture import Capture, nerf_to_cora
from eyefast.scene.cameras import CameraCorrections, rotation_matrix
from eyefast.training import Trainer


def test_rotation_matrix_is_rodrigues():
    w = torch.randn(50, 3, dtype=torch.float64)
    R = rotation_matrix(w)
    eye = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye)  # orthonormal
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(50, dtype=torch.float64))
    axis = w / w.norm(dim=-1, keepdim=True)
    torch.testing.assert_close((R @ axis[:, :, None])[:, :, 0], axis)  # the axis stays
    c = (R.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2  # the angle is |w|: cos(angle) = cos|w|
    torch.testing.assert_close(c, torch.cos(w.norm(dim=-1)))
    torch.testing.assert_close(rotation_matrix(torch.zeros(2, 3)), torch.eye(3).expand(2, 3, 3))
    x = torch.full((1, 3), 1e-6, dtype=torch.float64, requires_grad=True)  # small angles: finite gradients
    rotation_matrix(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_corrected_rays_are_the_rays_of_the_corrected_cameras(tiny):
    cap = Capture(tiny, "train")
    cams = CameraCorrections(20)
    cams.trained[cap.frame_ids] = True
    with torch.no_grad():
        cams.delta.copy_(torch.randn(20, 6) * 0.02)
    moved = cap.with_cameras(cams.refine(cap.c2w64, cap.frame_ids))
    f = torch.randint(0, cap.n_frames, (300,))
    xy = torch.stack([torch.randint(0, cap.W, (300,)), torch.randint(0, cap.H, (300,))], -1)
    o, d = cap.rays(f, xy)
    o2, d2 = cams.correct_rays(o, d, cap.frame_ids[f], cap.c2w[f, :3, :3])
    want_o, want_d = moved.rays(f, xy)
    torch.testing.assert_close(o2, want_o, atol=1e-5, rtol=0)
    torch.testing.assert_close(d2, want_d, atol=1e-5, rtol=0)
    # zero mean over the trained frames; the other frames are not moved
    e = cams.effective()
    torch.testing.assert_close(e[cap.frame_ids].mean(0), torch.zeros(6), atol=1e-7, rtol=0)
    others = torch.ones(20, dtype=torch.bool)
    others[cap.frame_ids] = False
    assert (e[others] == 0).all()


def test_refinement_is_saved_resumed_written_and_used_by_the_run(tiny, tmp_path):
    cfg = tiny_cfg(tiny, tmp_path, "train.camera_refine=true", "train.camera_warmup=2", "train.max_steps=8")
    tr = Trainer(cfg, quiet=True)
    assert [g["name"] for g in tr.optimizer.param_groups] == ["main", "camera"]
    tr.fit()
    delta = tr.model.cameras.delta.detach().clone()
    assert delta.abs().max() > 0  # the corrections trained
    run = tmp_path / cfg.name
    ck = load_checkpoint(str(run / "latest.pth"))
    assert torch.equal(ck["model"]["cameras.delta"], delta)
    # transforms_refined.json: the training frames moved, the validation frames as they were
    with open(run / "transforms_refined.json") as fh:
        refined = sorted(json.load(fh)["frames"], key=lambda fr: fr["file_path"])
    with open(f"{tiny}/transforms.json") as fh:
        orig = sorted(json.load(fh)["frames"], key=lambda fr: fr["file_path"])
    moved = [not np.allclose(a["transform_matrix"], b["transform_matrix"]) for a, b in zip(refined, orig)]
    assert moved[0] is False and all(moved[1:])  # frame 0 is a validation frame
    want = tr.model.cameras.refine(tr.train_cap.c2w64, tr.train_cap.frame_ids).numpy()
    got = nerf_to_cora(np.asarray([fr["transform_matrix"] for i, fr in enumerate(refined) if i % 10]))
    np.testing.assert_allclose(got, want, atol=1e-6)
    # the run (export, evaluation) sees the refined training cameras
    from eyefast.run import Run

    r = Run.load(str(run))
    torch.testing.assert_close(r.capture("train").c2w, torch.as_tensor(want, dtype=torch.float32))
    # --resume continues with them
    tr2 = Trainer(cfg, quiet=True)
    tr2.load(str(run / "latest.pth"))
    assert torch.equal(tr2.model.cameras.delta.detach(), delta)
    # the learning rate warms up from 0
    assert tr2.scheduler.get_last_lr()[1] == pytest.approx(cfg.train.camera_lr)
    fresh = Trainer(cfg, quiet=True)
    assert fresh.optimizer.param_groups[1]["lr"] == 0.0
