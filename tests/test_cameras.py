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


def test_camera_stop_freezes_the_corrections(tiny, tmp_path):
    """``train.camera_stop``: from that step on the corrections' learning rate is 0 and they stay as they
    were, while the model goes on training."""
    from eyefast.training.optim import lr_factor

    cfg = tiny_cfg(tiny, tmp_path, "train.camera_refine=true", "train.camera_warmup=2", "train.max_steps=7",
                   "train.camera_stop=4")
    assert [lr_factor(cfg.train, s, "camera") for s in (1, 3, 4, 6)] == [0.5, 1.0, 0.0, 0.0]
    assert lr_factor(cfg.train, 6, "main") > 0
    tr = Trainer(cfg, quiet=True)
    seen = {}
    tr.fit(callback=lambda t: seen.update({t.step: (t.model.cameras.delta.detach().clone(),
                                                    t.model.sdf.state_dict()[next(iter(t.model.sdf.state_dict()))].clone())}))
    assert not torch.equal(seen[2][0], seen[4][0])  # trained before the stop (steps 3 and 4 used rate 1)
    assert torch.equal(seen[5][0], seen[7][0])  # frozen after it
    assert not torch.equal(seen[5][1], seen[7][1])  # the model still trains


def _pair_perturbation(n: int, deg: float, frac: float, dist: float, seed: int) -> torch.Tensor:
    """``[n, 4, 4]`` camera-frame perturbations: rotations of ``deg`` degrees about random axes and moves of
    ``frac * dist``, in pairs ``(w, t), (-w, -t)`` so that they have zero mean, as the corrections do."""
    g = torch.Generator().manual_seed(seed)
    half = (n + 1) // 2
    axis = torch.nn.functional.normalize(torch.randn(half, 3, generator=g, dtype=torch.float64), dim=-1)
    move = torch.nn.functional.normalize(torch.randn(half, 3, generator=g, dtype=torch.float64), dim=-1)
    w = torch.cat([axis, -axis])[:n] * np.radians(deg)
    t = torch.cat([move, -move])[:n] * frac * dist
    D = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    D[:, :3, :3] = rotation_matrix(w)
    D[:, :3, 3] = t
    return D


def _view_errors(a: torch.Tensor, b: torch.Tensor, points: torch.Tensor) -> np.ndarray:
    """Per camera, the largest angle (degrees) between where cameras ``a`` and ``b`` [F, 4, 4] see
    ``points`` [P, 3]: how far apart the points land in their images."""
    da = torch.einsum("fji,fpj->fpi", a[:, :3, :3], points[None] - a[:, None, :3, 3])
    db = torch.einsum("fji,fpj->fpi", b[:, :3, :3], points[None] - b[:, None, :3, 3])
    cos = torch.nn.functional.cosine_similarity(da, db, dim=-1).clamp(-1.0, 1.0)
    return np.degrees(np.arccos(cos.numpy())).max(-1)


def _rotation_errors(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    cos = ((a[:, :3, :3] * b[:, :3, :3]).sum((1, 2)) - 1.0) / 2.0
    return np.degrees(np.arccos(cos.clamp(-1.0, 1.0).numpy()))


@pytest.mark.slow
def test_refinement_moves_perturbed_cameras_towards_the_truth(tiny, tmp_path):
    """A scene is trained on the tiny capture's true cameras (corrections frozen); its renders at those
    cameras replace the training images, so that the cameras are the only error left; all training
    cameras but one are then perturbed (0.3 degree, 0.5% of their distance, in zero-mean pairs) and only
    the corrections are trained.

    Where the head lands in the images (the view error of the eye landmarks) must become at least 4x
    better (measured: 0.57 -> 0.02 degree), the rotation error must fall by at least a third (measured:
    0.30 -> 0.17 degree, 45%: at this field of view turning a camera by 0.3 degree and sliding it by
    0.5% of its distance move the head in the image alike, so the images pin the rotation and the
    translation together more tightly than either alone), and the unperturbed camera must stay put."""
    from eyefast.scene.render import render_view

    cfg = tiny_cfg(tiny, tmp_path, "train.camera_refine=true", "train.camera_warmup=0", "train.eye_grad_clip=0",
                   "train.max_steps=400", "train.milestones=[260,320]", "train.camera_lr=5e-4",
                   "loss.w_abdmm=0", "loss.w_abdmm_refine=0")
    torch.manual_seed(0)
    tr = Trainer(cfg, quiet=True)
    delta = tr.model.cameras.delta
    delta.requires_grad_(False)
    for _ in range(150):
        tr.train_step()
    true = tr.train_cap
    n = int(true.n_frames)
    k = (n - 1) // 2 * 2  # perturbed in pairs; at least one camera stays
    moved = torch.arange(n) < k
    dist = float(true.c2w64[:, :3, 3].norm(dim=-1).median())
    D = _pair_perturbation(k, 0.3, 0.005, dist, seed=1)
    c2w = true.c2w64.clone()
    c2w[moved] = c2w[moved] @ D
    cap = true.with_cameras(c2w)
    images, masks = true.images.clone(), {k: v.clone() for k, v in true.masks.items()}
    with torch.no_grad():
        for i in range(n):
            o = render_view(tr.model, tr.grid, tr.ops, cfg, true, i)
            images[i] = (o["rgb"].clamp(0, 1) ** (1.0 / true.gamma) * 255 + 0.5).to(torch.uint8)
            for kind, v in (("mask", o["opacity"]), ("leye_mask", o["obj_opacity"][..., 1]),
                            ("reye_mask", o["obj_opacity"][..., 2])):
                masks[kind][i] = (v.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    cap.images, cap.masks = images, masks
    tr.train_cap = cap
    for p in tr.model.parameters():  # the corrections alone learn
        p.requires_grad_(p is delta)
    delta.requires_grad_(True)
    cfg.renderer.sample_batch_size, cfg.renderer.max_num_ray = 65536, 4096  # less noisy camera gradients
    d = cfg.data
    points = torch.tensor([*d.left_eye_ldm, *d.right_eye_ldm, d.eyeball_left_center, d.eyeball_right_center],
                          dtype=torch.float64)
    start, start_v = _rotation_errors(cap.c2w64, true.c2w64), _view_errors(cap.c2w64, true.c2w64, points)
    for _ in range(200):
        tr.train_step()
    refined = tr.model.cameras.refine(cap.c2w64, cap.frame_ids)
    err, err_v = _rotation_errors(refined, true.c2w64), _view_errors(refined, true.c2w64, points)
    print(f"{n} cameras; rotation error (deg): perturbed {np.median(start[:k]):.3f} -> {np.median(err[:k]):.3f} "
          f"(max {err[:k].max():.3f}), unperturbed {err[k:].max():.3f}; view error (deg): perturbed "
          f"{np.median(start_v[:k]):.3f} -> {np.median(err_v[:k]):.3f}, unperturbed {err_v[k:].max():.3f}")
    assert np.median(err_v[:k]) <= 0.25 * np.median(start_v[:k])
    assert np.median(err[:k]) <= (2 / 3) * np.median(start[:k])
    assert err_v[k:].max() <= 0.05 and err[k:].max() <= 0.1
