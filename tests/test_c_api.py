"""The C API (eyefast/c_api.h) through ctypes on the loaded library, plus a hypothesis fuzz of
both ops and the C API: random shapes, values, infinities and NaNs never crash; each call gives
a result or a named error."""

import ctypes

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eyefast.core import _ext, ops

lib = ctypes.CDLL(_ext.library_path())
f32p = ctypes.POINTER(ctypes.c_float)
i32p = ctypes.POINTER(ctypes.c_int32)
u8p = ctypes.POINTER(ctypes.c_uint8)
lib.eyefast_last_error.restype = ctypes.c_char_p
lib.eyefast_ray_sphere_intersect_f32.argtypes = [f32p, f32p, ctypes.c_int64, f32p, f32p, ctypes.c_int32,
                                                 f32p, f32p, i32p, f32p]
lib.eyefast_refract_f32.argtypes = [f32p, f32p, f32p, ctypes.c_int64, f32p, f32p, u8p]
lib.eyefast_trace_eyes_f32.argtypes = [f32p, f32p, ctypes.c_int64, f32p, ctypes.c_int32, f32p, i32p, i32p, f32p,
                                       f32p, f32p, f32p, f32p]


def ptr(a, kind=f32p):
    return None if a is None else a.ctypes.data_as(kind)


def c_ray_sphere(o, d, c, r):
    n, s = o.shape[0], c.shape[0]
    tn, tf = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
    idx, nrm = np.full(n, 12345, np.int32), np.full((n, 3), np.nan, np.float32)
    code = lib.eyefast_ray_sphere_intersect_f32(ptr(o), ptr(d), n, ptr(c), ptr(r), s, ptr(tn), ptr(tf),
                                                ptr(idx, i32p), ptr(nrm))
    return code, lib.eyefast_last_error().decode(), (tn, tf, idx, nrm)


def c_refract(d, nm, eta):
    n = d.shape[0]
    out, refl, tir = np.full((n, 3), np.nan, np.float32), np.full(n, np.nan, np.float32), np.full(n, 7, np.uint8)
    code = lib.eyefast_refract_f32(ptr(d), ptr(nm), ptr(eta), n, ptr(out), ptr(refl), ptr(tir, u8p))
    return code, lib.eyefast_last_error().decode(), (out, refl, tir)


def c_trace_eyes(o, d, eyes):
    n, e = o.shape[0], eyes.shape[0]
    t, eye, region = np.full(n, np.nan, np.float32), np.full(n, 12345, np.int32), np.full(n, 12345, np.int32)
    normal, refr = np.full((n, 3), np.nan, np.float32), np.full((n, 3), np.nan, np.float32)
    fres, t_iris, uv = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32), np.full((n, 2), np.nan, np.float32)
    code = lib.eyefast_trace_eyes_f32(ptr(o), ptr(d), n, ptr(eyes), e, ptr(t), ptr(eye, i32p), ptr(region, i32p),
                                      ptr(normal), ptr(refr), ptr(fres), ptr(t_iris), ptr(uv))
    return code, lib.eyefast_last_error().decode(), (t, eye, region, normal, refr, fres, t_iris, uv)


def _eye_scene(n=2000, seed=0):
    from eyefast.core import eyes as E

    rng = np.random.default_rng(seed)
    eyes = E.pack_eyes(torch.tensor([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0]]), torch.tensor([0.3, 0.35]),
                         torch.tensor([[0.1, 0.0, 1.0], [-0.1, 0.1, 1.0]]), ior=torch.tensor([1.336, 0.8])).numpy()
    o = (np.array([0.0, 0.0, 3.0]) + 0.2 * rng.standard_normal((n, 3))).astype(np.float32)
    target = eyes[rng.integers(0, 2, n), :3] + 0.4 * rng.standard_normal((n, 3))
    return o, (target - o).astype(np.float32), np.ascontiguousarray(eyes, np.float32)


def test_c_api_trace_eyes_matches_torch_op():
    o, d, eyes = _eye_scene()
    code, msg, got = c_trace_eyes(o, d, eyes)
    assert code == 0 and msg == ""
    exp = ops.trace_eyes(*map(torch.from_numpy, (o, d, eyes)))
    assert set(exp.region.tolist()) == {0, 1, 2, 3}
    for a, b in zip(got, exp):
        assert np.array_equal(a, b.numpy().astype(a.dtype)), "C API and torch op differ"


