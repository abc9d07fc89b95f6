import math

import numpy as np
import pytest
import torch

from eyefast.scene import shading as S
from eyefast.reference.sh import sh_encode, sh_encode_deg4


def _unit(n, seed, hemisphere=True, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 3, generator=g, dtype=dtype)
    v = v / v.norm(dim=-1, keepdim=True)
    if hemisphere:
        v[:, 2] = v[:, 2].abs()
    return v


def test_specular_peak_at_normal_incidence_matches_closed_form():
    # l = v = n: D = 1/(pi a^2), G/(4 nl nv) = 1/4, F = F0  ->  f_s = F0 / (4 pi a^2)
    n = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    for spec, rough in ((0.5, 0.4), (1.0, 0.2), (0.2, 0.9)):
        f = S.ggx_specular(n, n, n, spec, rough)
        a = rough**2
        assert f.item() == pytest.approx(0.08 * spec / (4 * math.pi * a * a), rel=1e-10)
    # Burley at normal incidence: F_L = F_V = 0 -> albedo / pi
    alb = torch.tensor([[0.3, 0.5, 0.7]], dtype=torch.float64)
    assert torch.allclose(S.burley_diffuse(n, n, n, alb, 0.7), alb / math.pi)


def test_ggx_distribution_normalised():
    # integral over the hemisphere of D(h) (n.h) dw_h = 1  (uniform hemisphere sampling)
    h = _unit(400000, 1)
    nh = h[:, 2:3]
    for alpha in (0.3, 0.6, 1.0):
        D = S.ggx_distribution(nh, torch.full_like(nh, alpha))
        est = (D * nh).mean().item() * 2 * math.pi
        assert est == pytest.approx(1.0, abs=0.03), alpha


def test_directional_albedo_at_normal_incidence():
    # light along the normal: integral of f cos over view directions
    v = _unit(400000, 2)
    n = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(v)
    l = n
    cos = v[:, 2:3]
    ones = torch.ones(v.shape[0], 3, dtype=torch.float64)
    albs = []
    for rough in (0.0, 0.5, 1.0):
        fd = S.burley_diffuse(n, l, v, ones, rough)
        albs.append((fd * cos).mean().item() * 2 * math.pi)
    # Burley at normal incidence: Lambert (=1) give or take a few percent: the grazing
    # darkening wins when smooth, the retro-reflection wins when rough
    assert 0.95 < albs[0] < albs[1] < albs[2] < 1.06, albs
    fs = S.ggx_specular(n, l, v, 1.0, 0.7)
    spec_alb = (fs * cos).mean().item() * 2 * math.pi
    assert 0.045 < spec_alb < 0.075  # F0 = 0.08, Smith masking loses a little, Fresnel adds a little


