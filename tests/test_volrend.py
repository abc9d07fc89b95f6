"""eyefast.volrend: kernels vs the PyTorch reference, gradcheck, opcheck, torch.compile."""

import pytest
import torch

from eyefast import volrend as vr
from eyefast.reference import volrend as ref


def _packed(n_rays=7, dtype=torch.float64, seed=0, k=None, empty_rays=(2, 5)):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 6, (n_rays,), generator=g)
    for r in empty_rays:
        if r < n_rays:
            counts[r] = 0
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts)
    m = ray_indices.shape[0]
    dt = torch.rand(m, generator=g, dtype=dtype) * 0.3 + 0.05
    t_starts = torch.rand(m, generator=g, dtype=dtype)
    t_ends = t_starts + dt
    shape = (m,) if k is None else (m, k)
    sigmas = torch.rand(shape, generator=g, dtype=dtype) * 3.0
    return t_starts, t_ends, sigmas, ray_indices, n_rays


def _offsets(ray_indices, n_rays):
    """The segment offsets [n_rays + 1] of sorted ray indices (what the sampler returns)."""
    return torch.searchsorted(ray_indices, torch.arange(n_rays + 1, device=ray_indices.device))


def test_given_offsets_give_the_same_results_and_gradients():
    ts, te, s, ri, n = _packed(60, torch.float64, seed=13)
    off = _offsets(ri, n)
    v = torch.rand(s.shape[0], 3, dtype=torch.float64)
    outs = []
    for kw in ({}, {"offsets": off, "check": False}, {"offsets": off}):
        x = s.clone().requires_grad_(True)
        w, t, a = vr.render_weight_from_density(ts, te, x, ri, n, **kw)
        wa, ta = vr.render_weight_from_alpha(a, ri, n, **kw)
        acc = vr.accumulate_along_rays(w, v, ri, n, **kw)
        (acc.square().sum() + wa.sum() + ta.sum()).backward()
        outs.append([w, t, a, wa, ta, acc, x.grad])
    for other in outs[1:]:
        for p, q in zip(outs[0], other):
            assert torch.equal(p, q)
    assert vr.accumulate_along_rays(s, None, ri, offsets=off).shape == (n, 1)  # n_rays from the offsets
    bad = off.clone()
    bad[3] += 1
    with pytest.raises(ValueError, match="offsets do not match ray_indices"):
        vr.render_weight_from_density(ts, te, s, ri, n, offsets=bad)
    with pytest.raises(RuntimeError, match="offsets must be"):
        vr.render_weight_from_density(ts, te, s, ri, n, offsets=off[:-1], check=False)


def test_accumulate_backward_gives_no_gradient_to_samples_of_no_ray():
    """A sample whose ray index is out of range (unchecked) belongs to no ray: the forward skips it,
    and the backward gives it a zero gradient (it used to read grad_out out of bounds)."""
    w = torch.rand(5, dtype=torch.float64, requires_grad=True)
    v = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    ri = torch.tensor([0, 0, 1, 1, 7])  # 7 >= n_rays
    out = vr.accumulate_along_rays(w, v, ri, 2, check=False)
    out.sum().backward()
    assert out.shape == (2, 2) and w.grad[4] == 0 and (v.grad[4] == 0).all()
    assert torch.equal(w.grad[:4], v[:4].detach().sum(-1))


def test_density_matches_reference_float32():
    ts, te, s, ri, n = _packed(200, torch.float64, seed=1)
    out64 = ref.render_weight_from_density(ts, te, s, ri, n)
    out32 = vr.render_weight_from_density(ts.float(), te.float(), s.float(), ri, n)
    for a, b in zip(out32, out64):
        assert torch.allclose(a.double(), b, rtol=1e-5, atol=1e-6)


def test_alpha_matches_reference_and_alpha_one():
    ts, te, s, ri, n = _packed(50, torch.float64, seed=2)
    alphas = torch.rand_like(s)
    alphas[3] = 1.0
    w, t = vr.render_weight_from_alpha(alphas.float(), ri, n)
    rw, rt = ref.render_weight_from_alpha(alphas, ri, n)
    assert torch.allclose(w.double(), rw, rtol=1e-5, atol=1e-6)
    assert torch.allclose(t.double(), rt, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("with_values", [True, False])
def test_accumulate_matches_reference(with_values):
    ts, te, s, ri, n = _packed(30, torch.float64, seed=4)
    values = torch.rand(s.shape[0], 3, dtype=torch.float64) if with_values else None
    out = vr.accumulate_along_rays(s, values, ri, n)
    assert torch.allclose(out, ref.accumulate_along_rays(s, values, ri, n))
    assert out.shape == (n, 3 if with_values else 1)
    assert (out[2] == 0).all()


def test_gradcheck_density():
    ts, te, s, ri, n = _packed(6, seed=5)
    for x in (ts, te, s):
        x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: vr.render_weight_from_density(a, b, c, ri, n), (ts, te, s))


def test_gradcheck_alpha():
    ts, te, s, ri, n = _packed(6, seed=6)
    a = (torch.rand_like(s) * 0.9).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: vr.render_weight_from_alpha(x, ri, n), (a,))


