"""rasterize / rasterize_uv / interpolate / project_to_clip: kernel vs reference, pixel
convention against eyefast.data.Capture, edge cases, gradients, opcheck, bad input."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from conftest import CUDA_OK, rel_err
from eyefast import ops
from eyefast.data import Capture, cora_to_nerf
from eyefast.reference import raster as ref


def random_mesh(n_verts, n_faces, dtype, device, seed, index_dtype=torch.int64, spread=1.3):
    """Random clip-space triangles, some partly off-screen, behind the near plane or the camera."""
    g = torch.Generator().manual_seed(seed)
    xy = (torch.rand(n_verts, 2, generator=g, dtype=torch.float64) * 2 - 1) * spread
    w = torch.rand(n_verts, generator=g, dtype=torch.float64) * 3 + 0.2
    zn = torch.rand(n_verts, generator=g, dtype=torch.float64) * 2.1 - 1.02  # a few beyond -1 / +1
    clip = torch.stack([xy[:, 0] * w, xy[:, 1] * w, zn * w, w], -1)
    clip[torch.rand(n_verts, generator=g) < 0.03, 3] *= -1  # behind the camera
    # Faces of nearby vertices (so that triangles are of a few pixels to a good part of the image).
    a = torch.randint(0, n_verts, (n_faces,), generator=g)
    d = torch.cdist(xy[a], xy)
    nb = d.topk(6, largest=False).indices[:, 1:]
    pick = torch.stack([torch.randperm(5, generator=g)[:2] for _ in range(n_faces)])
    faces = torch.stack([a, nb.gather(1, pick[:, :1])[:, 0], nb.gather(1, pick[:, 1:])[:, 0]], -1)
    return clip.to(dtype=dtype, device=device), faces.to(dtype=index_dtype, device=device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_matches_reference(device, dtype, index_dtype):
    for seed, (V, F, H, W) in enumerate([(60, 80, 37, 53), (200, 300, 64, 48), (12, 10, 20, 20)]):
        clip, faces = random_mesh(V, F, dtype, device, seed, index_dtype)
        p2f, bary, depth = ops.rasterize(clip, faces, H, W)  # outputs are poisoned first (conftest)
        assert p2f.dtype == torch.int32 and bary.dtype == dtype and depth.dtype == dtype
        assert p2f.shape == (H, W) and bary.shape == (H, W, 3) and depth.shape == (H, W)
        e_p2f, e_bary, e_depth = ref.rasterize(clip.cpu(), faces.cpu(), H, W)
        assert torch.equal(p2f.cpu(), e_p2f), f"pix_to_face differs at {(p2f.cpu() != e_p2f).sum()} pixels"
        assert 0.05 < (e_p2f >= 0).float().mean() < 1.0
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert rel_err(bary, e_bary) < tol and rel_err(depth, e_depth) < tol
        hit = e_p2f >= 0
        assert torch.allclose(bary.cpu()[hit].sum(-1).double(), torch.ones(int(hit.sum()), dtype=torch.float64),
                              atol=1e-6)
        assert (bary.cpu()[~hit] == 0).all() and (depth.cpu()[~hit] == 0).all()


@pytest.mark.skipif(not CUDA_OK, reason="needs a CUDA GPU and CUDA kernels")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_and_cuda_agree_bit_for_bit(dtype):
    clip, faces = random_mesh(3000, 6000, dtype, "cpu", 5)
    a = ops.rasterize(clip, faces, 300, 400)
    b = ops.rasterize(clip.cuda(), faces.cuda(), 300, 400)
    assert torch.equal(a[0], b[0].cpu())
    assert rel_err(b[1], a[1]) < 1e-12 and rel_err(b[2], a[2]) < 1e-12


# --------------------------------------------------------------------------- pixel convention
def make_capture(root, W=40, H=30, fl=(35.5, 33.2), c=(19.3, 16.1), seed=0):
    """A one-frame capture folder with an off-centre, non-square camera looking at the origin."""
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir()
    rng = np.random.default_rng(seed)
    eye = np.array([0.4, -0.3, 3.0]) + 0.1 * rng.standard_normal(3)
    f = -eye / np.linalg.norm(eye)
    r = np.cross(f, [0.0, 1.0, 0.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = r, d, f, eye
    meta = {"w": W, "h": H, "fl_x": fl[0], "fl_y": fl[1], "cx": c[0], "cy": c[1],
            "frames": [{"file_path": "image/00000.png", "transform_matrix": cora_to_nerf(c2w).tolist()}]}
    (root / "transforms.json").write_text(json.dumps(meta))
    iio.imwrite(root / "image" / "00000.png", np.zeros((H, W, 3), np.uint8))
    iio.imwrite(root / "mask" / "00000.png", np.zeros((H, W), np.uint8))
    with pytest.warns(UserWarning):
        return Capture(root, split="all")


def inside_2d(tri, pts):
    """Signed distances (pixels) of points [P, 2] to the 3 edges of a 2D triangle [3, 2]; > 0 inside."""
    out = []
    area = (tri[1, 0] - tri[0, 0]) * (tri[2, 1] - tri[0, 1]) - (tri[1, 1] - tri[0, 1]) * (tri[2, 0] - tri[0, 0])
    for k in range(3):
        a, b = tri[(k + 1) % 3], tri[(k + 2) % 3]
        e = (b[0] - a[0]) * (pts[:, 1] - a[1]) - (b[1] - a[1]) * (pts[:, 0] - a[0])
        out.append(e * np.sign(area) / np.hypot(*(b - a)))
    return np.stack(out, -1)


def test_pixel_exact_against_capture_project(tmp_path):
    cap = make_capture(tmp_path / "cap")
    H, W = cap.H, cap.W
    g = torch.Generator().manual_seed(0)
    ys, xs = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    centres = np.stack([xs.ravel(), ys.ravel()], -1)
    checked = 0
    for trial in range(20):
        pts = (torch.rand(3, 3, generator=g) - 0.5) * 2.0  # a triangle near the origin
        clip = ops.project_to_clip(pts, cap.K, cap.w2c[0], H, W, near=0.1, far=10.0)
        p2f, bary, depth = ops.rasterize(clip, torch.tensor([[0, 1, 2]]), H, W)
        uv = cap.project(pts, 0).double().numpy()  # continuous pixel coordinates
        dist = inside_2d(uv, centres)
        sure_in = (dist > 1e-2).all(-1).reshape(H, W)
        sure_out = (dist < -1e-2).any(-1).reshape(H, W)
        covered = (p2f >= 0).numpy()
        assert covered[sure_in].all() and not covered[sure_out].any(), f"trial {trial}"
        checked += int(sure_in.sum())
        # The interpolated world point of each covered pixel lies on that pixel's camera ray,
        # and depth is its camera-space z.
        hit = torch.nonzero(p2f >= 0)
        if len(hit) == 0:
            continue
        p = ops.interpolate(pts, torch.tensor([[0, 1, 2]]), p2f, bary)[hit[:, 0], hit[:, 1]]
        o, d = cap.rays(0, hit.flip(-1))
        t = ((p - o) * d).sum(-1, keepdim=True)
        assert (p - (o + t * d)).norm(dim=-1).max() < 1e-5
        z = cap.world_to_camera(p, 0)[:, 2]
        assert torch.allclose(depth[hit[:, 0], hit[:, 1]], z, rtol=1e-5)
    assert checked > 500


def test_projected_point_lands_in_its_pixel(tmp_path):
    cap = make_capture(tmp_path / "cap", seed=1)
    g = torch.Generator().manual_seed(1)
    checked = 0
    for _ in range(30):
        p = (torch.rand(1, 3, generator=g) - 0.5) * 0.8
        uv = cap.project(p, 0)[0]
        i, j = int(uv[0].floor()), int(uv[1].floor())
        # A right triangle with its corner on p and legs of 2 pixels to the right and down: it
        # covers the centre of p's pixel exactly when p lies up-left of that centre.
        cam = cap.world_to_camera(p, 0)[0]
        tri_cam = torch.stack([cam, cam + torch.tensor([2.0 * cam[2] / cap.fl_x, 0, 0]),
                               cam + torch.tensor([0, 2.0 * cam[2] / cap.fl_y, 0])])
        c2w = cap.c2w[0]
        tri = tri_cam @ c2w[:3, :3].T + c2w[:3, 3]
        clip = ops.project_to_clip(tri, cap.K, cap.w2c[0], cap.H, cap.W)
        p2f, _, _ = ops.rasterize(clip, torch.tensor([[0, 1, 2]]), cap.H, cap.W)
        if not (0 <= i < cap.W and 0 <= j < cap.H):
            continue
        fx, fy = float(uv[0] - i), float(uv[1] - j)
        if fx < 0.49 and fy < 0.49:
            assert p2f[j, i] == 0, (uv, i, j)
            checked += 1
        elif fx > 0.51 or fy > 0.51:
            assert p2f[j, i] == -1, (uv, i, j)
            checked += 1
    assert checked > 20


# --------------------------------------------------------------------------- edge cases
def screen_clip(xy_pixels, H, W, depth=1.0, dtype=torch.float64):
    """Clip vertices (w = depth) for screen positions given in pixels."""
    xy = torch.as_tensor(xy_pixels, dtype=dtype)
    nx = 2 * xy[:, 0] / W - 1
    ny = 2 * xy[:, 1] / H - 1
    w = torch.as_tensor(depth, dtype=dtype).expand(len(xy))
    return torch.stack([nx * w, ny * w, torch.zeros_like(nx), w], -1).contiguous()


def test_empty_inputs(device):
    p2f, bary, depth = ops.rasterize(torch.zeros(0, 4, device=device), torch.zeros(0, 3, dtype=torch.int32, device=device), 5, 7)
    assert (p2f == -1).all() and (bary == 0).all() and (depth == 0).all() and p2f.shape == (5, 7)
    clip, faces = random_mesh(10, 5, torch.float32, device, 0)
    for h, w in ((0, 5), (4, 0), (0, 0)):
        p2f, bary, depth = ops.rasterize(clip, faces, h, w)
        assert p2f.shape == (h, w) and bary.shape == (h, w, 3) and depth.shape == (h, w)
    out = ops.interpolate(torch.zeros(0, 2, device=device), torch.zeros(0, 3, dtype=torch.int32, device=device),
                          torch.full((3, 4), -1, dtype=torch.int32, device=device), torch.zeros(3, 4, 3, device=device))
    assert out.shape == (3, 4, 2) and (out == 0).all()


def test_degenerate_triangles(device):
    H = W = 16
    clip = screen_clip([[2, 2], [14, 2], [2, 14], [8, 8], [2, 2], [14, 14]], H, W).to(device)
    faces = torch.tensor([[0, 0, 1], [0, 3, 5], [0, 4, 1], [0, 1, 2]], dtype=torch.int32, device=device)
    p2f, bary, _ = ops.rasterize(clip, faces, H, W)
    # Faces 0-2 have zero area (repeated index, collinear, coincident vertices): only face 3 shows.
    assert set(p2f.unique().tolist()) == {-1, 3}
    assert (p2f == 3).sum() == sum(1 for j in range(H) for i in range(W) if i + 0.5 > 2 and j + 0.5 > 2 and (i + j + 1) < 16)
    assert torch.equal(p2f.cpu(), ref.rasterize(clip.cpu(), faces.cpu(), H, W)[0])


def test_watertight_grid_top_left_rule():
    """A grid whose vertices sit exactly on pixel centres: every pixel centre inside is covered by
    exactly one face (top-left rule), none twice and none left out."""
    H = W = 24
    n = 7
    coords = torch.linspace(2.5, 20.5, n)  # pixel centres
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    xy = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
    # Wobble the interior vertices by whole pixels, so edges run through many pixel centres.
    inner = ((gx > 3) & (gx < 20) & (gy > 3) & (gy < 20)).reshape(-1)
    xy[inner] += torch.tensor([[1.0, -1.0], [0.0, 1.0], [-1.0, 0.0]]).repeat(100, 1)[: int(inner.sum())]
    clip = screen_clip(xy, H, W)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            faces += [[a, b, e], [a, e, d]] if (r + c) % 2 else [[a, b, d], [b, e, d]]
    faces = torch.tensor(faces)
    count = torch.zeros(H, W, dtype=torch.int64)
    for f in range(len(faces)):
        count += (ops.rasterize(clip, faces[f : f + 1], H, W)[0] >= 0).long()
    assert count.max() == 1
    full = ops.rasterize(clip, faces, H, W)[0]
    assert torch.equal(full >= 0, count == 1)
    # Every pixel centre strictly inside the outer square (2.5 .. 20.5), and the ones on its
    # top and left sides, are covered.
    assert (count[3:20, 3:20] == 1).all()


def test_depth_test_and_ties(device):
    H = W = 12
    a = screen_clip([[0, 0], [12, 0], [0, 12]], H, W, depth=2.0)
    b = screen_clip([[0, 0], [12, 0], [0, 12]], H, W, depth=1.0)
    clip = torch.cat([a, b, a]).to(device)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]], device=device)
    p2f, _, depth = ops.rasterize(clip, faces, H, W)
    assert set(p2f.unique().tolist()) == {-1, 1}  # the nearer face, whatever its index
    assert torch.allclose(depth[p2f >= 0], torch.tensor(1.0, dtype=torch.float64, device=device))
    p2f, _, _ = ops.rasterize(clip, faces[[2, 0]].contiguous(), H, W)  # identical faces: smallest index wins
    assert set(p2f.unique().tolist()) == {-1, 0}


def test_culling_near_far_and_behind(device):
    H = W = 8
    tri = screen_clip([[0, 0], [8, 0], [0, 8]], H, W, depth=1.0)
    faces = torch.tensor([[0, 1, 2]], device=device)
    for z, expect_drawn in [(0.0, True), (-1.0, True), (-1.01, False), (1.0, True), (1.05, False)]:
        c = tri.clone()
        c[0, 2] = z  # one vertex; for the far case, all three beyond
        if z > 1:
            c[:, 2] = z
        p2f = ops.rasterize(c.to(device), faces, H, W)[0]
        assert bool((p2f >= 0).any()) == expect_drawn, z
    c = tri.clone()
    c[1] *= -1  # w < 0: behind the camera
    assert ((ops.rasterize(c.to(device), faces, H, W)[0]) == -1).all()
    c = tri.clone()
    c[2, 0] = float("nan")
    assert ((ops.rasterize(c.to(device), faces, H, W)[0]) == -1).all()


def test_rasterize_uv_convention(device):
    H, W = 6, 10
    uvs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], device=device)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32, device=device)
    p2f, bary = ops.rasterize_uv(uvs, faces, H, W)
    assert (p2f >= 0).all()
    uv = ops.interpolate(uvs, faces, p2f, bary).cpu()
    jj, ii = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    assert torch.allclose(uv[..., 0], (ii + 0.5) / W, atol=1e-6)
    assert torch.allclose(uv[..., 1], 1 - (jj + 0.5) / H, atol=1e-6)  # v = 0 is the bottom row
    # The lower-right half (below the diagonal (0,0)-(1,1) in UV) is face 0.
    assert p2f[H - 1, W - 1] == 0 and p2f[0, 0] == 1


# --------------------------------------------------------------------------- interpolate
def test_interpolate_matches_reference(device):
    clip, faces = random_mesh(100, 150, torch.float64, device, 3)
    p2f, bary, _ = ops.rasterize(clip, faces, 40, 50)
    attrs = torch.randn(100, 5, dtype=torch.float64, device=device)
    out = ops.interpolate(attrs, faces, p2f, bary)
    exp = ref.interpolate(attrs, faces, p2f, bary)
    assert rel_err(out, exp) < 1e-14
    out32 = ops.interpolate(attrs.float(), faces.int(), p2f, bary.float())
    assert rel_err(out32, exp) < 1e-6


def test_interpolate_gradcheck(device):
    clip, faces = random_mesh(20, 25, torch.float64, device, 4)
    p2f, bary, _ = ops.rasterize(clip, faces, 9, 11)
    assert (p2f >= 0).any() and (p2f < 0).any()
    attrs = torch.randn(20, 3, dtype=torch.float64, device=device, requires_grad=True)
    b = bary.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, bb: ops.interpolate(a, faces, p2f, bb), (attrs, b))
    # Against the reference's autograd.
    w = torch.randn(9, 11, 3, dtype=torch.float64, device=device)
    ga = torch.autograd.grad((ops.interpolate(attrs, faces, p2f, b) * w).sum(), (attrs, b))
    gr = torch.autograd.grad((ref.interpolate(attrs, faces, p2f, b) * w).sum(), (attrs, b))
    for x, y in zip(ga, gr):
        assert rel_err(x, y) < 1e-12


def test_opcheck(device):
    clip, faces = random_mesh(30, 40, torch.float64, device, 6)
    torch.library.opcheck(torch.ops.eyefast.rasterize.default, (clip, faces, 12, 15, True))
    p2f, bary, _ = ops.rasterize(clip, faces, 12, 15)
    attrs = torch.randn(30, 4, dtype=torch.float64, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.eyefast.interpolate.default, (attrs, faces, p2f, bary.requires_grad_(), True))


def test_compile_fullgraph():
    torch._dynamo.reset()
    clip, faces = random_mesh(30, 40, torch.float32, "cpu", 7)
    attrs = torch.randn(30, 3, requires_grad=True)

    def render(clip, attrs):
        p2f, bary, depth = ops.rasterize(clip, faces, 16, 16, check=False)
        return (ops.interpolate(attrs, faces, p2f, bary, check=False) * depth[..., None]).sum()

    out_c = torch.compile(render, fullgraph=True, backend="aot_eager")(clip, attrs)
    (g_c,) = torch.autograd.grad(out_c, attrs)
    out_e = render(clip, attrs)
    (g_e,) = torch.autograd.grad(out_e, attrs)
    assert torch.allclose(out_c, out_e) and torch.allclose(g_c, g_e)


def test_project_to_clip_is_differentiable():
    pts = torch.randn(5, 3, dtype=torch.float64) * 0.2
    K = torch.tensor([[50.0, 0, 20], [0, 50, 15], [0, 0, 1]], dtype=torch.float64)
    w2c = torch.eye(4, dtype=torch.float64)
    w2c[2, 3] = 2.0
    assert torch.autograd.gradcheck(lambda p: ops.project_to_clip(p, K, w2c, 30, 40), (pts.requires_grad_(),))
    with pytest.raises(ValueError, match="near"):
        ops.project_to_clip(pts, K, w2c, 30, 40, near=0.0)


# --------------------------------------------------------------------------- bad input
def _args():
    clip, faces = random_mesh(10, 8, torch.float32, "cpu", 0)
    return [clip, faces, 6, 7]


@pytest.mark.parametrize(
    "mutate,name",
    [
        (lambda a: a.__setitem__(0, a[0].to(torch.int32)), "verts_clip"),
        (lambda a: a.__setitem__(0, a[0][:, :3].contiguous()), "verts_clip"),
        (lambda a: a.__setitem__(0, a[0].t().contiguous().t()), "verts_clip"),  # non-contiguous
        (lambda a: a.__setitem__(1, a[1].float()), "faces"),
        (lambda a: a.__setitem__(1, a[1][:, :2].contiguous()), "faces"),
        (lambda a: a.__setitem__(2, -1), "height"),
        (lambda a: a.__setitem__(3, 100000), "width"),
    ],
)
def test_bad_arguments_are_named(mutate, name):
    args = _args()
    mutate(args)
    with pytest.raises((RuntimeError, TypeError, ValueError), match=name):
        ops.rasterize(*args)


def test_bad_values_are_named(device):
    clip, faces = random_mesh(10, 8, torch.float32, device, 0)
    faces = faces.clone()
    faces[5, 1] = 10
    with pytest.raises(ValueError, match=r"faces\[5\]"):
        ops.rasterize(clip, faces, 6, 7)
    ops.rasterize(clip, faces, 6, 7, check=False)  # skipped face, no crash
    faces[5, 1] = 0
    p2f, bary, _ = ops.rasterize(clip, faces, 6, 7)
    attrs = torch.randn(10, 2, device=device)
    bad = p2f.clone()
    bad[2, 3] = 8
    with pytest.raises(ValueError, match=r"pix_to_face\[17\]"):
        ops.interpolate(attrs, faces, bad, bary)
    out = ops.interpolate(attrs, faces, bad, bary, check=False)
    assert (out[2, 3] == 0).all()


@pytest.mark.parametrize(
    "mutate,name",
    [
        (lambda a: a.__setitem__(2, a[2].long()), "pix_to_face"),
        (lambda a: a.__setitem__(3, a[3][..., :2].contiguous()), "bary"),
        (lambda a: a.__setitem__(3, a[3].double()), "bary"),
        (lambda a: a.__setitem__(0, a[0][:, 0].contiguous()), "attrs"),
        (lambda a: a.__setitem__(1, a[1].double()), "faces"),
    ],
)
def test_interpolate_bad_arguments_are_named(mutate, name):
    clip, faces = random_mesh(10, 8, torch.float32, "cpu", 0)
    p2f, bary, _ = ops.rasterize(clip, faces, 6, 7)
    args = [torch.randn(10, 2), faces, p2f, bary]
    mutate(args)
    with pytest.raises((RuntimeError, TypeError, ValueError), match=name):
        ops.interpolate(*args)


def test_cpu_cuda_device_mismatch():
    if not CUDA_OK:
        pytest.skip("needs a CUDA device")
    clip, faces = random_mesh(10, 8, torch.float32, "cpu", 0)
    with pytest.raises(RuntimeError, match="faces"):
        ops.rasterize(clip.cuda(), faces, 6, 7)


def test_c_api_matches_op():
    import ctypes

    from eyefast.core import _ext

    lib = ctypes.CDLL(_ext.library_path())
    f32p, i32p = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int32)
    lib.eyefast_rasterize_f32.argtypes = [f32p, ctypes.c_int64, i32p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int32,
                                          i32p, f32p, f32p]
    lib.eyefast_last_error.restype = ctypes.c_char_p
    clip, faces = random_mesh(80, 120, torch.float32, "cpu", 9, torch.int32)
    H, W = 21, 34
    v, f = clip.numpy(), faces.numpy()
    p2f = np.full((H, W), 77, np.int32)
    bary, depth = np.full((H, W, 3), np.nan, np.float32), np.full((H, W), np.nan, np.float32)
    code = lib.eyefast_rasterize_f32(v.ctypes.data_as(f32p), len(v), f.ctypes.data_as(i32p), len(f), H, W,
                                     p2f.ctypes.data_as(i32p), bary.ctypes.data_as(f32p), depth.ctypes.data_as(f32p))
    assert code == 0, lib.eyefast_last_error()
    exp = ops.rasterize(clip, faces, H, W)
    assert np.array_equal(p2f, exp[0].numpy()) and np.array_equal(bary, exp[1].numpy())
    assert np.array_equal(depth, exp[2].numpy())
    f[3, 2] = 80
    code = lib.eyefast_rasterize_f32(v.ctypes.data_as(f32p), len(v), f.ctypes.data_as(i32p), len(f), H, W,
                                     p2f.ctypes.data_as(i32p), bary.ctypes.data_as(f32p), depth.ctypes.data_as(f32p))
    assert code == 3 and b"faces" in lib.eyefast_last_error()


def test_fuzz_matches_reference_and_never_crashes():
    """Random meshes with extreme coordinates (near and beyond the guard band, huge and tiny w,
    infinities, NaNs, out-of-range indices with check=False): kernel == reference, no crash."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    special = st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-30, 4096.0, 2.0**20, -(2.0**21), 1e30, float("inf"),
                               float("nan")])
    coord = st.one_of(st.floats(-3, 3, allow_nan=False, width=32), special)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(1, 12), st.integers(0, 16), st.integers(1, 9), st.integers(1, 9), st.data())
    def run(v, f, h, w, data):
        vals = data.draw(st.lists(coord, min_size=4 * v, max_size=4 * v))
        clip = torch.tensor(vals, dtype=torch.float32).reshape(v, 4)
        clip[:, 3] = torch.where(torch.rand(v) < 0.8, clip[:, 3].abs(), clip[:, 3])
        faces = torch.tensor(data.draw(st.lists(st.integers(-1, v), min_size=3 * f, max_size=3 * f)),
                             dtype=torch.int64).reshape(f, 3)
        out = ops.rasterize(clip, faces, h, w, check=False)
        exp = ref.rasterize(clip, faces, h, w)
        assert torch.equal(out[0], exp[0])
        for a, b in zip(out[1:], exp[1:]):
            assert torch.equal(torch.isnan(a), torch.isnan(b))
            assert torch.allclose(a[~torch.isnan(a)], b[~torch.isnan(b)], rtol=1e-5, atol=1e-6, equal_nan=True)

    run()
