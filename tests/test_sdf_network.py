"""eyefast.nn.sdf_network (torch.ops.eyefast.sdf_network / sdf_network_backward): the fused hash grid +
Softplus MLP + x-gradient, against its reference (eyefast/reference/sdf_network.py: the same
composition through hash_grid_encode, F.linear, F.softplus and torch.autograd.grad)."""

import pytest
import torch

from eyefast.scene import backend
from eyefast.core.nn import sdf_network
from eyefast.core.nn.hash_grid import level_scales
from eyefast.reference.sdf_network import sdf_network as ref_sdf_network
from conftest import DEVICES, rel_err


def _net(dtype=torch.float64, device="cpu", n=300, levels=6, feats=2, log2_t=8, dims=(16, 16, 5), include_x=True,
         seed=0, outside=True):
    gen = torch.Generator().manual_seed(seed)
    scales = level_scales(levels, 4, 1.7)
    table = 0.3 * torch.randn(levels, 1 << log2_t, feats, generator=gen, dtype=torch.float64)
    x = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    if outside:  # a few points outside [0, 1]^3 (the encoding clamps; the raw columns do not)
        x[:7] = x[:7] * 1.4 - 0.2
    n_in = levels * feats + (3 if include_x else 0)
    sizes = [n_in, *dims]
    ws = [0.6 * torch.randn(sizes[k + 1], sizes[k], generator=gen, dtype=torch.float64) for k in range(len(dims))]
    bs = [0.1 * torch.randn(sizes[k + 1], generator=gen, dtype=torch.float64) for k in range(len(dims))]

    def to(t):
        return t.to(dtype=dtype, device=device)

    return to(x), to(table), scales, [to(w) for w in ws], [to(b) for b in bs]


def _loss_weights(out, grad, seed=5):
    gen = torch.Generator().manual_seed(seed)
    wo = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out)
    wg = torch.randn(grad.shape, generator=gen, dtype=torch.float64).to(grad)
    return wo, wg


def _loss(out, grad, wo, wg, use_out=True, use_grad=True):
    loss = out.new_zeros(())
    if use_out:
        loss = loss + (out * wo).sum()
    if use_grad:  # linear and eikonal terms, as training uses the gradient
        loss = loss + (grad * wg).sum() + ((grad.norm(dim=-1) - 1.0) ** 2).sum()
    return loss


