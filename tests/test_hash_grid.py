"""eyefast.nn.HashGrid / hash_grid_encode and the SH encoding op vs their PyTorch references."""

import pytest
import torch

from eyefast.core.nn import HashGrid, SHEncoding, hash_grid_encode, level_layout, sh_encode
from eyefast.reference import hash_grid as R
from eyefast.reference.sh import sh_encode as sh_ref
from conftest import OpCalls

CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])


def _grid(dtype=torch.float64, interp="linear", seed=0, device="cpu", **kw):
    args = dict(n_levels=4, n_features_per_level=2, log2_hashmap_size=6, base_resolution=2, finest_resolution=12)
    args.update(kw)
    torch.manual_seed(seed)
    g = HashGrid(interpolation=interp, dtype=dtype, device=device, **args)
    with torch.no_grad():
        g.params.uniform_(-1.0, 1.0)
    return g


def _x(n, dtype=torch.float64, seed=1, device="cpu", lo=0.0, hi=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(n, 3, generator=gen, dtype=dtype)).to(device)


def test_layout_has_dense_and_hashed_levels():
    g = HashGrid()  # SPEC defaults: 16 levels, 2^14 rows, 16 -> 1024
    lay = level_layout(g.scales, 2 ** 14)
    assert g.n_output_dims == 32 and g.params.shape == (16, 2 ** 14, 2) and g.params.dtype == torch.float32
    assert lay[0][1] and not lay[-1][1]
    assert g.scales[0] == pytest.approx(15.0) and g.scales[-1] == pytest.approx(1023.0)
    assert g.params.abs().max() <= 1e-4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("interp", ["linear", "smoothstep"])
def test_forward_matches_reference_float32(interp, device):
    g = _grid(torch.float32, interp, n_levels=8, log2_hashmap_size=12, base_resolution=4, finest_resolution=200,
              device=device)
    assert any(d for _, d in level_layout(g.scales, 2 ** 12)) and not all(d for _, d in level_layout(g.scales, 2 ** 12))
    x = _x(5000, torch.float32, device=device)
    out = g(x)
    ref = R.hash_grid_encode(x, g.params, g.scales, smoothstep=interp == "smoothstep")
    assert out.shape == (5000, 16)
    rel = (out - ref).abs().max() / ref.abs().max()
    assert rel < 1e-5


@pytest.mark.parametrize("interp", ["linear", "smoothstep"])
def test_backward_matches_reference_float32(interp):
    g = _grid(torch.float32, interp, n_levels=6, log2_hashmap_size=10, base_resolution=4, finest_resolution=100)
    x = _x(3000, torch.float32).requires_grad_(True)
    w = torch.randn(3000, g.n_output_dims)
    gx, gt = torch.autograd.grad((g(x) * w).sum(), (x, g.params))
    x2 = x.detach().clone().requires_grad_(True)
    t2 = g.params.detach().clone().requires_grad_(True)
    rx, rt = torch.autograd.grad((R.hash_grid_encode(x2, t2, g.scales, smoothstep=interp == "smoothstep") * w).sum(),
                                 (x2, t2))
    assert (gx - rx).abs().max() / rx.abs().max() < 1e-5
    assert (gt - rt).abs().max() / rt.abs().max() < 1e-5


def test_double_backward_matches_reference():
    # eikonal-style: loss on d enc / dx must train the table like the reference does
    g = _grid(torch.float64, "smoothstep", n_levels=5, log2_hashmap_size=8, base_resolution=3, finest_resolution=40)
    x = _x(500).requires_grad_(True)
    w = torch.randn(500, g.n_output_dims, dtype=torch.float64)
    v = torch.randn(500, 3, dtype=torch.float64)

    def run(fn, x, t):
        (gx,) = torch.autograd.grad((fn(x, t) * w).sum(), x, create_graph=True)
        return torch.autograd.grad((gx * v).sum() + (gx ** 2).sum(), (x, t))

    a = run(lambda x, t: hash_grid_encode(x, t, g.scales, smoothstep=True), x, g.params)
    t2 = g.params.detach().clone().requires_grad_(True)
    b = run(lambda x, t: R.hash_grid_encode(x, t, g.scales, smoothstep=True), x, t2)
    for u, r in zip(a, b):
        torch.testing.assert_close(u, r, rtol=1e-9, atol=1e-9)
    assert a[1].abs().sum() > 0


