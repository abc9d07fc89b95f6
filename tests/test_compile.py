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
