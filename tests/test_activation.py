"""eyefast.nn.softplus / Softplus (torch.ops.eyefast.softplus and its derivatives) against
torch.nn.functional.softplus, its reference."""

import pytest
import torch
import torch.nn.functional as F

from eyefast.core.nn import Softplus, softplus
from conftest import DEVICES, OpCalls, rel_err


def _z(n, dtype=torch.float64, device="cpu", seed=0, scale=0.05):
    gen = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, generator=gen, dtype=torch.float64)
    # every regime of t = beta z at beta 100: deep negative (exp underflows), around 0, near and past
    # the threshold (20 -> z 0.2), and the special values
    special = torch.tensor([0.0, -0.0, 1e-9, -1e-9, 0.2, 0.19999, 0.20001, 0.5, -0.5, -0.9, -2.0, 3.0,
                            float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    return torch.cat([z, special]).to(dtype=dtype, device=device)


def _rel(a, b):
    """Max elementwise relative error where the reference is normal (> 1e-30); NaN/inf must match."""
    a, b = a.double().cpu(), b.double().cpu()
    fin = torch.isfinite(b)
    assert torch.equal(fin, torch.isfinite(a)), "finite/non-finite pattern differs"
    assert torch.equal(a[~fin].nan_to_num(0.0, 1.0, -1.0), b[~fin].nan_to_num(0.0, 1.0, -1.0))
    m = fin & (b.abs() > 1e-30)
    return float(((a[m] - b[m]).abs() / b[m].abs()).max())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("beta,threshold", [(100.0, 20.0), (1.0, 20.0), (3.0, 5.0)])
def test_forward_matches_torch(device, beta, threshold):
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-13)):
        z = _z(50001, dtype, device, scale=0.05 * 100.0 / beta)
        # The float64 truth at the input dtype's t = beta z (as torch rounds it): that rounding alone is
        # amplified |t| times by exp (torch's float32 softplus is 5e-6 off the exact value at t = -87).
        zc = z.cpu()
        t = (zc * beta).double()
        ref = torch.where(t > threshold, zc.double(), F.softplus(t, 1.0, float("inf")) / beta)
        out = softplus(z, beta, threshold)
        assert out.dtype == dtype and out.shape == z.shape
        assert _rel(out, ref) < tol
        # |values| below float32's normal range (deep negative t): no larger than the smallest normal
        tiny = ref.abs() <= 1e-30
        assert (out.double().cpu()[tiny].abs() <= 1.2e-38).all()


@pytest.mark.parametrize("device", DEVICES)
def test_derivatives_match_torch(device):
    # first and second derivatives (the eikonal pattern: grad with create_graph, then a loss on it)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        z = _z(20001, dtype, device, seed=1)[:-3]  # finite inputs
        gen = torch.Generator().manual_seed(2)
        w = torch.randn(z.shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        v = torch.randn(z.shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)

        def run(fn, z, dt):
            z = z.to(dt).detach().requires_grad_(True)
            (g,) = torch.autograd.grad((fn(z) * w.to(dt)).sum(), z, create_graph=True)
            (gg,) = torch.autograd.grad((g * v.to(dt)).sum() + (g ** 2).sum(), z)
            return g.detach(), gg

        g, gg = run(lambda t: softplus(t, 100.0), z, dtype)
        g_ref, gg_ref = run(lambda t: F.softplus(t, 100.0), z.cpu(), torch.float64)
        # norm-wise (conftest.rel_err): elementwise, (v + 2 g) cancels in places
        assert rel_err(g, g_ref) < tol
        assert rel_err(gg, gg_ref) < tol


def test_gradcheck_gradgradcheck():
    for beta, threshold in ((100.0, 20.0), (1.0, 5.0)):
        z = _z(60, seed=3)[:-3] * (100.0 / beta)
        z = z[(z * beta - threshold).abs() > 1e-3]  # the threshold is a kink: finite differences stay off it
        z = z.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: softplus(t, beta, threshold), (z,), eps=1e-7 * 100.0 / beta)
        assert torch.autograd.gradgradcheck(lambda t: softplus(t, beta, threshold), (z,), eps=1e-7 * 100.0 / beta)