@pytest.mark.parametrize("interp", ["linear", "smoothstep"])
def test_gradcheck_gradgradcheck(interp):
    g = _grid(torch.float64, interp)
    x = _x(12, lo=0.02, hi=0.98).requires_grad_(True)
    t = g.params.detach().clone().requires_grad_(True)

    def f(x, t):
        return hash_grid_encode(x, t, g.scales, 3, interp == "smoothstep")

    assert torch.autograd.gradcheck(f, (x, t))
    assert torch.autograd.gradgradcheck(f, (x, t))


def test_opcheck():
    g = _grid(torch.float64, "smoothstep")
    x = _x(20).requires_grad_(True)
    t = g.params.detach().clone().requires_grad_(True)
    torch.library.opcheck(torch.ops.eyefast.hash_grid_encode, (x, t, g.scales, 4, True))
    torch.library.opcheck(torch.ops.eyefast.hash_grid_encode, (x, t, g.scales, 2, False))
    go = torch.randn(20, 8, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.eyefast.hash_grid_backward, (go, x, t, g.scales, 4, True, True, True))
    torch.library.opcheck(torch.ops.eyefast.hash_grid_backward, (go, x, t, g.scales, 4, True, True, False))
    torch.library.opcheck(torch.ops.eyefast.sh_encode, (_x(10).requires_grad_(True), 4))


def test_backward_computes_only_the_gradients_the_pass_uses():
    # The autograd nodes ask the running backward pass which inputs it needs (C++ needs_input_grad):
    # the eikonal pattern must not scatter a table gradient in autograd.grad(..., x), nor compute
    # the x-gradient / Hessian term in a final backward(inputs=[table]).
    g = _grid(torch.float64, "smoothstep", n_levels=5, log2_hashmap_size=8, base_resolution=3, finest_resolution=40)
    x = _x(300).requires_grad_(True)
    t = g.params.detach().clone().requires_grad_(True)
    w = torch.randn(300, g.n_output_dims, dtype=torch.float64)
    with OpCalls("hash_grid") as rec:
        (gx,) = torch.autograd.grad((hash_grid_encode(x, t, g.scales, smoothstep=True) * w).sum(), x,
                                    create_graph=True)
    assert rec.calls == [("hash_grid_encode",), ("hash_grid_backward", True, False)]
    loss = (gx ** 2).sum()
    with OpCalls("hash_grid") as rec:
        loss.backward(inputs=[t])
    assert rec.calls == [("hash_grid_double_backward", False, True)]
    assert x.grad is None and t.grad.abs().sum() > 0
    # the table gradient so obtained equals the full computation's
    t2 = g.params.detach().clone().requires_grad_(True)
    (gx2,) = torch.autograd.grad((R.hash_grid_encode(x, t2, g.scales, smoothstep=True) * w).sum(), x,
                                 create_graph=True)
    (ref,) = torch.autograd.grad((gx2 ** 2).sum(), t2)
    torch.testing.assert_close(t.grad, ref, rtol=1e-9, atol=1e-9)
    # plain backward: the leaf x wants its gradient too
    with OpCalls("hash_grid") as rec:
        hash_grid_encode(x, t, g.scales, smoothstep=True).sum().backward()
    assert rec.calls == [("hash_grid_encode",), ("hash_grid_backward", True, True)]