def test_c_api_trace_eyes_errors():
    o, d, eyes = _eye_scene(8)
    bad = eyes.copy()
    bad[1, 9] = 0.0  # limbus_radius
    code, msg, _ = c_trace_eyes(o, d, bad)
    assert code == 3 and "limbus_radius" in msg and "row 1" in msg
    bad = eyes.copy()
    bad[0, 4:7] = [0.0, 0.0, -1.0]
    code, msg, _ = c_trace_eyes(o, d, bad)
    assert code == 3 and "-z" in msg and "row 0" in msg
    d2 = d.copy()
    d2[3] = 0
    code, msg, _ = c_trace_eyes(o, d2, eyes)
    assert code == 3 and "dirs" in msg and "row 3" in msg
    args = [None] * 13
    args[2], args[4] = 4, 0
    assert lib.eyefast_trace_eyes_f32(*args) == 1 and "origins" in lib.eyefast_last_error().decode()
    args[2] = -1
    assert lib.eyefast_trace_eyes_f32(*args) == 2
    args[2], args[4] = 0, 2
    assert lib.eyefast_trace_eyes_f32(*args) == 1 and "eyes" in lib.eyefast_last_error().decode()
    args[4] = 0
    assert lib.eyefast_trace_eyes_f32(*args) == 0  # nothing to do is fine


def test_c_api_matches_torch_op():
    rng = np.random.default_rng(0)
    o = (rng.standard_normal((1000, 3)) * 3).astype(np.float32)
    c = rng.standard_normal((2, 3)).astype(np.float32)
    d = (c[rng.integers(0, 2, 1000)] - o + 0.3 * rng.standard_normal((1000, 3))).astype(np.float32)
    r = np.array([0.5, 0.7], np.float32)
    code, msg, (tn, tf, idx, nrm) = c_ray_sphere(o, d, c, r)
    assert code == 0 and msg == ""
    ref = ops.ray_sphere_intersect(*map(torch.from_numpy, (o, d, c, r)))
    assert np.array_equal(tn, ref[0].numpy()) and np.array_equal(tf, ref[1].numpy())
    assert np.array_equal(idx, ref[2].numpy().astype(np.int32)) and np.array_equal(nrm, ref[3].numpy())
    nm = rng.standard_normal((1000, 3)).astype(np.float32)
    eta = (0.5 + rng.random(1000)).astype(np.float32)
    code, msg, (out, refl, tir) = c_refract(d, nm, eta)
    assert code == 0
    ref = ops.refract(*map(torch.from_numpy, (d, nm, eta)))
    assert np.array_equal(out, ref[0].numpy()) and np.array_equal(refl, ref[1].numpy())
    assert np.array_equal(tir.astype(bool), ref[2].numpy())


def test_c_api_errors():
    o = np.zeros((4, 3), np.float32)
    d = np.ones((4, 3), np.float32)
    code, msg, _ = c_ray_sphere(o, d, np.zeros((1, 3), np.float32), np.array([-1.0], np.float32))
    assert code == 3 and "radii" in msg
    d[2] = 0
    code, msg, _ = c_ray_sphere(o, d, np.zeros((1, 3), np.float32), np.array([1.0], np.float32))
    assert code == 3 and "dirs" in msg and "row 2" in msg
    code = lib.eyefast_ray_sphere_intersect_f32(None, ptr(d), 4, None, None, 0, None, None, None, None)
    assert code == 1 and "origins" in lib.eyefast_last_error().decode()
    code = lib.eyefast_ray_sphere_intersect_f32(None, None, -1, None, None, 0, None, None, None, None)
    assert code == 2 and "n must be" in lib.eyefast_last_error().decode()
    code = lib.eyefast_ray_sphere_intersect_f32(None, None, 0, None, None, 0, None, None, None, None)
    assert code == 0  # nothing to do is fine
    code, msg, _ = c_refract(np.ones((4, 3), np.float32), np.ones((4, 3), np.float32), np.full(4, np.nan, np.float32))
    assert code == 3 and "eta" in msg
    assert lib.eyefast_has_cuda() in (0, 1)


special = st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-30, 1e30, float("inf"), float("-inf"), float("nan")])
floats = st.one_of(st.floats(-1e3, 1e3, width=32), special)


def arr(draw, shape):
    return np.array(draw(st.lists(floats, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))),
                    np.float32).reshape(shape)


def _nonzero(v) -> bool:
    """Every row of ``v`` has a nonzero component: a direction of any length > 0 is valid, however tiny
    (the kernels scale it by a power of two before squaring, so a denormal one does not read as zero)."""
    return bool((v != 0).any(1).all())


