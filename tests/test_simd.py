"""The CPU kernels' AVX2 and AVX-512 loops (launch.h: for_each_simd / for_each_checked) against
the baseline loops: the same IEEE operations, so the outputs must be bitwise equal, and a bad row must be
reported with the same message (the vectorised pass only detects it; a scalar rescan names it)."""

import pytest
import torch

import eyefast._C as C
from eyefast import ops
from test_ray_sphere import scene
from test_refract import rays

_before = C.cpu_simd()
MAX_LEVEL = C.cpu_simd(2)  # 2 AVX-512, 1 AVX2, 0 baseline only
C.cpu_simd(_before)
LEVELS = list(range(MAX_LEVEL + 1))


@pytest.fixture
def simd_modes():
    """Runs a function at every loop level the CPU has (baseline first); restores the level."""
    before = C.cpu_simd()

    def run(fn):
        outs = []
        for level in LEVELS:
            assert C.cpu_simd(level) == level
            outs.append(fn())
        return outs

    yield run
    C.cpu_simd(before)


def same(a, b):
    # Bitwise: equal values, equal signs of zero, NaN in the same places.
    if a.is_floating_point():
        return torch.equal(a.view(torch.int64 if a.dtype == torch.float64 else torch.int32),
                           b.view(torch.int64 if b.dtype == torch.float64 else torch.int32))
    return torch.equal(a, b)


pytestmark = pytest.mark.skipif(MAX_LEVEL == 0, reason="this CPU has no AVX2: only the baseline loops exist")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_ray_sphere_simd_is_bitwise_equal(simd_modes, dtype, s):
    o, d, c, r = scene(20011, s, dtype, "cpu", seed=s)  # odd n: vector remainder loops run too
    # Rays that start inside, on the surface (grazing at the origin), and tangent.
    o[:50] = c[0] + 0.5 * r[0] * torch.randn(50, 3, dtype=dtype).clamp(-1, 1) / 3
    o[50] = c[0] + torch.tensor([r[0], 0, 0], dtype=dtype)
    d[50] = torch.tensor([0, 1, 0], dtype=dtype)
    o[51] = c[0] + torch.tensor([r[0], -5, 0], dtype=dtype)
    d[51] = torch.tensor([0, 1, 0], dtype=dtype)
    for check in (True, False):
        base, *simd = simd_modes(lambda: ops.ray_sphere_intersect(o, d, c, r, check=check))
        for other in simd:
            assert all(same(a, b) for a, b in zip(base, other))
    assert (base[2] == -1).any() and (base[0] == 0).any() and (base[2] >= 0).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_ray_eta", [True, False])
def test_refract_simd_is_bitwise_equal(simd_modes, dtype, per_ray_eta):
    d, nm, eta = rays(20011, dtype, "cpu", seed=3, per_ray_eta=per_ray_eta)
    if not per_ray_eta:
        eta = torch.tensor(1.3, dtype=dtype)  # > 1: some rays are totally reflected
    for check in (True, False):
        base, *simd = simd_modes(lambda: ops.refract(d, nm, eta, check=check))
        for other in simd:
            assert all(same(a, b) for a, b in zip(base, other))
    assert base[2].any() and not base[2].all()  # both TIR and refracted rays


@pytest.mark.parametrize("row", [0, 4097, 20010])
def test_bad_rows_are_reported_alike(simd_modes, row):
    o, d, c, r = scene(20011, 2, torch.float32, "cpu", seed=0)
    d[row] = 0.0
    if row + 3 < len(d):
        d[row + 3] = float("nan")  # a second flag, further on
    msgs = []

    def call():
        with pytest.raises(ValueError) as err:
            ops.ray_sphere_intersect(o, d, c, r)
        msgs.append(str(err.value))

    simd_modes(call)
    # The message names the first kind of fault in its list order: the NaN row if there is one.
    named = row + 3 if row + 3 < len(d) else row
    assert len(set(msgs)) == 1 and f"dirs[{named}]" in msgs[0]

    dr, nm, eta = rays(20011, torch.float32, "cpu", seed=0)
    eta[row] = -1.0
    msgs.clear()

    def call_refract():
        with pytest.raises(ValueError) as err:
            ops.refract(dr, nm, eta)
        msgs.append(str(err.value))

    simd_modes(call_refract)
    assert len(set(msgs)) == 1 and f"eta[{row}]" in msgs[0]


def test_nonfinite_misses_have_zero_normals_unchecked(simd_modes):
    # check=False on rows the checks would reject: still a miss with exactly +0 normals.
    inf, nan = float("inf"), float("nan")
    o = torch.tensor([[inf, 0, -5], [nan, 0, 0], [0, 0, -5], [-3, -3, -5], [0.2, 0.1, 0.0]])
    d = torch.tensor([[0, 0, 1], [0, 0, 1], [nan, 0, 1], [0, 0, 1], [0, 0, 1.0]])
    c, r = torch.tensor([[0.0, 0, 0]]), torch.tensor([1.0])
    for t_near, _, index, normal in simd_modes(lambda: ops.ray_sphere_intersect(o, d, c, r, check=False)):
        assert index[:4].tolist() == [-1, -1, -1, -1] and index[4] == 0 and t_near[4] == 0  # row 4 starts inside
        assert torch.equal(normal, torch.zeros_like(normal)) and not torch.signbit(normal).any()


