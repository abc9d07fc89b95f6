"""ray_sphere_intersect: kernel vs reference, edge cases, gradients, opcheck, bad input."""

import math

import pytest
import torch

from eyefast import ops
from eyefast.reference import eye as ref
from conftest import rel_err


def scene(n, s, dtype, device, seed, hit_fraction=0.8):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(s, 3, generator=g, dtype=torch.float64)
    radii = torch.rand(s, generator=g, dtype=torch.float64) * 0.8 + 0.3
    origins = torch.randn(n, 3, generator=g, dtype=torch.float64) * 4
    target = centers[torch.randint(0, s, (n,), generator=g)] + 0.6 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    dirs = (target - origins) * (0.2 + 2 * torch.rand(n, 1, generator=g, dtype=torch.float64))
    miss = torch.rand(n, generator=g) > hit_fraction
    dirs[miss] = -dirs[miss]  # pointing away
    cast = lambda t: t.to(dtype=dtype, device=device)  # noqa: E731
    return cast(origins), cast(dirs), cast(centers), cast(radii)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference(device, dtype):
    for seed in range(3):
        o, d, c, r = scene(5000, 3, dtype, device, seed)
        out = ops.ray_sphere_intersect(o, d, c, r)  # outputs poisoned first (conftest)
        assert out[0].dtype == dtype and out[2].dtype == torch.int64
        # Against the float64 truth. Float32 error in t grows like 1/cos(angle between the ray
        # and the normal) (near-tangent rays), and the normal is p - c = (o - c) + t d, a
        # difference of vectors |o - c| long that cancel down to length r: its relative error is
        # about eps * |o - c| / (r cos) (here |o - c| / r ~ 10-30, cos > 0.05). Both are the
        # problem's conditioning, shared by any float32 implementation (the GPU's FMA
        # contraction rounds differently again). Hence: t within 1e-5 on rays meeting the surface
        # more than ~3 degrees from tangent, and t and normals within 1e-4 on all rays.
        exp64 = ref.ray_sphere_intersect(o.double().cpu(), d.double().cpu(), c.double().cpu(), r.double().cpu())
        assert torch.equal(out[2].cpu(), exp64[2]), "sphere index differs"
        dhat = d.double().cpu() / d.double().cpu().norm(dim=1, keepdim=True)
        cos = (exp64[3] * dhat).sum(1).abs()
        well = (cos > 0.05) | (exp64[2] < 0) | (exp64[0] == 0)
        f32 = dtype == torch.float32
        for a, b in [(out[0], exp64[0]), (out[1], exp64[1])]:
            assert rel_err(a.cpu()[well], b[well]) < (1e-5 if f32 else 1e-12)
        for a, b in [(out[0], exp64[0]), (out[1], exp64[1]), (out[3], exp64[3])]:
            assert rel_err(a, b) < (1e-4 if f32 else 1e-12)
        assert (out[2] >= 0).any() and (out[2] < 0).any()