def test_gradcheck_accumulate():
    ts, te, s, ri, n = _packed(6, seed=8)
    w = s.clone().requires_grad_(True)
    v = torch.rand(s.shape[0], 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: vr.accumulate_along_rays(a, b, ri, n), (w, v))
    assert torch.autograd.gradcheck(lambda a: vr.accumulate_along_rays(a, None, ri, n), (w,))


def test_grads_match_reference_through_composite():
    ts, te, s, ri, n = _packed(20, seed=9)
    rgb = torch.rand(s.shape[0], 3, dtype=torch.float64)
    s1 = s.clone().requires_grad_(True)
    s2 = s.clone().requires_grad_(True)
    w, _, _ = vr.render_weight_from_density(ts, te, s1, ri, n)
    vr.accumulate_along_rays(w, rgb, ri, n).square().sum().backward()
    w, _, _ = ref.render_weight_from_density(ts, te, s2, ri, n)
    ref.accumulate_along_rays(w, rgb, ri, n).square().sum().backward()
    assert torch.allclose(s1.grad, s2.grad)


def test_opcheck():
    ts, te, s, ri, n = _packed(8, seed=10)
    ts.requires_grad_(True)
    s.requires_grad_(True)
    v = torch.rand(s.shape[0], 3, dtype=torch.float64, requires_grad=True)
    a = (torch.rand(s.shape[0], dtype=torch.float64) * 0.9).requires_grad_(True)
    off = _offsets(ri, n)
    for o, chk in ((None, True), (off, False), (off, True)):
        torch.library.opcheck(torch.ops.eyefast.render_weight_from_density, (ts, te, s, ri, n, chk, o))
        torch.library.opcheck(torch.ops.eyefast.render_weight_from_alpha, (a, ri, n, chk, o))
        torch.library.opcheck(torch.ops.eyefast.accumulate_along_rays, (s, v, ri, n, chk, o))
        torch.library.opcheck(torch.ops.eyefast.accumulate_along_rays, (s, None, ri, n, chk, o))


def test_compile_fullgraph():
    ts, te, s, ri, n = _packed(12, dtype=torch.float32, seed=11)
    rgb = torch.rand(s.shape[0], 3)

    def render(ts, te, s, ri, rgb):
        w, _, _ = vr.render_weight_from_density(ts, te, s, ri, 12)
        return vr.accumulate_along_rays(w, rgb, ri, 12), vr.accumulate_along_rays(w, None, ri, 12)

    compiled = torch.compile(render, fullgraph=True, backend="aot_eager")
    for a, b in zip(compiled(ts, te, s, ri, rgb), render(ts, te, s, ri, rgb)):
        assert torch.allclose(a, b)


def test_empty_and_bad_ray_indices():
    e = torch.zeros(0)
    w, t, a = vr.render_weight_from_density(e, e, e, torch.zeros(0, dtype=torch.long), 4)
    assert w.shape == (0,)
    assert vr.accumulate_along_rays(e, None, torch.zeros(0, dtype=torch.long), 4).shape == (4, 1)
    x = torch.ones(3)
    with pytest.raises(ValueError, match="ray_indices"):
        vr.render_weight_from_alpha(x, torch.tensor([0, 2, 1]), 3)
    with pytest.raises(ValueError, match="ray_indices"):
        vr.render_weight_from_alpha(x, torch.tensor([0, 1, 3]), 3)
    with pytest.raises(RuntimeError, match="sigmas"):
        vr.render_weight_from_density(x, x, torch.ones(2), torch.tensor([0, 1, 1]), 3)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_matches_cpu_forward_and_backward():
    ts, te, s, ri, n = _packed(300, torch.float32, seed=12)
    so = torch.rand(s.shape[0], 3)
    v = torch.rand(s.shape[0], 3)
    a = torch.rand_like(s) * 0.9

    def run(dev):
        x = [t.detach().to(dev).requires_grad_(t.is_floating_point()) for t in (ts, te, s, so, v, a)]
        r = ri.to(dev)
        w, tr, al = vr.render_weight_from_density(x[0], x[1], x[2], r, n)
        w2, tr2 = vr.render_weight_from_alpha(x[5], r, n)
        off = _offsets(r, n)
        w3, tr3, al3 = vr.render_weight_from_density(x[0], x[1], x[3][:, 0].contiguous(), r, n, check=False,
                                                     offsets=off)
        acc = vr.accumulate_along_rays(w, x[4], r, n)
        acc2 = vr.accumulate_along_rays(w3, x[4], r, n, check=False, offsets=off)
        outs = [w, tr, al, w2, tr2, w3, tr3, al3, acc, acc2]
        sum(o.square().sum() for o in outs).backward()
        return [o.detach().cpu() for o in outs] + [t.grad.cpu() for t in x]

    for c, g in zip(run("cpu"), run("cuda")):
        assert torch.allclose(c, g, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="ray_indices"):
        vr.render_weight_from_alpha(torch.ones(3, device="cuda"), torch.tensor([0, 2, 1], device="cuda"), 3)