def test_volrend_and_sampling_simd_are_bitwise_equal(simd_modes):
    from eyefast import volrend as vr
    from eyefast.core.occupancy import OccupancyGrid

    g = torch.Generator().manual_seed(0)
    n_rays, m = 300, 20000
    ri = torch.randint(0, n_rays, (m,), generator=g).sort().values
    ts = torch.rand(m, generator=g) * 3
    te = ts + torch.rand(m, generator=g) * 0.05
    sg = torch.rand(m, generator=g) * 20
    for a, *others in zip(*simd_modes(lambda: vr.render_weight_from_density(ts, te, sg, ri, n_rays))):
        assert all(same(a, b) for b in others)
    grid = OccupancyGrid([-1.0, -1, -1, 1, 1, 1], resolution=32)
    grid.binaries.copy_(torch.rand(grid.binaries.shape, generator=g) < 0.3)
    o = torch.randn(500, 3, generator=g) * 2
    dd = torch.rand(500, 3, generator=g) - 0.5 - o
    for cone in (0.0, 0.02):
        outs = simd_modes(lambda: grid.sampling(o, dd, render_step_size=0.01, cone_angle=cone))
        for a, *others in zip(*outs):
            assert a.numel() > 0 and all(same(a, b) for b in others)


def test_hash_grid_simd_is_bitwise_equal(simd_modes):
    # The hash-grid level loops run in the AVX2 / AVX-512 copies too (not vectorised: scatters).
    from eyefast.core.nn import HashGrid

    torch.manual_seed(0)
    enc = HashGrid(n_levels=8, n_features_per_level=2, log2_hashmap_size=12, interpolation="smoothstep")
    x0 = torch.rand(3001, 3)

    def run():
        enc.zero_grad()
        x = x0.clone().requires_grad_(True)
        f = enc(x)
        g, = torch.autograd.grad(f.pow(2).sum(), x, create_graph=True)
        (g.pow(2).sum() + f.sum()).backward()
        return f.detach(), g.detach(), x.grad, enc.params.grad.clone()

    base, *others = simd_modes(run)
    for other in others:
        assert all(same(a, b) for a, b in zip(base, other))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softplus_simd_is_bitwise_equal(simd_modes, dtype):
    from eyefast.core.nn import softplus

    gen = torch.Generator().manual_seed(7)
    z = (0.1 * torch.randn(40011, generator=gen, dtype=torch.float64)).to(dtype)  # odd n: remainder loops
    z[:4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.2], dtype=dtype)
    g = torch.randn(z.shape, generator=gen, dtype=torch.float64).to(dtype)
    ops_ = (lambda: [softplus(z, 100.0)],
            lambda: [torch.ops.eyefast.softplus_backward(g, z, 100.0, 20.0)],
            lambda: list(torch.ops.eyefast.softplus_double_backward(g, g, z, 100.0, 20.0, True, True)))
    for fn in ops_:
        base, *simd = simd_modes(fn)
        for other in simd:
            assert all(same(a, b) for a, b in zip(base, other))


def test_sdf_network_simd_is_bitwise_equal(simd_modes):
    # The fused network's loops (encoding + Jacobian, bias + softplus rows, table-gradient scatter,
    # Jacobian contractions) at every level; the products are MKL's, the same at every level.
    from eyefast.core.nn import sdf_network
    from eyefast.core.nn.hash_grid import level_scales

    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2001, 3, generator=gen)
    table0 = 0.1 * torch.randn(6, 1 << 10, 2, generator=gen)
    ws0 = [0.3 * torch.randn(o, i, generator=gen) for i, o in ((15, 64), (64, 64), (64, 16))]
    bs0 = [0.05 * torch.randn(o, generator=gen) for o in (64, 64, 16)]
    ws0[0][:, 1] += 2.0  # activations beyond the softplus threshold (20 / beta) too

    def run():
        table = table0.clone().requires_grad_(True)
        ws = [w.clone().requires_grad_(True) for w in ws0]
        out, grad = sdf_network(x, table, level_scales(6, 4, 1.7), 6, True, ws, bs0, 100.0)
        loss = out.square().sum() + ((grad.norm(dim=-1) - 1.0) ** 2).sum()
        return [out.detach(), grad.detach(), *torch.autograd.grad(loss, [table, *ws])]

    base, *others = simd_modes(run)
    for other in others:
        assert all(same(a, b) for a, b in zip(base, other))