def test_edge_cases():
    c = torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 5.5]], dtype=torch.float64)
    r = torch.tensor([1.0, 2.0], dtype=torch.float64)
    o = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # hits both; sphere 1 entered first at z=3.5
            [0.0, 0.0, 5.0],  # inside both: t_near = 0, first index, normal 0
            [0.0, 0.0, 0.0],  # pointing away
            [2.0, 0.0, 0.0],  # tangent to sphere 1 (x = 2 = r1)
            [0.0, 0.0, 10.0],  # behind both, pointing away
            [0.0, 0.0, 3.5],  # on the surface of sphere 1, entering
        ],
        dtype=torch.float64,
    )
    d = torch.tensor(
        [[0, 0, 2.0], [0, 0, 1.0], [0, 0, -1.0], [0, 0, 1.0], [0, 0, 1.0], [0, 0, 1.0]], dtype=torch.float64
    )
    tn, tf, idx, n = ops.ray_sphere_intersect(o, d, c, r)
    assert idx.tolist() == [1, 0, -1, 1, -1, 1]
    assert tn[0].item() == pytest.approx(1.75) and tf[0].item() == pytest.approx(3.75)  # t in units of |d| = 2
    assert torch.equal(n[0], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    assert tn[1].item() == 0 and tf[1].item() == pytest.approx(1.0) and n[1].abs().sum() == 0
    assert math.isinf(tn[2].item()) and math.isinf(tf[2].item()) and n[2].abs().sum() == 0
    assert tn[3].item() == pytest.approx(5.5) and tf[3].item() == pytest.approx(5.5)
    assert n[3].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert math.isinf(tn[4].item())
    assert tn[5].item() == 0 and n[5].tolist() == pytest.approx([0.0, 0.0, -1.0])
    exp = ref.ray_sphere_intersect(o, d, c, r)
    for a, b in zip((tn, tf, idx, n), exp):
        assert torch.allclose(a, b, equal_nan=False) if a.dtype != torch.int64 else torch.equal(a, b)


def test_empty_and_no_spheres(device):
    o = torch.zeros(0, 3, device=device)
    tn, tf, idx, n = ops.ray_sphere_intersect(o, o, torch.zeros(2, 3, device=device), torch.ones(2, device=device))
    assert tn.shape == (0,) and n.shape == (0, 3)
    o = torch.randn(7, 3, device=device)
    tn, tf, idx, n = ops.ray_sphere_intersect(o, o + 1, torch.zeros(0, 3, device=device), torch.ones(0, device=device))
    assert torch.isinf(tn).all() and (idx == -1).all() and (n == 0).all()


def _finite(t):
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


@pytest.mark.parametrize("which", ["t_near", "t_far", "normal"])
def test_gradcheck(device, which):
    o, d, c, r = scene(40, 3, torch.float64, device, seed=7, hit_fraction=0.9)
    k = {"t_near": 0, "t_far": 1, "normal": 3}[which]
    inputs = [t.clone().requires_grad_() for t in (o, d, c, r)]
    assert torch.autograd.gradcheck(lambda *x: _finite(ops.ray_sphere_intersect(*x)[k]), inputs)


def test_gradients_match_reference(device):
    o, d, c, r = scene(3000, 4, torch.float64, device, seed=3)
    w = [torch.randn(3000, dtype=torch.float64, device=device) for _ in range(2)] + [
        torch.randn(3000, 3, dtype=torch.float64, device=device)
    ]

    def loss(fn, *x):
        tn, tf, _, n = fn(*x)
        ww = [v.to(tn.device) for v in w]
        return (_finite(tn) * ww[0]).sum() + (_finite(tf) * ww[1]).sum() + (n * ww[2]).sum()

    a = [t.clone().requires_grad_() for t in (o, d, c, r)]
    b = [t.detach().cpu().clone().requires_grad_() for t in (o, d, c, r)]
    ga = torch.autograd.grad(loss(ops.ray_sphere_intersect, *a), a)
    gb = torch.autograd.grad(loss(ref.ray_sphere_intersect, *b), b)
    for x, y in zip(ga, gb):
        assert rel_err(x, y) < 1e-9


def test_opcheck(device):
    o, d, c, r = scene(64, 2, torch.float64, device, seed=11, hit_fraction=1.0)
    args = (o, d, c, r.requires_grad_(), True)
    torch.library.opcheck(torch.ops.eyefast.ray_sphere_intersect.default, args)


@pytest.mark.parametrize(
    "mutate,name",
    [
        (lambda a: a.__setitem__(0, a[0].float()), "dirs"),  # dtype mismatch
        (lambda a: a.__setitem__(0, a[0].to(torch.int32)), "origins"),
        (lambda a: a.__setitem__(0, a[0][:, :2]), "origins"),
        (lambda a: a.__setitem__(1, a[1][:3]), "dirs"),
        (lambda a: a.__setitem__(1, a[1].t().contiguous().t()), "dirs"),  # non-contiguous
        (lambda a: a.__setitem__(3, a[3][:1]), "radii"),
        (lambda a: a.__setitem__(2, a[2][:, 0]), "centers"),
    ],
)
def test_bad_arguments_are_named(mutate, name):
    args = list(scene(8, 2, torch.float64, "cpu", 0))
    mutate(args)
    with pytest.raises((RuntimeError, TypeError, ValueError), match=name):
        ops.ray_sphere_intersect(*args)


@pytest.mark.parametrize(
    "field,row,value,name",
    [
        (1, 5, 0.0, "dirs"),  # zero-length direction
        (0, 3, float("nan"), "origins"),
        (1, 2, float("inf"), "dirs"),
        (3, 1, -0.5, "radii"),
        (3, 0, 0.0, "radii"),
        (2, 1, float("nan"), "centers"),
    ],
)
def test_bad_values_are_named(device, field, row, value, name):
    args = list(scene(16, 2, torch.float32, device, 0))
    args[field] = args[field].clone()
    args[field][row] = value
    with pytest.raises(ValueError, match=rf"{name}\[{row}\]"):
        ops.ray_sphere_intersect(*args)
    ops.ray_sphere_intersect(*args, check=False)  # unchecked: no error, no crash


def test_cpu_cuda_device_mismatch():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    o, d, c, r = scene(8, 2, torch.float32, "cpu", 0)
    with pytest.raises(RuntimeError, match="centers"):
        ops.ray_sphere_intersect(o.cuda(), d.cuda(), c, r)
