"""eyefast.OccupancyGrid: sampler vs the PyTorch reference, properties, update, errors."""

import pytest
import torch

from eyefast.core.occupancy import OccupancyGrid, coarse_binaries, occupancy_sampling, pack_bitfield
from eyefast.reference import occupancy as ref


def _grid(res=16, levels=1, p=0.3, seed=0):
    g = OccupancyGrid([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=res, levels=levels)
    gen = torch.Generator().manual_seed(seed)
    g.binaries.copy_(torch.rand(g.binaries.shape, generator=gen) < p)
    return g


def _rays(n=64, seed=1, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=gen, dtype=dtype) * 2.0
    target = (torch.rand(n, 3, generator=gen, dtype=dtype) * 2 - 1) * 0.9
    d = target - o  # most rays hit the grid; t = 1 at the target
    d[0] = torch.tensor([1.0, 0.0, 0.0])  # axis-aligned rays: zero direction components
    o[0] = torch.tensor([-3.0, 0.1, 0.2])
    d[1] = torch.tensor([0.0, 0.0, -1.0])
    o[1] = torch.tensor([0.3, -0.2, 3.0])
    return o, d


def _assert_same(a, b):
    assert a[0].dtype == torch.long
    for x, y in zip(a, b):
        assert torch.equal(x, y), (x.shape, y.shape)


@pytest.mark.parametrize("levels,cone", [(1, 0.0), (2, 0.0), (1, 0.05), (3, 0.02)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("res,block", [(16, None), (16, 4), (24, 8), (24, 3)])
@pytest.mark.parametrize("p", [0.02, 0.5])
def test_identical_to_reference(levels, cone, dtype, res, block, p):
    # p = 0.5: most rays cross many separate occupied stretches, more than the CPU's one-march
    # form keeps as runs (OccupancyOnePass::kRuns), so its re-march fallback runs too.
    g = _grid(res=res, levels=levels, p=p)
    o, d = _rays(dtype=dtype)
    gen = torch.Generator().manual_seed(5)
    u = torch.rand(o.shape[0], generator=gen, dtype=dtype)
    t_min = torch.rand(o.shape[0], generator=gen, dtype=dtype) * 0.6
    t_max = t_min + torch.rand(o.shape[0], generator=gen, dtype=dtype) * 3
    kw = dict(near_plane=0.05, far_plane=6.0, render_step_size=0.013, cone_angle=cone)
    coarse = None if block is None else pack_bitfield(coarse_binaries(g.binaries, block))
    out = occupancy_sampling(o, d, g.bitfield, g.aabbs.to(dtype), res, t_min=t_min, t_max=t_max, u=u,
                             coarse=coarse, block=block or 8, **kw)
    exp = ref.sampling(o, d, g.binaries, g.aabbs.to(dtype), t_min=t_min, t_max=t_max, u=u, **kw)
    assert out[0].numel() > 0
    _assert_same(out, exp)


def test_stratified_reproducible_and_matches_reference():
    g = _grid()
    o, d = _rays()
    a = g.sampling(o, d, render_step_size=0.02, stratified=True, generator=torch.Generator().manual_seed(3))
    b = g.sampling(o, d, render_step_size=0.02, stratified=True, generator=torch.Generator().manual_seed(3))
    _assert_same(a, b)
    u = torch.rand(o.shape[0], generator=torch.Generator().manual_seed(3))
    _assert_same(a, ref.sampling(o, d, g.binaries, g.aabbs, render_step_size=0.02, u=u))


def test_properties():
    g = _grid(res=32, levels=2, p=0.2)
    o, d = _rays(200)
    t_max = torch.full((200,), 2.5)
    ri, ts, te = g.sampling(o, d, render_step_size=0.01, near_plane=0.1, t_max=t_max)
    assert ri.numel() > 0
    mid = 0.5 * (ts + te)
    x = o[ri] + mid[:, None] * d[ri]
    assert ref.cell_occupied(x, g.binaries, g.aabbs).all()  # midpoints occupied
    assert (ts >= 0.1 - 1e-6).all() and (te <= 2.5).all()  # inside the clipped range, never past t_max
    big = g.aabbs[-1]
    pts = torch.cat([o[ri] + ts[:, None] * d[ri], o[ri] + te[:, None] * d[ri]])
    assert ((pts >= big[:3] - 1e-4) & (pts <= big[3:] + 1e-4)).all()
    assert (ri[1:] >= ri[:-1]).all()  # sorted by ray
    same = ri[1:] == ri[:-1]
    assert (ts[1:][same] >= te[:-1][same] - 1e-6).all()  # non-overlapping, increasing
    assert (te > ts).all()


def test_never_past_t_max_issue_291():
    g = _grid(p=1.0)
    o = torch.tensor([[-2.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    for tmax in (1.5, 1.5001, 1.537, 2.0):
        ri, ts, te = g.sampling(o, d, render_step_size=0.01, t_max=torch.tensor([tmax]))
        assert te.max() <= tmax
        assert te.max() > tmax - 0.01 - 1e-5


def test_full_grid_uniform_step_count():
    g = _grid(p=1.0)
    o = torch.tensor([[-2.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    ri, ts, te = g.sampling(o, d, render_step_size=0.02)
    assert ri.numel() == 100
    assert torch.allclose(ts[0], torch.tensor(1.0)) and torch.allclose(te[-1], torch.tensor(3.0))


def test_empty_cases():
    g = _grid(p=0.0)
    o, d = _rays(10)
    ri, ts, te = g.sampling(o, d, render_step_size=0.01)
    assert ri.numel() == 0 and ts.numel() == 0
    g = _grid(p=1.0)
    ri, ts, te = g.sampling(torch.zeros(0, 3), torch.zeros(0, 3))
    assert ri.numel() == 0
    # Rays missing the box (and an axis-parallel one outside the slab).
    o = torch.tensor([[5.0, 5.0, 5.0], [0.0, 3.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert g.sampling(o, d, render_step_size=0.01)[0].numel() == 0
    # far < near and t_max < t_min give nothing.
    o = torch.tensor([[-2.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    assert g.sampling(o, d, near_plane=2.0, far_plane=1.0)[0].numel() == 0


def test_bad_inputs_name_the_argument():
    g = _grid()
    o, d = _rays(4)
    d0 = d.clone()
    d0[2] = 0.0
    with pytest.raises(ValueError, match=r"rays_d.*zero-length.*rays_d\[2\]"):
        g.sampling(o, d0)
    o1 = o.clone()
    o1[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"rays_o.*rays_o\[3\]"):
        g.sampling(o1, d)
    with pytest.raises(RuntimeError, match="rays_d"):
        g.sampling(o, d[:3])


def test_pack_bitfield():
    b = torch.rand(3, 5, 5, 5) < 0.5
    bf = pack_bitfield(b)
    flat = b.reshape(-1)
    bits = ((bf[:, None] >> torch.arange(8, dtype=torch.uint8)) & 1).reshape(-1)[: flat.numel()].bool()
    assert torch.equal(bits, flat)


def test_update_and_state_dict():
    g = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=16, levels=2)

    def occ_fn(x):  # a thin spherical shell of radius 0.5
        return ((x.norm(dim=-1) - 0.5).abs() < 0.1).float()

    with pytest.raises(RuntimeError, match="training"):
        g.eval().update_every_n_steps(0, occ_fn)
    g.train()
    g.update_every_n_steps(0, occ_fn, occ_thre=0.5)
    assert g.binaries.any() and not g.binaries.all()
    assert g.binaries[1].sum() < g.binaries[0].sum()  # the shell is smaller in the coarse level
    g.update_every_n_steps(3, lambda x: torch.zeros(x.shape[0]), n=16)  # not a multiple of n: no-op
    assert g.binaries.any()
    before = g.binaries.clone()
    for step in (256, 272):  # after warm-up: random + occupied cells, EMA decays
        g.update_every_n_steps(step, occ_fn, occ_thre=0.5)
    assert (g.binaries & before).sum() > 0
    # Sampling sees the updated grid; round trip through state_dict.
    o = torch.tensor([[-2.0, 0.01, 0.02]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    a = g.sampling(o, d, render_step_size=0.01)
    assert a[0].numel() > 0
    h = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=16, levels=2)
    h.load_state_dict(g.state_dict())
    assert torch.equal(h.binaries, g.binaries) and torch.equal(h.occs, g.occs)
    _assert_same(h.sampling(o, d, render_step_size=0.01), a)


def test_pruning_with_sigma_and_alpha_fn():
    g = _grid(p=1.0)
    o = torch.tensor([[-2.0, 0.0, 0.0], [-2.0, 0.5, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    full = g.sampling(o, d, render_step_size=0.01)

    def sigma_fn(ts, te, ri):
        return torch.where(ri == 0, 50.0, 0.0)

    ri, ts, te = g.sampling(o, d, render_step_size=0.01, sigma_fn=sigma_fn, early_stop_eps=1e-3)
    # Ray 0 stops once T < 1e-3 (sigma * dt = 0.5 per step: T_j = exp(-0.5 j) >= 1e-3 for j <= 13); ray 1 is untouched.
    assert (ri == 0).sum() == 14
    assert (ri == 1).sum() == (full[0] == 1).sum()
    g.occs.fill_(1.0)
    ri2, _, _ = g.sampling(o, d, render_step_size=0.01, alpha_fn=lambda ts, te, ri: torch.where(ri == 0, 0.5, 0.0),
                           early_stop_eps=0.0, alpha_thre=0.1)
    assert (ri2 == 1).sum() == 0 and (ri2 == 0).sum() == (full[0] == 0).sum()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cone", [0.0, 0.03])
def test_cuda_matches_cpu(cone):
    g = _grid(res=32, levels=2, p=0.05)
    o, d = _rays(500)
    a = g.sampling(o, d, render_step_size=0.01, cone_angle=cone, stratified=True,
                   generator=torch.Generator().manual_seed(0))
    gc = _grid(res=32, levels=2, p=0.05).cuda()
    b = gc.sampling(o.cuda(), d.cuda(), render_step_size=0.01, cone_angle=cone, stratified=True,
                    generator=torch.Generator().manual_seed(0))
    # nvcc contracts a*b+c into FMAs: a midpoint on a cell boundary may classify differently.
    assert abs(a[0].numel() - b[0].numel()) <= max(2, a[0].numel() // 1000)
    if a[0].numel() == b[0].numel():
        assert torch.equal(a[0], b[0].cpu())
        assert torch.allclose(a[1], b[1].cpu(), atol=1e-5) and torch.allclose(a[2], b[2].cpu(), atol=1e-5)
    d0 = d.clone().cuda()
    d0[7] = 0
    with pytest.raises(ValueError, match=r"rays_d\[7\]"):
        gc.sampling(o.cuda(), d0)


def test_opcheck_and_compile():
    g = _grid(res=16, p=0.3)
    o, d = _rays(32)
    args = (o, d, None, None, None, g.bitfield, g.coarse_bitfield, g.block, g.aabbs, 16, 0.0, 1e10, 0.02, 0.0, True)
    torch.library.opcheck(torch.ops.eyefast.occupancy_sampling, args)

    def f(o, d):
        ri, ts, te = g.sampling(o, d, render_step_size=0.02)
        return ri, te - ts

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for a, b in zip(compiled(o, d), f(o, d)):
        assert torch.equal(a, b)


def test_mark_invisible_cells():
    from eyefast import OccupancyGrid

    grid = OccupancyGrid([-1, -1, -1, 1, 1, 1], resolution=16)
    # one camera at z = -3 looking along +z (OpenCV: x right, y down, z forward) with a narrow view
    c2w = torch.eye(4)[None, :3, :].clone()
    c2w[0, 2, 3] = -3.0
    K = torch.tensor([[40.0, 0.0, 16.0], [0.0, 40.0, 16.0], [0.0, 0.0, 1.0]])
    grid.mark_invisible_cells(K, c2w, 32, 32)
    r = 16
    centres = (grid.grid_coords.float() + 0.5) / r * 2 - 1
    z = centres[:, 2] + 3.0
    u = centres[:, 0] / z * 40 + 16
    v = centres[:, 1] / z * 40 + 16
    expect_seen = (u >= 0) & (u < 32) & (v >= 0) & (v < 32)
    assert 0 < int(expect_seen.sum()) < r ** 3
    assert torch.equal(grid.occs >= 0, expect_seen)
    # invisible cells stay empty and are never evaluated by the update
    grid.train()
    seen_points = []

    def occ_fn(x):
        seen_points.append(x)
        return torch.ones(x.shape[0])

    grid.update_every_n_steps(0, occ_fn, warmup_steps=1)
    assert sum(p.shape[0] for p in seen_points) == int(expect_seen.sum())
    assert torch.equal(grid.binaries.reshape(-1), expect_seen)
    with pytest.raises(ValueError, match="c2w"):
        grid.mark_invisible_cells(K, torch.eye(3), 32, 32)


def test_run_of_steps_across_int32_k():
    # The CPU sampler keeps runs of consecutive steps as int32 step indices: a run that reaches
    # past 2^31 - 1 must fall back to the re-march, not wrap (unwritten samples, review finding).
    dt = torch.float64
    levels, res = 7, 16
    half = [8.0 ** l for l in range(levels)]
    aabbs = torch.tensor([[-x, -x, -x, x, x, x] for x in half], dtype=dt)
    bins = torch.zeros(levels, res, res, res, dtype=torch.bool)
    bins[0, 8, 8, 8] = True  # level-0 cell with x in [0, 0.125)
    o = torch.tensor([[-half[-1] - 1.0, 0.01, 0.01]], dtype=dt)
    d = torch.tensor([[1.0, 0.0, 0.0]], dtype=dt)
    for k_mid in (2**31 - 1 - 2000, 2**31 - 1, 2**31 + 4000):
        step = (half[-1] + 0.0625) / k_mid  # the cell's middle at step k_mid
        ri, ts, te, _ = occupancy_sampling(o, d, pack_bitfield(bins), aabbs, res, render_step_size=step)
        # (The reference marches step by step: 2^31 steps are out of its reach.) One run of
        # consecutive steps covering the cell, every slot written.
        assert abs(ri.numel() - 0.125 / step) <= 2 and (ri == 0).all()
        assert torch.isfinite(ts).all() and torch.isfinite(te).all()
        assert torch.equal(ts[1:], te[:-1])
        mid_x = o[0, 0] + 0.5 * (ts + te)
        assert (mid_x > -1e-6).all() and (mid_x < 0.125 + 1e-6).all()


def test_sampling_packed_returns_the_segments_of_its_samples():
    """sampling_packed's offsets are the per-ray segments of what it returns, before and after pruning
    (the volume-rendering ops then skip finding them)."""
    g = _grid(p=0.5)
    o, d = _rays(300)
    counts = []
    for kw in ({}, {"sigma_fn": lambda ts, te, ri: torch.full_like(ts, 30.0), "early_stop_eps": 1e-2}):
        ri, ts, te, off = g.sampling_packed(o, d, render_step_size=0.02, **kw)
        assert off.shape == (o.shape[0] + 1,) and off.dtype == torch.long
        assert torch.equal(off, torch.searchsorted(ri, torch.arange(o.shape[0] + 1)))
        a = g.sampling(o, d, render_step_size=0.02, **kw)
        for x, y in zip(a, (ri, ts, te)):
            assert torch.equal(x, y)
        counts.append(ri.numel())
    assert 0 < counts[1] < counts[0]  # the pruning dropped samples, and the offsets followed