def test_third_order_raises_instead_of_silent_zero():
    g = _grid(torch.float64, "smoothstep")
    x = _x(20).requires_grad_(True)
    t = g.params.detach().clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(hash_grid_encode(x, t, g.scales, smoothstep=True).sum(), x, create_graph=True)
    (gt,) = torch.autograd.grad((gx ** 2).sum(), t, create_graph=True)
    with pytest.raises(RuntimeError, match="hash_grid_double_backward is not differentiable"):
        gt.sum().backward()


def test_active_levels_and_clamping():
    g = _grid(torch.float64)
    x = torch.tensor([[-0.5, 0.3, 1.7], [0.0, 0.3, 1.0]], dtype=torch.float64, requires_grad=True)
    full = g(x)
    torch.testing.assert_close(full[0], full[1])  # clamped to the boundary
    (gx,) = torch.autograd.grad(full.sum(), x)
    assert gx[0, 0] == 0 and gx[0, 2] == 0 and gx[0, 1] != 0
    g.set_active_levels(2)
    part = g(x)
    assert torch.equal(part[:, 4:], torch.zeros_like(part[:, 4:]))
    torch.testing.assert_close(part[:, :4], full[:, :4])
    (gt,) = torch.autograd.grad(part.sum(), g.params)
    assert gt[2:].abs().sum() == 0 and gt[:2].abs().sum() > 0
    assert g.level_mask().tolist() == [True, True, False, False]


def test_empty_input_and_batch_shape():
    g = _grid(torch.float32)
    x = torch.empty(0, 3, requires_grad=True)
    out = g(x)
    assert out.shape == (0, 8)
    out.sum().backward()
    assert g.params.grad.abs().sum() == 0
    assert g(torch.rand(2, 5, 3)).shape == (2, 5, 8)
    assert sh_encode(torch.empty(0, 3)).shape == (0, 16)


def test_errors_name_the_argument():
    g = _grid(torch.float32)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        hash_grid_encode(torch.zeros(4, 3, dtype=torch.int32), g.params, g.scales)
    with pytest.raises(TypeError, match="table must have dtype"):
        hash_grid_encode(torch.rand(4, 3, dtype=torch.float64), g.params, g.scales)
    with pytest.raises(RuntimeError, match="x must have shape"):
        hash_grid_encode(torch.rand(4, 2), g.params, g.scales)
    with pytest.raises(ValueError, match="scales"):
        hash_grid_encode(torch.rand(4, 3), g.params, g.scales[:2])
    with pytest.raises(ValueError, match="n_active"):
        hash_grid_encode(torch.rand(4, 3), g.params, g.scales, 9)
    with pytest.raises(ValueError, match="interpolation"):
        HashGrid(interpolation="cubic")
    with pytest.raises(TypeError, match="dirs must be float32 or float64"):
        sh_encode(torch.zeros(3, 3, dtype=torch.int64))


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_wrong_device_names_argument():
    g = _grid(torch.float32)
    with pytest.raises(RuntimeError, match="table must be on cuda"):
        hash_grid_encode(torch.rand(4, 3, device="cuda"), g.params, g.scales)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_matches_cpu_all_orders():
    g = _grid(torch.float64, "smoothstep", n_levels=6, log2_hashmap_size=9, base_resolution=4, finest_resolution=64)
    x = _x(2000)
    w = torch.randn(2000, g.n_output_dims, dtype=torch.float64)

    def run(dev):
        xd = x.to(dev).requires_grad_(True)
        t = g.params.detach().to(dev).requires_grad_(True)
        out = hash_grid_encode(xd, t, g.scales, 5, True)
        (gx,) = torch.autograd.grad((out * w.to(dev)).sum(), xd, create_graph=True)
        gr = torch.autograd.grad((gx ** 2).sum() + (out ** 2).sum(), (xd, t))
        return [out.detach().cpu(), gx.detach().cpu()] + [u.cpu() for u in gr]

    for a, b in zip(run("cpu"), run("cuda")):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_torch_compile_fullgraph():
    g = _grid(torch.float32, "smoothstep")
    lin = torch.nn.Linear(8, 1)

    def f(x):
        return lin(g(x)).square().mean()

    x = _x(64, torch.float32)
    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    loss = cf(x)
    loss.backward()
    assert loss.item() == pytest.approx(f(x).item(), rel=1e-5)
    assert g.params.grad is not None and g.params.grad.abs().sum() > 0


