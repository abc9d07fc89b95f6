
import numpy as np
import pytest
import torch
import trimesh

from eyefast.evaluation import metrics as M


def _img(seed, shape=(32, 40, 3)):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish image: low-res noise upsampled
    small = torch.rand(1, shape[2], shape[0] // 4, shape[1] // 4, generator=g)
    return torch.nn.functional.interpolate(small, size=shape[:2], mode="bilinear", align_corners=False)[0].permute(1, 2, 0)


def test_psnr():
    a = _img(0)
    assert M.psnr(a, a) == M.PSNR_CAP == 100.0  # identical: capped, not inf
    b = (a + 0.1)
    assert M.psnr(b, a) == pytest.approx(20.0, abs=1e-5)
    # mask: error only outside the mask is ignored
    c = a.clone()
    c[:, :10] += 0.5
    m = torch.zeros(a.shape[:2])
    m[:, 10:] = 1
    assert M.psnr(c, a, m) == 100.0
    assert M.psnr(c, a) < 20
    with pytest.raises(ValueError):
        M.psnr(a, a[:5])
    with pytest.raises(ValueError):
        M.psnr(a, a, torch.zeros(a.shape[:2]))


def test_ssim():
    a = _img(1)
    assert M.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    g = torch.Generator().manual_seed(2)
    noisy = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    slight = (a + 0.02 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    s_noisy, s_slight = M.ssim(noisy, a), M.ssim(slight, a)
    assert s_noisy < s_slight < 1.0
    assert s_noisy < 0.7
    assert M.ssim(a, a)  == M.ssim(torch.stack([a, a]), torch.stack([a, a]))
    # brightness shift lowers the luminance term only a little
    assert 0.8 < M.ssim((a * 0.9), a) < 1.0
    with pytest.raises(ValueError):
        M.ssim(a[:8, :8], a[:8, :8])


def test_eye_errors(tmp_path):
    gt = {"left": {"center": [0.1, 0.0, 0.3], "radius": 0.05}, "right": {"center": [-0.1, 0.0, 0.3], "radius": 0.05}}
    p = tmp_path / "eyes.json"
    import json

    p.write_text(json.dumps(gt))
    e = M.eye_errors(torch.tensor([[0.1, 0.0, 0.33], [-0.1, 0.04, 0.3]]), 0.06, p)
    assert e["center_left"] == pytest.approx(0.03)
    assert e["center_right"] == pytest.approx(0.04)
    assert e["center_mean"] == pytest.approx(0.035)
    assert e["radius_left"] == pytest.approx(0.01) and e["radius_mean"] == pytest.approx(0.01)
    e2 = M.eye_errors({"left": [0.1, 0.0, 0.3], "right": [-0.1, 0.0, 0.3]}, {"left": 0.05, "right": 0.04}, gt)
    assert e2["center_mean"] == 0 and e2["radius_right"] == pytest.approx(0.01)


def test_surface_error_self_and_shifted_sphere(tmp_path):
    s = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    assert M.surface_error(s, s, 4000) < 1e-9
    shift = 0.03
    t = s.copy()
    t.apply_translation([shift, 0, 0])
    # expected value: mean over the sphere of | |p - shift e_x| - R |  (= shift/2 to first order)
    rng = np.random.default_rng(0)
    p = rng.normal(size=(400000, 3))
    p = 0.5 * p / np.linalg.norm(p, axis=1, keepdims=True)
    expect = np.abs(np.linalg.norm(p - [shift, 0, 0], axis=1) - 0.5).mean()
    got = M.surface_error(s, t, 4000)
    assert got == pytest.approx(expect, rel=0.05)
    assert got == pytest.approx(shift / 2, rel=0.1)
    # files and (verts, faces) inputs
    f = tmp_path / "a.obj"
    s.export(f)
    assert M.surface_error(str(f), (t.vertices, t.faces), 2000) == pytest.approx(expect, rel=0.06)