def test_reciprocity():
    n = _unit(1000, 3, hemisphere=False)
    # random l, v in the upper hemisphere of each normal
    l, v = _unit(1000, 4, hemisphere=False), _unit(1000, 5, hemisphere=False)
    l = torch.where(((l * n).sum(-1, keepdim=True) < 0), -l, l)
    v = torch.where(((v * n).sum(-1, keepdim=True) < 0), -v, v)
    alb = torch.rand(1000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    r = torch.rand(1000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(7)) * 0.9 + 0.05
    s = torch.rand(1000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    assert torch.allclose(S.burley_diffuse(n, l, v, alb, r), S.burley_diffuse(n, v, l, alb, r), rtol=1e-12)
    assert torch.allclose(S.ggx_specular(n, l, v, s, r), S.ggx_specular(n, v, l, s, r), rtol=1e-10)
    # below the horizon: no light
    assert (S.ggx_specular(n, -l, v, s, r) == 0).all()
    assert (S.burley_diffuse(n, l, -v, alb, r) == 0).all()


def test_shade_colocated_values_and_falloff():
    p = torch.zeros(1, 3, dtype=torch.float64)
    n = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    alb = torch.full((1, 3), 0.5, dtype=torch.float64)
    out1 = S.shade_colocated(p, n, torch.tensor([0, 0, 1.0], dtype=torch.float64), alb, 0.5, 0.4, [1, 1, 1], 2.0)
    out2 = S.shade_colocated(p, n, torch.tensor([0, 0, 2.0], dtype=torch.float64), alb, 0.5, 0.4, [1, 1, 1], 2.0)
    assert torch.allclose(out1["diffuse"], alb / math.pi * 2.0)
    assert torch.allclose(out1["rgb"], 4 * out2["rgb"])  # 1/d^2
    assert torch.allclose(out1["rgb"], out1["diffuse"] + out1["specular"] + out1["ambient"])
    assert (out1["ambient"] == 0).all()
    sh = torch.zeros(9, 3, dtype=torch.float64)
    out3 = S.shade_colocated(p, n, torch.tensor([0, 0, 1.0], dtype=torch.float64), alb, 0.5, 0.4, [1, 1, 1], 2.0,
                             sh_coeffs=sh, beta=1.0, occlusion=0.5, sh_scale=2.0)
    assert torch.allclose(out3["ambient"], math.log(2.0) * 0.5 * alb * 2.0)  # softplus(0) = log 2


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    N = 6
    pts = (torch.rand(N, 3, generator=g, dtype=torch.float64) - 0.5) * 0.2
    nrm = torch.nn.functional.normalize(torch.tensor([[0.1, 0.2, 1.0]], dtype=torch.float64) +
                                        0.2 * torch.rand(N, 3, generator=g, dtype=torch.float64), dim=-1)
    cam = torch.tensor([0.05, -0.1, 2.0], dtype=torch.float64)
    alb = torch.rand(N, 3, generator=g, dtype=torch.float64)
    spec = torch.rand(N, 1, generator=g, dtype=torch.float64)
    rough = 0.2 + 0.6 * torch.rand(N, 1, generator=g, dtype=torch.float64)
    sh = 0.3 * torch.randn(9, 3, generator=g, dtype=torch.float64)
    scale = torch.tensor(1.3, dtype=torch.float64)
    inputs = [t.clone().requires_grad_(True) for t in (pts, nrm, alb, spec, rough, sh, scale)]

    def f(p, n, a, s, r, c, k):
        return S.shade_colocated(p, n, cam, a, s, r, [1.0, 0.9, 0.8], 3.0, light_scale=k, sh_coeffs=c,
                                 beta=5.0, occlusion=0.7, sh_scale=0.5)["rgb"]

    assert torch.autograd.gradcheck(f, inputs)


def test_sh_orthonormal_monte_carlo():
    d = _unit(400000, 11, hemisphere=False)
    Y = sh_encode_deg4(d)
    G = (Y.T @ Y) / d.shape[0] * 4 * math.pi
    assert torch.allclose(G, torch.eye(16, dtype=torch.float64), atol=0.03)
    Y9 = S.sh9_basis(d)
    assert torch.equal(Y9, Y[:, :9])


def _hand_sh16(x, y, z):
    # constants written out by hand (tcnn / instant-ngp degree-4 encoding)
    x2, y2, z2 = x * x, y * y, z * z
    return np.stack([
        np.full_like(x, 0.28209479177387814),
        -0.48860251190291987 * y,
        0.48860251190291987 * z,
        -0.48860251190291987 * x,
        1.0925484305920792 * x * y,
        -1.0925484305920792 * y * z,
        0.94617469575755997 * z2 - 0.31539156525251999,
        -1.0925484305920792 * x * z,
        0.54627421529603959 * x2 - 0.54627421529603959 * y2,
        0.59004358992664352 * y * (-3.0 * x2 + y2),
        2.8906114426405538 * x * y * z,
        0.45704579946446572 * y * (1.0 - 5.0 * z2),
        0.3731763325901154 * z * (5.0 * z2 - 3.0),
        0.45704579946446572 * x * (1.0 - 5.0 * z2),
        1.4453057213202769 * z * (x2 - y2),
        0.59004358992664352 * x * (-x2 + 3.0 * y2),
    ], -1)


def test_sh_deg4_matches_hand_written_constants_and_scipy():
    d = _unit(500, 12, hemisphere=False)
    Y = sh_encode_deg4(d).numpy()
    x, y, z = d.numpy().T
    assert np.allclose(Y, _hand_sh16(x, y, z), atol=1e-12)
    # independent: complex SH (Condon-Shortley phase) from scipy -> tcnn's real basis
    from scipy.special import sph_harm_y

    theta = np.arccos(np.clip(z, -1, 1))
    phi = np.arctan2(y, x)
    for l in range(4):
        for m in range(-l, l + 1):
            c = sph_harm_y(l, abs(m), theta, phi)
            ref = c.real if m == 0 else (math.sqrt(2) * (c.imag if m < 0 else c.real))
            assert np.allclose(Y[:, l * l + l + m], ref, atol=1e-10), (l, m)


def test_sh_encode_dtype_and_shape_errors():
    d32 = _unit(4, 0, dtype=torch.float32)
    assert sh_encode(d32, 2).shape == (4, 4) and sh_encode(d32).dtype == torch.float32
    with pytest.raises(ValueError):
        sh_encode(torch.zeros(4, 2))
    with pytest.raises(ValueError):
        sh_encode(d32, 5)
