"""torch.compile(fullgraph=True) traces through the eyefast ops (fake kernels + autograd)."""

import torch

from eyefast import ops


def eye_shading(origins, dirs, centers, radii):
    t_near, t_far, index, normal = ops.ray_sphere_intersect(origins, dirs, centers, radii, check=False)
    hit = index >= 0
    refr, refl, tir = ops.refract(dirs, torch.where(hit[:, None], normal, -dirs), 1.0 / 1.376, check=False)
    depth = torch.where(hit, t_far - t_near, torch.zeros_like(t_near))
    return (refr.sum(-1) * refl + depth).sum()


def test_compile_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[-0.3, 0.0, 2.0], [0.3, 0.0, 2.0]])
    radii = torch.tensor([0.25, 0.25], requires_grad=True)
    origins = torch.zeros(512, 3)
    dirs = torch.cat([torch.rand(512, 2, generator=g) * 0.6 - 0.3, torch.ones(512, 1)], 1)
    compiled = torch.compile(eye_shading, fullgraph=True, backend="aot_eager")
    out_c = compiled(origins, dirs, centers, radii)
    (g_c,) = torch.autograd.grad(out_c, radii)
    out_e = eye_shading(origins, dirs, centers, radii)
    (g_e,) = torch.autograd.grad(out_e, radii)
    assert torch.allclose(out_c, out_e) and torch.allclose(g_c, g_e)
    assert g_e.abs().sum() > 0


def test_compile_inductor_cpu():
    torch._dynamo.reset()
    origins = torch.zeros(64, 3)
    dirs = torch.randn(64, 3)
    centers = torch.zeros(1, 3)
    radii = torch.ones(1)
    f = torch.compile(lambda o, d: ops.ray_sphere_intersect(o, d, centers, radii)[1] * 2, fullgraph=True)
    assert torch.allclose(f(origins, dirs), ops.ray_sphere_intersect(origins, dirs, centers, radii)[1] * 2)


def eye_trace_loss(origins, dirs, eyes):
    tr = ops.trace_eyes(origins, dirs, eyes, check=False)
    iris = tr.region == 2
    t = torch.where(torch.isfinite(tr.t), tr.t, torch.zeros_like(tr.t))
    t_iris = torch.where(iris, tr.t_iris, torch.zeros_like(tr.t_iris))
    return (t + tr.fresnel + tr.refr_dir.sum(-1) + tr.normal.sum(-1) + t_iris + tr.iris_uv.sum(-1)).sum()


def test_compile_fullgraph_trace_eyes():
    from eyefast.core import eyes as E

    torch._dynamo.reset()
    g = torch.Generator().manual_seed(1)
    # Two eyes at z = 0 gazing at a camera at z = 2 (eye gazes point to +z: see gaze_frame).
    eyes = E.pack_eyes(torch.tensor([[-0.3, 0.0, 0.0], [0.3, 0.0, 0.0]]), torch.tensor([0.12, 0.12]),
                         torch.tensor([[0.1, 0.0, 1.0], [-0.1, 0.05, 1.0]]), ior=torch.tensor([1.336, 0.8]))
    eyes.requires_grad_(True)
    origins = torch.tensor([0.0, 0.0, 2.0]).expand(512, 3).contiguous()
    dirs = torch.cat([torch.rand(512, 2, generator=g) * 0.4 - 0.2, -torch.ones(512, 1)], 1)
    compiled = torch.compile(eye_trace_loss, fullgraph=True, backend="aot_eager")
    out_c = compiled(origins, dirs, eyes)
    (g_c,) = torch.autograd.grad(out_c, eyes)
    out_e = eye_trace_loss(origins, dirs, eyes)
    (g_e,) = torch.autograd.grad(out_e, eyes)
    assert torch.allclose(out_c, out_e) and torch.allclose(g_c, g_e)
    assert (g_e.abs() > 0).all()