@st.composite
def eye_inputs(draw):
    n = draw(st.integers(0, 12))
    s = draw(st.integers(0, 3))
    return arr(draw, (n, 3)), arr(draw, (n, 3)), arr(draw, (s, 3)), arr(draw, (s,)), arr(draw, (n,))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(eye_inputs())
def test_fuzz_ops_and_c_api(inputs):
    with np.errstate(over="ignore", invalid="ignore"):  # squares of 1e30 overflow on purpose
        _fuzz_once(*inputs)


def _fuzz_once(o, d, c, r, eta):
    t = list(map(torch.from_numpy, (o, d, c, r, eta)))
    finite_ok = all(np.isfinite(x).all() for x in (o, d, c, r))
    valid = finite_ok and (r > 0).all() and _nonzero(d)
    try:
        tn, tf, idx, nrm = ops.ray_sphere_intersect(*t[:4])
        assert valid, "invalid input was accepted"
        assert ((idx >= -1) & (idx < max(len(r), 1))).all()
        assert not torch.isnan(tn).any() or not np.isfinite(np.square(d).sum(1)).all()
    except ValueError as e:
        assert not valid and any(k in str(e) for k in ("origins", "dirs", "centers", "radii"))
    code, msg, _ = c_ray_sphere(o, d, c, r)
    assert (code == 0) == bool(valid) and (code == 0 or msg)
    nm = o  # reuse as normals
    valid_r = (np.isfinite(d).all() and np.isfinite(nm).all() and _nonzero(d)
               and _nonzero(nm) and np.isfinite(eta).all() and (eta > 0).all())
    try:
        out, refl, tir = ops.refract(t[1], t[0], t[4])
        assert valid_r
    except ValueError as e:
        assert not valid_r and any(k in str(e) for k in ("dirs", "normals", "eta"))
    code, msg, _ = c_refract(d, nm, eta)
    assert (code == 0) == bool(valid_r)
    # Unchecked calls must not crash either, whatever they return.
    ops.ray_sphere_intersect(*t[:4], check=False)
    ops.refract(t[1], t[0], t[4], check=False)


@st.composite
def trace_inputs(draw):
    n = draw(st.integers(0, 8))
    e = draw(st.integers(0, 3))
    eyes = arr(draw, (e, 12))
    if draw(st.booleans()):  # mostly plausible eyes, so that valid calls happen too
        eyes[:, 3] = np.abs(eyes[:, 3]) + 0.5
        eyes[:, 6] = np.abs(eyes[:, 6]) + 1.0
        eyes[:, [7, 9, 11]] = np.abs(eyes[:, [7, 9, 11]]) + 0.1
    return arr(draw, (n, 3)), arr(draw, (n, 3)), eyes


def _trace_valid(o, d, eyes):
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if not (np.isfinite(o).all() and np.isfinite(d).all() and np.isfinite(eyes).all()):
            return False
        if not _nonzero(d):
            return False
        g = eyes[:, 4:7]
        gl2 = np.square(g).sum(1, dtype=np.float32)
        if not (np.isfinite(gl2) & (gl2 > 0)).all():
            return False
        if (g[:, 2] / np.sqrt(gl2) <= np.float32(-1) + np.float32(1e-6)).any():
            return False
        return bool((eyes[:, [3, 7, 9, 11]] > 0).all())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace_inputs())
def test_fuzz_trace_eyes(inputs):
    o, d, eyes = inputs
    valid = _trace_valid(o, d, eyes)
    with np.errstate(over="ignore", invalid="ignore"):
        t = list(map(torch.from_numpy, (o, d, eyes)))
        try:
            out = ops.trace_eyes(*t)
            assert valid, "invalid input was accepted"
            assert ((out.eye >= -1) & (out.eye < max(len(eyes), 1))).all() and ((out.region >= 0) & (out.region <= 3)).all()
        except ValueError as err:
            assert not valid and any(k in str(err) for k in ("origins", "dirs", "eyes"))
        code, msg, _ = c_trace_eyes(o, d, eyes)
        assert (code == 0) == valid and (code == 0 or msg)
        out = ops.trace_eyes(*t, check=False)  # unchecked: must not crash, whatever it returns
        assert ((out.region >= 0) & (out.region <= 3)).all()


