"""refract: kernel vs reference, physics identities, edge cases, gradients, opcheck, bad input."""

import pytest
import torch

from eyefast import ops
from eyefast.reference import eye as ref
from conftest import rel_err


def rays(n, dtype, device, seed, per_ray_eta=True):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g, dtype=torch.float64) * (0.5 + torch.rand(n, 1, generator=g, dtype=torch.float64))
    nm = torch.randn(n, 3, generator=g, dtype=torch.float64)
    eta = (0.5 + torch.rand(n, generator=g, dtype=torch.float64)) if per_ray_eta else torch.tensor(1 / 1.376, dtype=torch.float64)
    cast = lambda t: t.to(dtype=dtype, device=device)  # noqa: E731
    return cast(d), cast(nm), cast(eta)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_ray_eta", [True, False])
def test_matches_reference(device, dtype, per_ray_eta):
    for seed in range(3):
        d, nm, eta = rays(4000, dtype, device, seed, per_ray_eta)
        out, refl, tir = ops.refract(d, nm, eta)
        eo, er, et = ref.refract(d.cpu(), nm.cpu(), eta.cpu())
        assert torch.equal(tir.cpu(), et)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert rel_err(out, eo) < tol and rel_err(refl, er) < tol
        eo64, er64, _ = ref.refract(d.double().cpu(), nm.double().cpu(), eta.double().cpu())
        assert rel_err(out, eo64) < tol and rel_err(refl, er64) < tol
        if per_ray_eta:
            assert tir.any() and (~tir).any()


def test_float_eta_and_physics():
    d, nm, _ = rays(3000, torch.float64, "cpu", 5)
    eta = 1.0 / 1.336
    out, refl, tir = ops.refract(d, nm, eta)
    assert not tir.any()  # entering a denser medium never reflects totally
    u = d / d.norm(dim=1, keepdim=True)
    m = nm / nm.norm(dim=1, keepdim=True)
    m = torch.where(((u * m).sum(1) > 0)[:, None], -m, m)  # facing the ray
    assert torch.allclose(out.norm(dim=1), torch.ones(3000, dtype=torch.float64))
    # Snell: sin(theta_t) = eta sin(theta_i), on the far side of the interface.
    sin_i = torch.cross(u, m, dim=1).norm(dim=1)
    sin_t = torch.cross(out, m, dim=1).norm(dim=1)
    assert torch.allclose(sin_t, eta * sin_i, atol=1e-12)
    assert ((out * m).sum(1) < 0).all()
    # out lies in the plane of the ray and the normal.
    plane = torch.cross(u, m, dim=1)
    assert (out * plane).sum(1).abs().max() < 1e-12
    assert ((refl >= 0) & (refl <= 1)).all()


def test_special_angles():
    n1, n2 = 1.0, 1.376
    eta = n1 / n2
    normal = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    # Normal incidence: R = ((n1 - n2) / (n1 + n2))^2, straight through.
    out, refl, tir = ops.refract(torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64), normal, eta)
    assert refl.item() == pytest.approx(((n1 - n2) / (n1 + n2)) ** 2, rel=1e-12)
    assert out[0].tolist() == pytest.approx([0.0, 0.0, -1.0]) and not tir.item()
    # eta = 1: no bending, no reflection.
    d = torch.randn(100, 3, dtype=torch.float64)
    nm = torch.randn(100, 3, dtype=torch.float64)
    out, refl, _ = ops.refract(d, nm, 1.0)
    assert torch.allclose(out, d / d.norm(dim=1, keepdim=True), atol=1e-12) and refl.abs().max() < 1e-12
    # Leaving the denser medium: exactly the critical angle, just below and just above it.
    eta_out = n2 / n1
    theta_c = torch.asin(torch.tensor(1.0 / eta_out, dtype=torch.float64))
    # (At theta_c itself sin^2_t rounds to 1 +- ulp, so either side is right there.)
    for dtheta, expect_tir in [(0.0, None), (-1e-6, False), (1e-6, True)]:
        th = theta_c + dtheta
        dd = torch.stack([torch.sin(th), torch.zeros(()), -torch.cos(th)])[None].double()
        out, refl, tir = ops.refract(dd, normal, eta_out)
        if expect_tir is not None:
            assert bool(tir.item()) == expect_tir
        assert refl.item() == pytest.approx(1.0, abs=2e-2)  # R -> 1 like sqrt(theta_c - theta)
        assert out.norm().item() == pytest.approx(1.0)
        if expect_tir:  # mirror direction
            assert out[0].tolist() == pytest.approx([dd[0, 0].item(), 0.0, -dd[0, 2].item()])
    # The normal may face either way: same result.
    a = ops.refract(d, nm, 0.7)
    b = ops.refract(d, -nm, 0.7)
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])


