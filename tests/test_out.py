"""out= buffers of ray_sphere_intersect and refract: the same results written in place, reuse,
clear errors for unusable buffers, no autograd through them, opcheck and torch.compile."""

import pytest
import torch

from eyefast import ops
from test_ray_sphere import scene
from test_refract import rays


def empty_like_results(results):
    return tuple(torch.empty_like(t) for t in results)


def same(a, b):
    return torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan()) and
                                 torch.equal(a.nan_to_num(), b.nan_to_num()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ray_sphere_out_matches_and_reuses(device, dtype):
    buffers = None
    for seed in range(2):  # the second call reuses (overwrites) the first call's buffers
        o, d, c, r = scene(3001, 2, dtype, device, seed)
        want = ops.ray_sphere_intersect(o, d, c, r)
        buffers = buffers or empty_like_results(want)
        got = ops.ray_sphere_intersect(o, d, c, r, out=buffers)
        assert all(g is b for g, b in zip(got, buffers))
        assert all(same(g, w) for g, w in zip(got, want))


@pytest.mark.parametrize("per_ray_eta", [True, False])
def test_refract_out_matches_and_reuses(device, per_ray_eta):
    buffers = None
    for seed in range(2):
        d, nm, eta = rays(3001, torch.float32, device, seed, per_ray_eta=per_ray_eta)
        want = ops.refract(d, nm, eta)
        buffers = buffers or empty_like_results(want)
        got = ops.refract(d, nm, eta, out=buffers)
        assert all(g is b for g, b in zip(got, buffers))
        assert all(same(g, w) for g, w in zip(got, want))
    got = ops.refract(d, nm, 1.33, out=buffers)  # a float eta
    assert all(same(g, w) for g, w in zip(got, ops.refract(d, nm, 1.33)))


def test_out_data_checks_still_run():
    o, d, c, r = scene(100, 2, torch.float32, "cpu", 0)
    d[7] = float("nan")
    with pytest.raises(ValueError, match=r"dirs\[7\]"):
        ops.ray_sphere_intersect(o, d, c, r, out=empty_like_results(ops.ray_sphere_intersect(o, d, c, r, check=False)))


def test_unusable_out_buffers_are_named():
    o, d, c, r = scene(100, 2, torch.float32, "cpu", 0)
    good = empty_like_results(ops.ray_sphere_intersect(o, d, c, r))

    def call(k, t):
        out = list(good)
        out[k] = t
        ops.ray_sphere_intersect(o, d, c, r, out=tuple(out))

    with pytest.raises(TypeError, match="out tensor t_near must have dtype Float"):
        call(0, torch.empty(100, dtype=torch.float64))
    with pytest.raises(TypeError, match="out tensor index must have dtype Long"):
        call(2, torch.empty(100, dtype=torch.int32))
    with pytest.raises(RuntimeError, match=r"out tensor normal must have shape \[N, 3\] \(N = 100\)"):
        call(3, torch.empty(100, 2))
    with pytest.raises(RuntimeError, match="out tensor t_far must be contiguous"):
        call(1, torch.empty(200)[::2])
    with pytest.raises(RuntimeError, match="out tensor normal shares memory with dirs"):
        call(3, d)
    with pytest.raises(RuntimeError, match="out tensor t_far shares memory with t_near"):
        call(1, good[0])
    with pytest.raises(TypeError, match="out must be a tuple of 4 tensors"):
        ops.ray_sphere_intersect(o, d, c, r, out=good[:3])

    dr, nm, eta = rays(100, torch.float32, "cpu", 0)
    res = empty_like_results(ops.refract(dr, nm, eta))
    with pytest.raises(TypeError, match="out tensor tir must have dtype Bool"):
        ops.refract(dr, nm, eta, out=(res[0], res[1], torch.empty(100, dtype=torch.uint8)))
    with pytest.raises(RuntimeError, match="out tensor reflectance shares memory with eta"):
        ops.refract(dr, nm, eta, out=(res[0], eta, res[2]))


def test_out_refuses_autograd():
    o, d, c, r = scene(50, 2, torch.float64, "cpu", 0)
    out = empty_like_results(ops.ray_sphere_intersect(o, d, c, r))
    with pytest.raises(RuntimeError, match="out= does not support autograd"):
        ops.ray_sphere_intersect(o.requires_grad_(), d, c, r, out=out)
    with torch.no_grad():
        ops.ray_sphere_intersect(o, d, c, r, out=out)  # fine without grad mode


def test_out_opcheck(device):
    o, d, c, r = scene(64, 2, torch.float32, device, 0)
    out = empty_like_results(ops.ray_sphere_intersect(o, d, c, r))
    torch.library.opcheck(torch.ops.eyefast.ray_sphere_intersect.out, (o, d, c, r, True),
                          {"t_near": out[0], "t_far": out[1], "index": out[2], "normal": out[3]})
    dr, nm, eta = rays(64, torch.float32, device, 0)
    res = empty_like_results(ops.refract(dr, nm, eta))
    torch.library.opcheck(torch.ops.eyefast.refract.out, (dr, nm, eta, True),
                          {"out": res[0], "reflectance": res[1], "tir": res[2]})


def test_out_under_torch_compile():
    o, d, c, r = scene(256, 2, torch.float32, "cpu", 0)
    out = empty_like_results(ops.ray_sphere_intersect(o, d, c, r))

    def fn(o, d, c, r, out):
        t_near, _, index, _ = ops.ray_sphere_intersect(o, d, c, r, out=out)
        return torch.where(index >= 0, t_near, torch.zeros_like(t_near)).sum()

    want = fn(o, d, c, r, empty_like_results(out))
    got = torch.compile(fn, fullgraph=True, backend="aot_eager")(o, d, c, r, out)
    torch.testing.assert_close(got, want)
    assert torch.equal(out[2], ops.ray_sphere_intersect(o, d, c, r)[2])  # written in place


def test_out_bumps_versions_so_autograd_sees_reuse():
    # The buffers are overwritten in place: a graph that saved one of them must fail loudly on
    # backward instead of using the new values (the reason to reuse buffers is the next call).
    o, d, c, r = scene(5, 1, torch.float64, "cpu", 0)
    buf = empty_like_results(ops.ray_sphere_intersect(o, d, c, r))
    versions = [t._version for t in buf]
    ops.ray_sphere_intersect(o, d, c, r, out=buf)
    assert all(t._version > v for t, v in zip(buf, versions))
    w = torch.ones(5, dtype=torch.float64, requires_grad=True)
    loss = (w * buf[1]).sum()  # saves t_far for w's gradient
    ops.ray_sphere_intersect(o, d, c, r, out=buf)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    dr, nm, eta = rays(5, torch.float32, "cpu", 0)
    res = empty_like_results(ops.refract(dr, nm, eta))
    v = res[0]._version
    ops.refract(dr, nm, eta, out=res)
    assert res[0]._version > v


def test_out_refuses_buffers_that_require_grad():
    o, d, c, r = scene(5, 1, torch.float64, "cpu", 0)
    buf = list(empty_like_results(ops.ray_sphere_intersect(o, d, c, r)))
    buf[0].requires_grad_()
    with pytest.raises(RuntimeError, match="out= does not support autograd"):
        ops.ray_sphere_intersect(o, d, c, r, out=tuple(buf))