def test_opcheck():
    z = _z(40, seed=4)[:36].reshape(2, 3, 6).requires_grad_(True)
    g = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.eyefast.softplus, (z, 100.0, 20.0))
    torch.library.opcheck(torch.ops.eyefast.softplus_backward, (g, z, 100.0, 20.0))
    gg = torch.randn(2, 3, 6, dtype=torch.float64)
    for need in ((True, True), (True, False), (False, True)):
        torch.library.opcheck(torch.ops.eyefast.softplus_double_backward, (gg, g.detach(), z.detach(), 100.0, 20.0,
                                                                           *need))


def test_shapes_strides_and_module():
    z = _z(600, torch.float32, seed=5)[:600].reshape(20, 30)
    t = z.t()  # non-contiguous
    out = softplus(t, 100.0)
    assert out.shape == t.shape
    torch.testing.assert_close(out, F.softplus(t, 100.0), rtol=1e-6, atol=1e-30)
    assert softplus(torch.empty(0, 64), 100.0).shape == (0, 64)
    m = Softplus(beta=100)
    assert "beta=100.0" in repr(m)
    torch.testing.assert_close(m(z), F.softplus(z, 100.0), rtol=1e-6, atol=1e-30)


def test_backward_computes_only_what_the_pass_uses():
    z = _z(100, seed=6)[:-3].requires_grad_(True)
    lin = torch.nn.Linear(1, 1).double()
    h = lin(z[:, None])[:, 0]
    (g,) = torch.autograd.grad(softplus(h, 100.0).sum(), h, create_graph=True)
    loss = (g ** 2).sum()
    with OpCalls("softplus") as rec:
        loss.backward(inputs=[lin.weight])  # d/dgrad is not needed (the grad_output was a constant)
    assert rec.calls == [("softplus_double_backward", False, True)]
    assert lin.weight.grad is not None and z.grad is None


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="z must be float32 or float64"):
        softplus(torch.zeros(3, dtype=torch.int32), 1.0)
    with pytest.raises(ValueError, match="beta must be finite and > 0"):
        softplus(torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="beta must be finite and > 0"):
        softplus(torch.zeros(3), 1e-50)  # 0 in float32
    with pytest.raises(ValueError, match="z must have the shape of the first argument"):
        torch.ops.eyefast.softplus_backward(torch.zeros(3), torch.zeros(4), 1.0, 20.0)
    with pytest.raises(TypeError, match="z must have dtype"):
        torch.ops.eyefast.softplus_backward(torch.zeros(3), torch.zeros(3, dtype=torch.float64), 1.0, 20.0)


def test_third_order_raises_instead_of_silent_zero():
    z = _z(30, seed=8)[:-3].requires_grad_(True)
    (g,) = torch.autograd.grad(softplus(z, 100.0).sum(), z, create_graph=True)
    (gg,) = torch.autograd.grad((g ** 2).sum(), z, create_graph=True)
    with pytest.raises(RuntimeError, match="softplus_double_backward is not differentiable"):
        gg.sum().backward()


def test_nan_propagates_through_the_second_derivative():
    z = torch.tensor([float("nan"), 0.01, 0.5], dtype=torch.float64)
    one = torch.ones(3, dtype=torch.float64)
    _, g_z = torch.ops.eyefast.softplus_double_backward(one, one, z, 100.0, 20.0, True, True)
    _, g_ref = torch.ops.eyefast.softplus_double_backward(one, torch.tensor([1.0, float("nan"), float("inf")],
                                                                            dtype=torch.float64), z.nan_to_num(0.1),
                                                          100.0, 20.0, True, True)
    assert torch.isnan(g_z[0]) and torch.isfinite(g_z[1]) and g_z[2] == 0
    assert torch.isnan(g_ref[1]) and torch.isnan(g_ref[2])  # inf * 0 past the threshold: NaN, as torch