@pytest.mark.parametrize("per_ray_eta", [True, False])
def test_gradcheck(device, per_ray_eta):
    d, nm, eta = rays(30, torch.float64, device, 9, per_ray_eta)
    inputs = [t.clone().requires_grad_() for t in (d, nm, eta)]
    assert torch.autograd.gradcheck(lambda *x: ops.refract(*x)[0], inputs)
    assert torch.autograd.gradcheck(lambda *x: ops.refract(*x)[1], inputs)


def test_gradients_match_reference(device):
    d, nm, eta = rays(3000, torch.float64, device, 4)
    w0 = torch.randn(3000, 3, dtype=torch.float64, device=device)
    w1 = torch.randn(3000, dtype=torch.float64, device=device)

    def loss(fn, *x):
        out, refl, _ = fn(*x)
        return (out * w0.to(out.device)).sum() + (refl * w1.to(out.device)).sum()

    a = [t.clone().requires_grad_() for t in (d, nm, eta)]
    b = [t.detach().cpu().clone().requires_grad_() for t in (d, nm, eta)]
    for x, y in zip(torch.autograd.grad(loss(ops.refract, *a), a), torch.autograd.grad(loss(ref.refract, *b), b)):
        assert rel_err(x, y) < 1e-9


def test_opcheck(device):
    d, nm, eta = rays(64, torch.float64, device, 2)
    torch.library.opcheck(torch.ops.eyefast.refract.default, (d, nm.requires_grad_(), eta, True))
    d, nm, eta = rays(64, torch.float64, device, 2, per_ray_eta=False)
    torch.library.opcheck(torch.ops.eyefast.refract.default, (d.requires_grad_(), nm, eta.requires_grad_(), True))


def test_empty(device):
    z = torch.zeros(0, 3, device=device)
    out, refl, tir = ops.refract(z, z, 1.5)
    assert out.shape == (0, 3) and refl.shape == (0,) and tir.dtype == torch.bool


@pytest.mark.parametrize(
    "field,row,value,name",
    [
        (0, 4, 0.0, "dirs"),
        (1, 2, 0.0, "normals"),
        (0, 1, float("nan"), "dirs"),
        (1, 3, float("-inf"), "normals"),
        (2, 6, -1.0, "eta"),
        (2, 0, float("nan"), "eta"),
    ],
)
def test_bad_values_are_named(device, field, row, value, name):
    args = list(rays(10, torch.float32, device, 0))
    args[field] = args[field].clone()
    args[field][row] = value
    with pytest.raises(ValueError, match=rf"{name}\[{row}\]"):
        ops.refract(*args)
    ops.refract(*args, check=False)


def test_bad_arguments_are_named():
    d, nm, eta = rays(10, torch.float64, "cpu", 0)
    with pytest.raises(TypeError, match="normals"):
        ops.refract(d, nm.float(), eta)
    with pytest.raises(RuntimeError, match="normals"):
        ops.refract(d, nm[:5], eta)
    with pytest.raises(RuntimeError, match="eta"):
        ops.refract(d, nm, eta[:4])
    with pytest.raises(RuntimeError, match="dirs"):
        ops.refract(d[:, :2], nm[:, :2], eta)
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.refract(d.t().contiguous().t(), nm, eta)
    with pytest.raises(TypeError, match="eta"):
        ops.refract(d, nm, eta.float())
    with pytest.raises(ValueError, match="eta"):
        ops.refract(d, nm, 0.0)