# ---- SH ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_sh_matches_reference(degree, device):
    d = torch.nn.functional.normalize(torch.randn(1000, 3, dtype=torch.float64), dim=-1).to(device)
    torch.testing.assert_close(sh_encode(d, degree), sh_ref(d, degree), rtol=0, atol=1e-14)
    if degree == 1:  # constant: the reference has no graph
        return
    d32 = d.float().requires_grad_(True)
    w = torch.randn(1000, degree * degree, device=device)
    (g,) = torch.autograd.grad((SHEncoding(degree)(d32) * w).sum(), d32)
    d2 = d32.detach().clone().requires_grad_(True)
    (r,) = torch.autograd.grad((sh_ref(d2, degree) * w).sum(), d2)
    torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_sh_gradcheck():
    d = torch.nn.functional.normalize(torch.randn(8, 3, dtype=torch.float64), dim=-1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: sh_encode(d, 4), (d,))


# ---- end to end: grid + MLP + eikonal fits a sphere SDF -------------------------------------------
def test_fit_sphere_sdf_with_eikonal():
    torch.manual_seed(0)
    grid = HashGrid(n_levels=8, n_features_per_level=2, log2_hashmap_size=12, base_resolution=4,
                    finest_resolution=64, interpolation="smoothstep")
    mlp = torch.nn.Sequential(torch.nn.Linear(3 + grid.n_output_dims, 32), torch.nn.Softplus(beta=100),
                              torch.nn.Linear(32, 1))
    opt = torch.optim.Adam(list(grid.parameters()) + list(mlp.parameters()), lr=1e-2)
    radius = 0.3

    def sdf_true(x):
        return (x - 0.5).norm(dim=-1) - radius

    def sdf(x):
        return mlp(torch.cat([2 * x - 1, grid(x)], dim=-1))[:, 0]

    for _ in range(300):
        x = torch.rand(2048, 3, requires_grad=True)
        s = sdf(x)
        (n,) = torch.autograd.grad(s.sum(), x, create_graph=True)
        loss = (s - sdf_true(x)).abs().mean() + 0.1 * ((n.norm(dim=-1) - 1) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt = torch.rand(4096, 3, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        err = (sdf(xt) - sdf_true(xt)).abs().mean().item()
    print("sphere sdf mean abs error", err)
    assert err < 0.015, err


@pytest.mark.parametrize("n_active", [6, 4])
def test_large_batch_private_scatter_matches_reference(n_active):
    # >= 2 * 16384 points: the CPU launcher splits the table-gradient scatter over private copies
    g = _grid(torch.float64, "smoothstep", n_levels=6, log2_hashmap_size=9, base_resolution=4, finest_resolution=64)
    x = _x(40000).requires_grad_(True)
    w = torch.randn(40000, g.n_output_dims, dtype=torch.float64)

    def run(fn, t):
        (gx,) = torch.autograd.grad((fn(x, t) * w).sum(), x, create_graph=True)
        return torch.autograd.grad((fn(x, t) * w).sum() + (gx ** 2).sum(), (x, t))

    a = run(lambda x, t: hash_grid_encode(x, t, g.scales, n_active, True), g.params)
    t2 = g.params.detach().clone().requires_grad_(True)
    b = run(lambda x, t: R.hash_grid_encode(x, t, g.scales, n_active, True), t2)
    for u, r in zip(a, b):
        torch.testing.assert_close(u, r, rtol=1e-9, atol=1e-9)
