"""trace_eyes: fused kernel vs reference (all regions, misses, origins inside an eye, TIR, grazing
rays, E = 0..3, N = 0), Snell / Fresnel identities, gradients, opcheck, bad input."""

import math

import pytest
import torch

from eyefast import ops
from eyefast.core import eyes as E
from eyefast.reference import eye as ref
from conftest import rel_err

OUT_NAMES = ("t", "eye", "region", "normal", "refr_dir", "fresnel", "t_iris", "iris_uv")
IORS = (1.336, 0.75, 1.45)  # eye 1 has ior < 1: total internal reflection at oblique incidence


def make_eyes(e, seed, iors=IORS, dtype=torch.float64):
    """E eyes in a row along x (eye 2, if any, behind and between the others), gazing roughly at a
    camera on +z, with model-eye ratios jittered (the limbus 75-95 % of the cornea cap's rim radius,
    so that rays through the rim can miss the iris) and gaze rows of random length."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([[-1.6, 0.0, 0.0], [1.6, 0.2, -0.3], [0.0, -0.3, -2.5]], dtype=torch.float64)[:e]
    centers = base + 0.1 * torch.randn(e, 3, generator=g, dtype=torch.float64)
    radii = 0.8 + 0.4 * torch.rand(e, generator=g, dtype=torch.float64)
    gaze = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) + 0.35 * torch.randn(e, 3, generator=g, dtype=torch.float64)
    gaze = gaze * (0.5 + torch.rand(e, 1, generator=g, dtype=torch.float64))  # not unit length

    def jit(key):
        return E.MODEL_EYE[key] * (1 + 0.05 * torch.randn(e, generator=g, dtype=torch.float64))

    cr, co = jit("cornea_radius"), jit("cornea_offset")
    seam = (1 + co ** 2 - cr ** 2) / (2 * co)  # the cap's rim: height along the gaze and radius (units of r)
    limbus = (1 - seam ** 2).sqrt() * (0.75 + 0.2 * torch.rand(e, generator=g, dtype=torch.float64))
    eyes = E.pack_eyes(centers, radii, gaze, cr, co, limbus,
                         jit("iris_depth"), torch.tensor([iors[k % len(iors)] for k in range(e)], dtype=torch.float64))
    return eyes.to(dtype)


def _geometry(eyes):
    c, r = eyes[:, 0:3], eyes[:, 3]
    g = eyes[:, 4:7] / eyes[:, 4:7].norm(dim=1, keepdim=True)
    apex = c + g * ((eyes[:, 7] + eyes[:, 8]) * r)[:, None]
    ic = c + g * ((eyes[:, 7] + eyes[:, 8] - eyes[:, 10]) * r)[:, None]
    return c, r, g, apex, ic


def make_rays(eyes, n, seed, dtype=torch.float64):
    """A mix of rays from a camera near (0, 0, 8): at the iris/cornea (region 2 and 3), at the globe
    (sclera), grazing a globe or a cornea, missing, and a few starting inside an eye."""
    g = torch.Generator().manual_seed(seed)
    eyes = eyes.double()
    e = eyes.shape[0]
    origins = torch.tensor([0.0, 0.0, 8.0], dtype=torch.float64) + 0.7 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    if e == 0:
        dirs = torch.randn(n, 3, generator=g, dtype=torch.float64)
        return origins.to(dtype), dirs.to(dtype)
    c, r, gz, apex, ic = _geometry(eyes)
    k = torch.randint(0, e, (n,), generator=g)
    kind = torch.randint(0, 10, (n,), generator=g)
    lr = (eyes[:, 9] * r)[k]
    # 0-2: around the iris (within ~1.3 limbus radii of the pupil axis) -> iris or cornea-only
    target = ic[k] + 1.3 * lr[:, None] * (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1)
    # 3: the cornea's rim, oblique: refracted rays that miss the iris (cornea only, region 3)
    side = torch.cross(gz[k], torch.randn(n, 3, generator=g, dtype=torch.float64), dim=1)
    side = side / side.norm(dim=1, keepdim=True)
    side = torch.where(((side * (origins - c[k])).sum(1) < 0)[:, None], -side, side)
    cc = c[k] + gz[k] * (eyes[:, 8] * r)[k][:, None]
    rc = (eyes[:, 7] * r)[k]
    zc = (eyes[:, 8][k])[:, None]
    seam = (1 + zc ** 2 - (eyes[:, 7][k])[:, None] ** 2) / (2 * zc)  # height of the globe/cornea seam (units of r)
    h = seam + 0.04 * torch.rand(n, 1, generator=g, dtype=torch.float64)  # just inside the cap's rim
    rim = cc + r[k][:, None] * ((h - zc) * gz[k] + ((rc / r[k])[:, None] ** 2 - (h - zc) ** 2).clamp(min=0).sqrt() * side)
    target = torch.where((kind == 3)[:, None], rim, target)
    # 4-5: the globe
    w = torch.randn(n, 3, generator=g, dtype=torch.float64)
    w = w / w.norm(dim=1, keepdim=True)
    w = torch.where(((w * (origins - c[k])).sum(1) < 0)[:, None], -w, w)  # on the side facing the camera
    target = torch.where(((kind >= 4) & (kind <= 5))[:, None], c[k] + 0.97 * r[k][:, None] * w, target)
    # 6: grazing the globe or the cornea sphere (1e-7 .. 1e-2 inside the silhouette)
    to_c = c[k] - origins
    perp = torch.cross(to_c, torch.randn(n, 3, generator=g, dtype=torch.float64), dim=1)
    perp = perp / perp.norm(dim=1, keepdim=True)
    depth = 10 ** (-7 + 5 * torch.rand(n, 1, generator=g, dtype=torch.float64))
    graze_cornea = torch.rand(n, generator=g) < 0.5
    gc = torch.where(graze_cornea[:, None], cc, c[k])
    gr = torch.where(graze_cornea, rc, r[k])
    target = torch.where((kind == 6)[:, None], gc + (1 - depth) * gr[:, None] * perp, target)
    # 7: misses (away from the eyes)
    target = torch.where((kind == 7)[:, None], origins + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
                         + 0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64), target)
    dirs = target - origins
    # 8: origin inside the globe; 9: inside the cornea sphere only (just behind the apex)
    inside_g = kind == 8
    inside_c = kind == 9
    origins = torch.where(inside_g[:, None], c[k] + 0.4 * r[k][:, None] * torch.randn(n, 3, generator=g, dtype=torch.float64).clamp(-1, 1), origins)
    origins = torch.where(inside_c[:, None], apex[k] - 0.05 * r[k][:, None] * gz[k], origins)
    d_in = torch.randn(n, 3, generator=g, dtype=torch.float64)
    dirs = torch.where((inside_g | inside_c)[:, None], d_in, dirs)
    dirs = dirs * (0.3 + 2.7 * torch.rand(n, 1, generator=g, dtype=torch.float64))  # not unit length
    return origins.to(dtype), dirs.to(dtype)


def scene(n, e, dtype, device, seed):
    eyes = make_eyes(e, seed)
    o, d = make_rays(eyes, n, seed + 100)
    cast = lambda t: t.to(dtype=dtype, device=device)  # noqa: E731
    return cast(o), cast(d), cast(eyes)


def stable_mask(o, d, eyes, rel=1e-5, trials=4, seed=0):
    """Rays whose (eye, region) the float64 reference keeps under random relative perturbations of
    size `rel` of the inputs: away from the decision boundaries (tangency, the sclera/cornea seam,
    the limbus edge, the critical angle, an origin on a surface, equal distances to two eyes)."""
    o, d, eyes = o.double().cpu(), d.double().cpu(), eyes.double().cpu()
    base = ref.trace_eyes(o, d, eyes)
    g = torch.Generator().manual_seed(seed)
    ok = torch.ones(o.shape[0], dtype=torch.bool)
    for _ in range(trials):
        def jig(x):
            return x * (1 + rel * torch.randn(x.shape, generator=g, dtype=torch.float64)) + rel * torch.randn(
                x.shape, generator=g, dtype=torch.float64)
        out = ref.trace_eyes(jig(o), jig(d), jig(eyes))
        ok &= (out[1] == base[1]) & (out[2] == base[2])
    return ok


@pytest.mark.parametrize("e", [0, 1, 2, 3])
def test_matches_reference_float64(device, e):
    o, d, eyes = scene(6000, e, torch.float64, device, seed=e)
    out = ops.trace_eyes(o, d, eyes)  # outputs poisoned first (conftest): every element must be written
    assert isinstance(out, ops.EyeTrace) and out._fields == OUT_NAMES
    exp = ref.trace_eyes(o.cpu(), d.cpu(), eyes.cpu())
    for name, a, b in zip(OUT_NAMES, out, exp):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if a.dtype == torch.int64:
            assert torch.equal(a.cpu(), b), name
        else:
            assert rel_err(a, b) < 1e-12, name
    if e:
        region = out.region.cpu()
        counts = torch.bincount(region, minlength=4)
        assert (counts > 50).all(), f"scene should cover every region, got {counts.tolist()}"
        if e >= 2:
            inside = o.cpu()[:, None, :] - eyes.cpu()[None, :, :3]
            assert ((inside.norm(dim=-1) < eyes.cpu()[:, 3]).any(1) & (region > 0)).any(), "origin inside an eye, hit on another"
            tir = (region == 3) & (out.fresnel.cpu() == 1)
            assert tir.sum() > 10, "ior < 1 eye should totally reflect some rays"


@pytest.mark.parametrize("e", [1, 2, 3])
def test_matches_reference_float32(device, e):
    o, d, eyes = scene(6000, e, torch.float32, device, seed=10 + e)
    out = ops.trace_eyes(o, d, eyes)
    o, d, eyes = o.cpu(), d.cpu(), eyes.cpu()
    exp64 = ref.trace_eyes(o.double(), d.double(), eyes.double())  # the truth for these float32 inputs
    exp32 = ref.trace_eyes(o, d, eyes)  # the reference in float32 arithmetic
    # Discrete outputs: equal wherever the float64 classification is stable under 1e-5 relative
    # input perturbations (away from tangency, the seam, the limbus edge, the critical angle, an
    # origin on a surface); float32 rounding may flip the rest (a few rays in a thousand).
    stable = stable_mask(o, d, eyes)
    assert stable.float().mean() > 0.97
    for k in (1, 2):
        assert torch.equal(out[k].cpu()[stable], exp64[k][stable]), OUT_NAMES[k]
        assert torch.equal(out[k].cpu()[stable], exp32[k][stable]), OUT_NAMES[k]
    # Continuous outputs. The contract's formulas are ill-conditioned in float32 by themselves: the
    # hit point p = o + t d is formed in world coordinates, so p and normal = (p - C) / R carry an
    # absolute error ~ eps |o - p| (cameras ~10 radii away: ~1e-5 relative on the normal; more near
    # tangency, like ray_sphere_intersect), and t_iris, measured from p, carries the same absolute
    # error over a length ~50x shorter. The float32 reference has exactly these errors. So: against
    # the float64 truth no worse than the float32 reference (x 1.5), and on the CPU, which performs
    # the reference's operations in the same order, within 1e-5 of the float32 reference (t_iris:
    # 3e-5, for the reason above). (On CUDA, FMA contraction rounds independently, errors of the
    # same size but not the same ones: x 2 against the truth, heavy-tailed near tangency.)
    cuda = out.t.is_cuda
    for k in (0, 3, 4, 5, 6, 7):
        a, b32, b64 = out[k].cpu()[stable], exp32[k][stable], exp64[k][stable]
        assert rel_err(a, b64) <= (2.0 if cuda else 1.5) * rel_err(b32, b64) + 1e-7, OUT_NAMES[k]
        if not cuda:
            assert rel_err(a, b32) < (3e-5 if k == 6 else 1e-5), OUT_NAMES[k]


def test_sclera_t_is_ray_sphere_t_bitwise(device):
    # Same root formula as ray_sphere_intersect (ray_sphere.h's sphere_roots): identical bits.
    o, d, eyes = scene(5000, 2, torch.float32, device, seed=3)
    out = ops.trace_eyes(o, d, eyes)
    t_near, _, index, _ = ops.ray_sphere_intersect(o, d, eyes[:, :3].contiguous(), eyes[:, 3].contiguous())
    c, r, g, _, _ = _geometry(eyes.double().cpu())
    cc, rc = c + g * (eyes[:, 8].double().cpu() * r)[:, None], eyes[:, 7].double().cpu() * r
    oo = o.double().cpu()[:, None]
    outside = (((oo - c).norm(dim=-1) > r * 1.001) & ((oo - cc).norm(dim=-1) > rc * 1.001)).all(1)  # ray_sphere enters at 0
    sclera = (out.region == 1) & outside.to(out.region.device)
    assert sclera.sum() > 1000
    assert torch.equal(out.t[sclera], t_near[sclera]) and torch.equal(out.eye[sclera], index[sclera])


def test_empty(device):
    eyes = make_eyes(2, 0).to(device)
    z = torch.zeros(0, 3, dtype=torch.float64, device=device)
    out = ops.trace_eyes(z, z, eyes)
    assert [tuple(x.shape) for x in out] == [(0,), (0,), (0,), (0, 3), (0, 3), (0,), (0,), (0, 2)]
    assert out.eye.dtype == torch.int64 and out.region.dtype == torch.int64
    o, d = make_rays(eyes.cpu(), 9, 0)
    out = ops.trace_eyes(o.to(device), d.to(device), eyes[:0])
    assert torch.isinf(out.t).all() and (out.eye == -1).all() and (out.region == 0).all()
    assert torch.isinf(out.t_iris).all() and (out.normal == 0).all() and (out.iris_uv == 0).all()


def _unit(v):
    return v / v.norm(dim=-1, keepdim=True)


def test_edge_cases():
    # One model eye at the origin gazing at +z (radius 1): the apex is at z = 1.108.
    eyes = E.pack_eyes(torch.zeros(1, 3, dtype=torch.float64), 1.0, torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64))
    apex = E.MODEL_EYE["cornea_radius"] + E.MODEL_EYE["cornea_offset"]
    o = torch.tensor([
        [0.0, 0.0, 5.0],    # 0: straight at the apex: iris centre, normal incidence
        [0.0, 0.9, 5.0],    # 1: sclera (above the cornea cap)
        [0.0, 5.0, 5.0],    # 2: miss
        [0.0, 0.0, 0.5],    # 3: origin inside the globe: eye ignored -> miss
        [0.0, 0.0, 1.05],   # 4: origin inside the cornea sphere only (in front of the globe): ignored
        [0.0, 0.0, -5.0],   # 5: from behind, hits the back of the globe (sclera)
        [0.0, 0.0, apex],   # 6: origin exactly on the apex, entering: t = 0 on the cornea
    ], dtype=torch.float64)
    d = torch.tensor([[0, 0, -2.0], [0, 0, -1.0], [0, 0, -1.0], [0, 0, -1.0], [0, 0, -1.0], [0, 0, 1.0],
                      [0, 0, -1.0]], dtype=torch.float64)
    out = ops.trace_eyes(o, d, eyes)
    assert out.region.tolist() == [2, 1, 0, 0, 0, 1, 2]
    assert out.eye.tolist() == [0, 0, -1, -1, -1, 0, 0]
    assert out.t[0].item() == pytest.approx((5.0 - apex) / 2)  # t in units of |d| = 2
    assert out.normal[0].tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert out.refr_dir[0].tolist() == pytest.approx([0.0, 0.0, -1.0])
    assert out.t_iris[0].item() == pytest.approx(E.MODEL_EYE["iris_depth"])
    assert out.iris_uv[0].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert math.isinf(out.t[3].item()) and math.isinf(out.t[4].item())
    assert out.t[5].item() == pytest.approx(4.0) and out.normal[5].tolist() == pytest.approx([0.0, 0.0, -1.0])
    assert out.t[6].item() == 0.0
    exp = ref.trace_eyes(o, d, eyes)
    for a, b in zip(out, exp):
        assert torch.equal(a, b) if a.dtype == torch.int64 else torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    # Ties: two identical eyes -> the lower index; an origin inside eye 0 sees eye 1 behind it.
    two = torch.cat([eyes, eyes])
    out = ops.trace_eyes(o[:2], d[:2], two)
    assert out.eye.tolist() == [0, 0]
    behind = eyes.clone()
    behind[0, 2] = -3.0
    out = ops.trace_eyes(o[3:4], d[3:4], torch.cat([eyes, behind]))
    assert out.eye.tolist() == [1] and out.region.tolist() == [2]


def test_iris_uv_axes():
    # uv follows gaze_frame: for gaze +z the axes are world x and y; the disc edge is uv = 1.
    eyes = E.pack_eyes(torch.zeros(1, 3, dtype=torch.float64), 2.0, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64),
                         ior=1.0)  # ior 1: straight through, so uv is the ray's own offset
    lr = 2.0 * E.MODEL_EYE["limbus_radius"]
    # (the cornea cap's rim is at 1.035 limbus radii: the third ray enters the cornea beyond the iris)
    o = torch.tensor([[0.3 * lr, 0.0, 9.0], [0.0, -0.6 * lr, 9.0], [1.02 * lr, 0.0, 9.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, -1.0]] * 3, dtype=torch.float64)
    out = ops.trace_eyes(o, d, eyes)
    assert out.region.tolist() == [2, 2, 3]
    assert out.iris_uv[:2].flatten().tolist() == pytest.approx([0.3, 0.0, 0.0, -0.6])
    assert out.fresnel[:2].abs().max() < 1e-15 and math.isinf(out.t_iris[2].item())


def test_snell_and_fresnel_identities():
    o, d, eyes = scene(8000, 3, torch.float64, "cpu", seed=5)
    out = ops.trace_eyes(o, d, eyes)
    corn = out.region >= 2
    ior = eyes[:, 11][out.eye.clamp(min=0)]
    u = _unit(d)
    n = out.normal
    tir = corn & (out.fresnel == 1)
    refr = corn & ~tir
    assert refr.sum() > 100 and tir.sum() > 10
    # n1 sin_i = n2 sin_t with n1 = 1, n2 = ior; u, n and refr_dir coplanar; refr_dir unit and inward.
    sin_i = torch.cross(u, n, dim=1).norm(dim=1)
    sin_t = torch.cross(out.refr_dir, n, dim=1).norm(dim=1)
    assert torch.allclose(sin_i[refr], (ior * sin_t)[refr], atol=1e-12)
    plane = torch.cross(u, n, dim=1)
    assert (out.refr_dir * plane).sum(1)[corn].abs().max() < 1e-12
    assert torch.allclose(out.refr_dir[corn].norm(dim=1), torch.ones(int(corn.sum()), dtype=torch.float64))
    assert ((out.refr_dir * n).sum(1)[refr] < 0).all()
    # Total internal reflection (ior < 1 eye, oblique): mirror direction, R = 1, never on the iris.
    mirror = u - 2 * (u * n).sum(1, keepdim=True) * n
    assert torch.allclose(out.refr_dir[tir], mirror[tir], atol=1e-12)
    assert (eyes[out.eye[tir], 11] < 1).all() and (out.region[tir] == 3).all()
    assert ((out.fresnel >= 0) & (out.fresnel <= 1)).all()
    assert (out.fresnel[~corn] == 0).all() and (out.refr_dir[~corn] == 0).all()
    # Iris hits lie on the iris plane, within the limbus.
    c, r, g, apex, ic = _geometry(eyes)
    iris = out.region == 2
    k = out.eye[iris]
    q = o[iris] + out.t[iris, None] * d[iris] + out.t_iris[iris, None] * out.refr_dir[iris]
    assert ((q - ic[k]) * g[k]).sum(1).abs().max() < 1e-12
    assert ((q - ic[k]).norm(dim=1) <= (eyes[k, 9] * r[k]) * (1 + 1e-12)).all()
    assert torch.allclose(out.iris_uv[iris].norm(dim=1), (q - ic[k]).norm(dim=1) / (eyes[k, 9] * r[k]))


@pytest.mark.parametrize("ior", [1.336, 1.5, 0.75])
def test_fresnel_limits(ior):
    # Normal incidence on the apex: R = ((ior - 1) / (ior + 1))^2, for any gaze.
    gaze = torch.tensor([[0.3, -0.2, 0.9]], dtype=torch.float64)
    g = _unit(gaze)
    eyes = E.pack_eyes(torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64), 1.2, gaze, ior=ior)
    _, _, _, apex, _ = _geometry(eyes)
    o = apex + 4 * g
    out = ops.trace_eyes(o, -g, eyes)
    assert out.region.item() == 2
    assert out.fresnel.item() == pytest.approx(((ior - 1) / (ior + 1)) ** 2, rel=1e-10)
    assert out.refr_dir[0].tolist() == pytest.approx((-g[0]).tolist())
    # Grazing the cornea: R -> 1 (ior > 1: continuously; ior < 1: total internal reflection).
    cc = eyes[:, :3] + g * (eyes[:, 8] * eyes[:, 3])[:, None]
    rc = (eyes[:, 7] * eyes[:, 3]).item()
    side = _unit(torch.cross(g, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), dim=1))
    refl = []
    for eps in (1e-2, 1e-4, 1e-6):
        start = cc + (1 - eps) * rc * g - 3 * side  # a ray along `side` just inside the cornea's apex rim
        out = ops.trace_eyes(start, side, eyes)
        assert out.region.item() == (3 if ior < 1 else 2)  # (ior > 1: bent down to the iris at the critical angle)
        refl.append(out.fresnel.item())
    assert refl[0] < refl[1] < refl[2] <= 1.0 or (ior < 1 and refl == [1.0, 1.0, 1.0])
    assert refl[2] > 0.99


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------
def _finite(t):
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def _grad_scene(n, e, device, seed, rel=1e-4):
    """Rays of every region, away from the region boundaries (stable under 1e-4 perturbations) and
    not grazing (finite differences of size 1e-6 must stay in the same branch)."""
    o, d, eyes = scene(4 * n, e, torch.float64, "cpu", seed)
    ok = stable_mask(o, d, eyes, rel=rel, trials=6, seed=seed)
    exp = ref.trace_eyes(o, d, eyes)
    cos = -(exp[3] * _unit(d)).sum(1)
    ok &= (exp[2] == 0) | (cos > 0.05)
    idx = []
    for reg in range(4):  # a balanced mix of regions
        idx.append(torch.nonzero(ok & (exp[2] == reg))[:, 0][: n // 4])
    idx = torch.cat(idx)
    return o[idx].to(device), d[idx].to(device), eyes.to(device)


@pytest.mark.parametrize("which", ["t", "normal", "refr_dir", "fresnel", "t_iris", "iris_uv"])
def test_gradcheck(device, which):
    o, d, eyes = _grad_scene(24, 2, device, seed=21)
    k = OUT_NAMES.index(which)
    inputs = [t.clone().requires_grad_() for t in (o, d, eyes)]
    assert torch.autograd.gradcheck(lambda *x: _finite(ops.trace_eyes(*x)[k]), inputs)


def test_gradcheck_three_eyes_all_outputs(device):
    o, d, eyes = _grad_scene(32, 3, device, seed=33)

    def f(*x):
        out = ops.trace_eyes(*x)
        return tuple(_finite(out[k]) for k in (0, 3, 4, 5, 6, 7))

    inputs = [t.clone().requires_grad_() for t in (o, d, eyes)]
    assert torch.autograd.gradcheck(f, inputs)


def _weighted_loss(out, w):
    return sum((_finite(out[k]) * w[j].to(out[k].device)).sum() for j, k in enumerate((0, 3, 4, 5, 6, 7)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradients_match_reference(device, dtype):
    o, d, eyes = _grad_scene(4000, 3, "cpu", seed=4, rel=1e-5)
    n = o.shape[0]
    g = torch.Generator().manual_seed(1)
    w = [torch.randn(shape, generator=g, dtype=torch.float64) for shape in ((n,), (n, 3), (n, 3), (n,), (n,), (n, 2))]

    def grads(fn, dt, dev):
        x = [t.to(dtype=dt, device=dev).requires_grad_() for t in (o, d, eyes)]
        return [v.cpu() for v in torch.autograd.grad(_weighted_loss(fn(*x), [v.to(dt) for v in w]), x)]

    truth = grads(ref.trace_eyes, torch.float64, "cpu")
    got = grads(ops.trace_eyes, dtype, device)
    if dtype == torch.float64:
        for name, x, y in zip(("origins", "dirs", "eyes"), got, truth):
            assert rel_err(x, y) < 1e-9, name
        assert (truth[2].abs() > 0).all() and (got[2].abs() > 0).all()  # every eye column has a gradient
    else:
        # float32 gradients carry the forward's conditioning once more (the derivative of the
        # Fresnel term has 1 / cos_t, large near grazing incidence): the float32 reference's
        # autograd is off the float64 truth by up to ~2e-2 here. The kernel must do no worse.
        # (CUDA: independent rounding of a heavy-tailed error, hence x 3.)
        ref32 = grads(ref.trace_eyes, torch.float32, "cpu")
        for name, x, y, z in zip(("origins", "dirs", "eyes"), got, truth, ref32):
            assert rel_err(x, y) <= (3.0 if device == "cuda" else 1.5) * rel_err(z, y) + 1e-6, name
            assert rel_err(x, y) < 5e-2, name


def test_gradients_skip_unused_outputs():
    o, d, eyes = _grad_scene(200, 2, "cpu", seed=8)
    a = [t.clone().requires_grad_() for t in (o, d, eyes)]
    b = [t.clone().requires_grad_() for t in (o, d, eyes)]
    # Only iris_uv used: the other grad inputs reach the backward as None.
    ga = torch.autograd.grad(ops.trace_eyes(*a).iris_uv.sum(), a)
    gb = torch.autograd.grad(ref.trace_eyes(*b)[7].sum(), b)
    for x, y in zip(ga, gb):
        assert rel_err(x, y) < 1e-9
    # Only eyes requires grad.
    e = eyes.clone().requires_grad_()
    (ge,) = torch.autograd.grad(_finite(ops.trace_eyes(o, d, e).t).sum(), e)
    (ge_ref,) = torch.autograd.grad(_finite(ref.trace_eyes(o, d, e)[0]).sum(), e)
    assert rel_err(ge, ge_ref) < 1e-9


def test_opcheck(device):
    o, d, eyes = _grad_scene(64, 2, device, seed=11)
    torch.library.opcheck(torch.ops.eyefast.trace_eyes.default, (o, d.requires_grad_(), eyes.requires_grad_(), True))
    torch.library.opcheck(torch.ops.eyefast.trace_eyes.default, (o.float(), d.float(), eyes.float(), False))


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mutate,name",
    [
        (lambda a: a.__setitem__(1, a[1].float()), "dirs"),  # dtype mismatch
        (lambda a: a.__setitem__(2, a[2].float()), "eyes"),
        (lambda a: a.__setitem__(0, a[0].to(torch.int32)), "origins"),
        (lambda a: a.__setitem__(0, a[0][:, :2]), "origins"),
        (lambda a: a.__setitem__(1, a[1][:3]), "dirs"),
        (lambda a: a.__setitem__(1, a[1].t().contiguous().t()), "dirs"),  # non-contiguous
        (lambda a: a.__setitem__(2, a[2][:, :11]), "eyes"),
        (lambda a: a.__setitem__(2, a[2][0]), "eyes"),
        (lambda a: a.__setitem__(2, a[2].t().contiguous().t()), "eyes"),
    ],
)
def test_bad_arguments_are_named(mutate, name):
    args = list(scene(8, 2, torch.float64, "cpu", 0))
    mutate(args)
    with pytest.raises((RuntimeError, TypeError, ValueError), match=name):
        ops.trace_eyes(*args)


@pytest.mark.parametrize(
    "field,row,col,value,text",
    [
        (1, 5, None, 0.0, r"dirs has a zero-length direction .*dirs\[5\]"),
        (0, 3, 1, float("nan"), r"origins .*origins\[3\]"),
        (1, 2, 0, float("inf"), r"dirs has a non-finite .*dirs\[2\]"),
        (2, 1, 0, float("nan"), r"centre .*eyes\[1\]"),
        (2, 1, 3, -0.5, r"\(radius\) must be finite and > 0 .*eyes\[1\]"),
        (2, 0, 3, 0.0, r"\(radius\) .*eyes\[0\]"),
        (2, 1, "gaze0", None, r"gaze .*not all zero .*eyes\[1\]"),
        (2, 0, 5, float("inf"), r"gaze .*eyes\[0\]"),
        (2, 1, "gaze-z", None, r"-z .*gaze_frame.* undefined .*eyes\[1\]"),
        (2, 1, 7, 0.0, r"\(cornea_radius\) .*eyes\[1\]"),
        (2, 0, 8, float("inf"), r"\(cornea_offset\) .*eyes\[0\]"),
        (2, 1, 9, -1.0, r"\(limbus_radius\) .*eyes\[1\]"),
        (2, 0, 10, float("nan"), r"\(iris_depth\) .*eyes\[0\]"),
        (2, 1, 11, 0.0, r"\(ior\) .*eyes\[1\]"),
    ],
)
def test_bad_values_are_named(device, field, row, col, value, text):
    args = list(scene(16, 2, torch.float32, device, 0))
    args[field] = args[field].clone()
    if col == "gaze0":
        args[field][row, 4:7] = 0.0
    elif col == "gaze-z":
        args[field][row, 4:7] = torch.tensor([1e-4, 0.0, -2.0])  # gz / |g| = -1 + 1.25e-9
    elif col is None:
        args[field][row] = value
    else:
        args[field][row, col] = value
    with pytest.raises(ValueError, match=text):
        ops.trace_eyes(*args)
    ops.trace_eyes(*args, check=False)  # unchecked: no error, no crash


def test_gaze_near_minus_z_is_accepted():
    args = list(scene(16, 2, torch.float64, "cpu", 0))
    args[2][0, 4:7] = torch.tensor([0.01, 0.0, -1.0], dtype=torch.float64)  # gz / |g| = -0.99995
    out = ops.trace_eyes(*args)
    assert torch.isfinite(out.normal).all()


def test_cpu_cuda_device_mismatch():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    o, d, eyes = scene(8, 2, torch.float32, "cpu", 0)
    with pytest.raises(RuntimeError, match="eyes"):
        ops.trace_eyes(o.cuda(), d.cuda(), eyes)


def test_cuda_matches_cpu():
    from conftest import CUDA_OK

    if not CUDA_OK:
        pytest.skip("needs a CUDA GPU and CUDA kernels")
    o, d, eyes = scene(20000, 3, torch.float64, "cpu", seed=2)
    a = ops.trace_eyes(o, d, eyes)
    b = ops.trace_eyes(o.cuda(), d.cuda(), eyes.cuda())
    for name, x, y in zip(OUT_NAMES, a, b):
        if x.dtype == torch.int64:
            assert torch.equal(x, y.cpu()), name
        else:
            assert rel_err(y, x) < 1e-12, name