@pytest.mark.parametrize("shape", [(5,), (5, 4), (2, 3, 3)])
def test_fuzz_shapes_are_named(shape):
    bad = torch.zeros(shape)
    good = torch.ones(5, 3)
    with pytest.raises(RuntimeError, match="origins"):
        ops.ray_sphere_intersect(bad, good, torch.zeros(1, 3), torch.ones(1))
    with pytest.raises(RuntimeError, match="normals"):
        ops.refract(good, bad, 1.2)


def test_c_api_cuda_twins():
    from conftest import CUDA_OK

    if not CUDA_OK:
        pytest.skip("needs a CUDA GPU and CUDA kernels")
    vp, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    lib.eyefast_ray_sphere_intersect_f32_cuda.argtypes = [vp, vp, i64, vp, vp, i32, vp, vp, vp, vp, vp]
    lib.eyefast_refract_f32_cuda.argtypes = [vp, vp, vp, i64, vp, vp, vp, vp]
    assert lib.eyefast_has_cuda() == 1
    g = torch.Generator().manual_seed(3)
    o = (torch.randn(5000, 3, generator=g) * 3).cuda()
    c = torch.randn(2, 3, generator=g).cuda()
    d = c[torch.randint(0, 2, (5000,), generator=g).cuda()] - o
    r = torch.tensor([0.5, 0.7]).cuda()
    tn, tf, nrm = torch.full((5000,), float("nan"), device="cuda"), torch.empty(5000, device="cuda"), torch.empty(5000, 3, device="cuda")
    idx = torch.empty(5000, dtype=torch.int32, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream
    code = lib.eyefast_ray_sphere_intersect_f32_cuda(o.data_ptr(), d.data_ptr(), 5000, c.data_ptr(), r.data_ptr(), 2,
                                                     tn.data_ptr(), tf.data_ptr(), idx.data_ptr(), nrm.data_ptr(), stream)
    assert code == 0, lib.eyefast_last_error()
    ref = ops.ray_sphere_intersect(o, d, c, r)
    assert torch.equal(tn, ref[0]) and torch.equal(idx.long(), ref[2]) and torch.equal(nrm, ref[3])
    r_bad = torch.tensor([0.5, -1.0]).cuda()
    code = lib.eyefast_ray_sphere_intersect_f32_cuda(o.data_ptr(), d.data_ptr(), 5000, c.data_ptr(), r_bad.data_ptr(), 2,
                                                     tn.data_ptr(), tf.data_ptr(), idx.data_ptr(), nrm.data_ptr(), stream)
    assert code == 3 and b"radii" in lib.eyefast_last_error()
    nm = torch.randn(5000, 3, generator=g).cuda()
    eta = torch.full((5000,), 0.7, device="cuda")
    out, refl = torch.empty(5000, 3, device="cuda"), torch.empty(5000, device="cuda")
    tir = torch.empty(5000, dtype=torch.uint8, device="cuda")
    code = lib.eyefast_refract_f32_cuda(d.data_ptr(), nm.data_ptr(), eta.data_ptr(), 5000, out.data_ptr(),
                                        refl.data_ptr(), tir.data_ptr(), stream)
    assert code == 0
    ref = ops.refract(d, nm, eta)
    assert torch.equal(out, ref[0]) and torch.equal(refl, ref[1]) and torch.equal(tir.bool(), ref[2])
    lib.eyefast_trace_eyes_f32_cuda.argtypes = [vp, vp, i64, vp, i32, vp, vp, vp, vp, vp, vp, vp, vp, vp]
    o, d, eyes = (torch.from_numpy(x).cuda() for x in _eye_scene(5000))
    exp = ops.trace_eyes(o, d, eyes)
    got = [torch.full_like(x, 7) if x.dtype != torch.int64 else torch.full_like(x, 7, dtype=torch.int32) for x in exp]
    code = lib.eyefast_trace_eyes_f32_cuda(o.data_ptr(), d.data_ptr(), 5000, eyes.data_ptr(), 2,
                                           *[x.data_ptr() for x in got], stream)
    assert code == 0, lib.eyefast_last_error()
    for a, b in zip(got, exp):
        assert torch.equal(a.to(b.dtype), b)
    eyes[1, 3] = -1.0
    code = lib.eyefast_trace_eyes_f32_cuda(o.data_ptr(), d.data_ptr(), 5000, eyes.data_ptr(), 2,
                                           *[x.data_ptr() for x in got], stream)
    assert code == 3 and b"radius" in lib.eyefast_last_error()