CASES = [
    dict(),  # the FaceSDF shape: 2 hidden layers, include_x
    dict(include_x=False),
    dict(dims=(7,)),  # a single linear layer on the encoding
    dict(dims=(12, 4)),  # one hidden layer
    dict(dims=(8, 8, 8, 3), feats=1),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("n_active", [6, 3])
def test_forward_and_gradient_match_reference(device, case, n_active):
    kw = CASES[case]
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        x, table, scales, ws, bs = _net(dtype, device, **kw)
        inc = kw.get("include_x", True)
        with torch.no_grad():
            out, grad = sdf_network(x, table, scales, n_active, True, ws, bs, 10.0, inc)
            # the reference in float64 (the truth for float32 too)
            r_out, r_grad = ref_sdf_network(x.double(), table.double(), scales, n_active, True,
                                            [w.double() for w in ws], [b.double() for b in bs], 10.0, inc)
            out2, grad2 = sdf_network(x, table, scales, n_active, True, ws, bs, 10.0, inc, need_grad=False)
        assert out.dtype == dtype and out.shape == r_out.shape and grad.shape == (x.shape[0], 3)
        assert rel_err(out, r_out) < tol
        assert rel_err(grad, r_grad) < tol
        assert torch.equal(out2, out) and grad2.shape == (0, 3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("use", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("n_active,smooth", [(6, True), (3, False)])
def test_backward_matches_reference(device, case, use, n_active, smooth):
    kw = CASES[case]
    inc = kw.get("include_x", True)
    for dtype, tol in ((torch.float64, 1e-11), (torch.float32, 2e-5)):
        x, table, scales, ws, bs = _net(dtype, device, **kw)
        results = []
        for fn in (sdf_network, ref_sdf_network):
            xs = x.clone().requires_grad_(True)
            ts = table.clone().requires_grad_(True)
            wl = [w.clone().requires_grad_(True) for w in ws]
            bl = [b.clone().requires_grad_(True) for b in bs]
            if fn is ref_sdf_network:  # the float64 truth
                xs, ts = xs.detach().double().requires_grad_(True), ts.detach().double().requires_grad_(True)
                wl = [w.detach().double().requires_grad_(True) for w in wl]
                bl = [b.detach().double().requires_grad_(True) for b in bl]
            out, grad = fn(xs, ts, scales, n_active, smooth, wl, bl, 10.0, inc)
            wo, wg = _loss_weights(out.double(), grad.double())
            loss = _loss(out, grad, wo.to(out), wg.to(grad), *use)
            results.append(torch.autograd.grad(loss, [xs, ts, *wl, *bl], allow_unused=True))
        for name, a, b in zip(["x", "table"] + [f"w{k}" for k in range(len(ws))] + [f"b{k}" for k in range(len(bs))],
                              *results):
            if b is None:
                assert a is None or float(a.abs().max()) == 0.0, name
                continue
            assert a is not None, name
            assert rel_err(a, b) < tol, (name, rel_err(a, b))


def test_gradcheck():
    x, table, scales, ws, bs = _net(n=12, levels=3, log2_t=5, dims=(6, 6, 3))
    x = x.requires_grad_(True)
    table = table.requires_grad_(True)
    ws = [w.requires_grad_(True) for w in ws]
    bs = [b.requires_grad_(True) for b in bs]

    def f(x, table, *params):
        out, grad = sdf_network(x, table, scales, 3, True, params[:3], params[3:], 5.0)
        return out, grad

    assert torch.autograd.gradcheck(f, (x, table, *ws, *bs))


def test_second_derivative_raises():
    x, table, scales, ws, bs = _net(n=10, levels=3, log2_t=5, dims=(6, 3))
    table.requires_grad_(True)
    out, grad = sdf_network(x, table, scales, 3, True, ws, bs, 5.0)
    (g,) = torch.autograd.grad((grad ** 2).sum(), table, create_graph=True)
    with pytest.raises(RuntimeError, match="not differentiable"):
        torch.autograd.grad(g.sum(), table)


def test_no_graph_without_grad():
    x, table, scales, ws, bs = _net(n=10, levels=3, log2_t=5, dims=(6, 3))
    table.requires_grad_(True)
    with torch.no_grad():
        out, grad = sdf_network(x, table, scales, 3, True, ws, bs, 5.0)
    assert not out.requires_grad and not grad.requires_grad
    out, grad = sdf_network(x, table, scales, 3, True, ws, bs, 5.0)
    assert out.requires_grad and grad.requires_grad


def test_saved_tensors_and_backward_op_match_autograd():
    # The op pair used directly (what the autograd node does): forward with save=True, then the backward op.
    x, table, scales, ws, bs = _net(n=40, levels=3, log2_t=5, dims=(6, 6, 3))
    sc = [float(s) for s in scales]
    out, grad, saved = torch.ops.eyefast.sdf_network(x, table, sc, 3, True, ws, bs, 5.0, True, True, True)
    assert len(saved) == 3 + 5 * 2
    g_out, g_grad = torch.randn_like(out), torch.randn_like(grad)
    gx, gt, gw, gb = torch.ops.eyefast.sdf_network_backward(g_out, g_grad, x, table, sc, 3, True, ws, bs, 5.0, True,
                                                            saved, True, True, True)
    xs, ts = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    wl, bl = [w.clone().requires_grad_(True) for w in ws], [b.clone().requires_grad_(True) for b in bs]
    o2, g2 = ref_sdf_network(xs, ts, scales, 3, True, wl, bl, 5.0)
    ref = torch.autograd.grad((o2 * g_out).sum() + (g2 * g_grad).sum(), [xs, ts, *wl, *bl], retain_graph=True)
    for a, b in zip([gx, gt, *gw, *gb], ref):
        assert rel_err(a, b) < 1e-11
    # partial need flags: the same values, and empty outputs for the others
    gx2, gt2, gw2, gb2 = torch.ops.eyefast.sdf_network_backward(g_out, g_grad, x, table, sc, 3, True, ws, bs, 5.0,
                                                                True, saved, False, True, False)
    assert gx2.numel() == 0 and gw2 == [] and gb2 == [] and torch.equal(gt2, gt)
    gx3, gt3, gw3, gb3 = torch.ops.eyefast.sdf_network_backward(g_out, g_grad, x, table, sc, 3, True, ws, bs, 5.0,
                                                                True, saved, True, False, True)
    assert gt3.numel() == 0 and torch.equal(gx3, gx)
    assert all(torch.equal(a, b) for a, b in zip(gw3 + gb3, gw + gb))
    # only the value path (no g_grad), against the reference
    gx4, gt4, gw4, gb4 = torch.ops.eyefast.sdf_network_backward(g_out, None, x, table, sc, 3, True, ws, bs, 5.0, True,
                                                                saved, True, True, True)
    ref = torch.autograd.grad((o2 * g_out).sum(), [xs, ts, *wl, *bl])
    for a, b in zip([gx4, gt4, *gw4, *gb4], ref):
        assert rel_err(a, b) < 1e-11


def test_save_in_grad_mode_keeps_the_graph():
    # save=True under autograd: the saved tensors come out as well (not differentiable), the graph stays
    x, table, scales, ws, bs = _net(n=30, levels=3, log2_t=5, dims=(6, 6, 3))
    sc = [float(s) for s in scales]
    table.requires_grad_(True)
    out, grad, saved = torch.ops.eyefast.sdf_network(x, table, sc, 3, True, ws, bs, 5.0, True, True, True)
    assert out.requires_grad and grad.requires_grad and len(saved) == 13
    assert not any(t.requires_grad for t in saved)
    (g,) = torch.autograd.grad(out.sum() + grad.square().sum(), table)
    o2, g2 = sdf_network(x, table, scales, 3, True, ws, bs, 5.0)
    (g_ref,) = torch.autograd.grad(o2.sum() + g2.square().sum(), table)
    assert torch.equal(g, g_ref)


def test_empty_batch():
    # N = 0 (a batch whose rays all miss): forward, and a backward through both outputs
    x, table, scales, ws, bs = _net(n=0, levels=3, log2_t=5, dims=(6, 6, 3), outside=False)
    table.requires_grad_(True)
    ws = [w.requires_grad_(True) for w in ws]
    out, grad = sdf_network(x, table, scales, 3, True, ws, bs, 5.0)
    assert out.shape == (0, 3) and grad.shape == (0, 3)
    gt, *gw = torch.autograd.grad(out.sum() + ((grad.norm(dim=-1) - 1.0) ** 2).sum(), [table, *ws])
    assert not gt.any() and not any(g.any() for g in gw)


def test_unused_empty_grad_in_the_loss():
    # need_grad=False returns grad [0, 3]; a loss that still includes it must work
    x, table, scales, ws, bs = _net(n=25, levels=3, log2_t=5, dims=(6, 3))
    table.requires_grad_(True)
    out, grad = sdf_network(x, table, scales, 3, True, ws, bs, 5.0, need_grad=False)
    (g,) = torch.autograd.grad(out.sum() + grad.sum(), table)
    o2, _ = ref_sdf_network(x, table, scales, 3, True, ws, bs, 5.0, need_grad=False)
    (g_ref,) = torch.autograd.grad(o2.sum(), table)
    assert rel_err(g, g_ref) < 1e-12


def test_opcheck():
    x, table, scales, ws, bs = _net(n=20, levels=3, log2_t=5, dims=(6, 6, 3))
    sc = [float(s) for s in scales]
    x.requires_grad_(True)
    table.requires_grad_(True)
    ws = [w.requires_grad_(True) for w in ws]
    for need_grad, save in ((True, False), (False, False), (True, True), (False, True)):
        torch.library.opcheck(torch.ops.eyefast.sdf_network, (x, table, sc, 3, True, ws, bs, 5.0, True, need_grad, save),
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    with torch.no_grad():
        out, grad, saved = torch.ops.eyefast.sdf_network(x, table, sc, 3, True, ws, bs, 5.0, True, True, True)
    args = (torch.randn_like(out), torch.randn_like(grad), x.detach(), table.detach(), sc, 3, True,
            [w.detach() for w in ws], bs, 5.0, True, saved, True, True, True)
    torch.library.opcheck(torch.ops.eyefast.sdf_network_backward, args,
                          test_utils=("test_schema", "test_faketensor"))


def test_errors_name_the_argument():
    x, table, scales, ws, bs = _net(n=10, levels=3, log2_t=5, dims=(6, 3))
    with pytest.raises(ValueError, match="biases must have one entry per layer"):
        sdf_network(x, table, scales, 3, True, ws, bs[:1], 5.0)
    with pytest.raises(RuntimeError, match=r"weights\[1\] must have shape \[H, 6\]"):
        sdf_network(x, table, scales, 3, True, [ws[0], ws[1][:, :5]], bs, 5.0)
    with pytest.raises(RuntimeError, match=r"weights\[0\] must have shape \[H, 6\].*got \[6, 9\]"):
        sdf_network(x, table, scales, 3, True, ws, bs, 5.0, include_x=False)
    with pytest.raises(TypeError, match=r"weights\[0\] and biases\[0\] must have dtype"):
        sdf_network(x, table, scales, 3, True, [ws[0].float(), ws[1]], bs, 5.0)
    with pytest.raises(ValueError, match="beta must be finite and > 0"):
        sdf_network(x, table, scales, 3, True, ws, bs, 0.0)
    with pytest.raises(ValueError, match="at least one layer"):
        sdf_network(x, table, scales, 3, True, [], [], 5.0)
    with pytest.raises(RuntimeError, match="x must have shape"):
        sdf_network(x[:, :2].contiguous(), table, scales, 3, True, ws, bs, 5.0)
    sc = [float(s) for s in scales]
    out, grad, saved = torch.ops.eyefast.sdf_network(x, table, sc, 3, True, ws, bs, 5.0, True, False, True)
    with pytest.raises(ValueError, match="g_grad needs the saved tensors of a forward with need_grad=True"):
        torch.ops.eyefast.sdf_network_backward(None, torch.ones(10, 3, dtype=x.dtype), x, table, sc, 3, True, ws, bs,
                                               5.0, True, saved, False, True, True)
    with pytest.raises(ValueError, match="saved must hold"):
        torch.ops.eyefast.sdf_network_backward(torch.ones_like(out), None, x, table, sc, 3, True, ws, bs, 5.0, True,
                                               saved[:4], False, True, True)


def test_backends_agree_through_the_model():
    # FaceSDF runs the fused op on the eyefast backend and the composition on the reference backend.
    from eyefast.scene.model import FaceSDF

    torch.manual_seed(0)
    nets = {b: FaceSDF(0.5, 6, 2, 7, backend.get(b), log2_hashmap_size=8).double() for b in ("eyefast", "reference")}
    nets["reference"].load_state_dict(nets["eyefast"].state_dict())
    with torch.no_grad():
        nets["eyefast"].grid.params.normal_(0.0, 0.2)
        nets["reference"].grid.params.copy_(nets["eyefast"].grid.params)
    x = (torch.rand(200, 3, dtype=torch.float64) - 0.5) * 0.9
    res = {}
    for b, net in nets.items():
        s, f, g = net.forward_with_gradient(x)
        loss = s.sum() + f.square().sum() + ((g.norm(dim=-1) - 1.0) ** 2).sum()
        res[b] = (s, f, g, torch.autograd.grad(loss, list(net.parameters())))
    for a, b in zip(res["eyefast"][:3], res["reference"][:3]):
        assert rel_err(a, b) < 1e-12
    for a, b in zip(res["eyefast"][3], res["reference"][3]):
        assert rel_err(a, b) < 1e-11


def test_onednn_and_mkl_products_agree():
    # float32 CPU products go through oneDNN's linear unless torch.backends.mkldnn is off (then at::mm)
    x, table, scales, ws, bs = _net(torch.float32, n=500, levels=4, log2_t=8, dims=(64, 64, 16))
    table.requires_grad_(True)
    ws = [w.requires_grad_(True) for w in ws]

    def run():
        out, grad = sdf_network(x, table, scales, 4, True, ws, bs, 10.0)
        loss = out.square().sum() + ((grad.norm(dim=-1) - 1.0) ** 2).sum()
        return [out.detach(), grad.detach(), *torch.autograd.grad(loss, [table, *ws])]

    a = run()
    with torch.backends.mkldnn.flags(enabled=False):
        b = run()
    for u, v in zip(a, b):
        assert rel_err(u, v) < 1e-5
