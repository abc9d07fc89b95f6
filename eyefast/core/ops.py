"""eyefast's kernels as PyTorch functions (``torch.ops.eyefast.*``).

Every op runs on CPU and CUDA tensors (float32 or float64, contiguous), is differentiable
(backward kernels, registered with :func:`torch.library.register_autograd`) and has a fake
implementation, so ``torch.compile(fullgraph=True)`` traces through it. Pure-PyTorch references
with the same contracts live in :mod:`eyefast.reference`.

Data checks: by default each op also checks its input values (non-finite numbers, zero-length
directions, radius <= 0, ...) inside the kernel and raises a ``ValueError`` naming the argument
and the first bad row. On CUDA reading that verdict back costs one device-to-host
synchronisation: pass ``check=False`` in hot loops where the inputs are known to be valid.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import _ext
from ._fake import register_fake

_ext.load()

__all__ = ["ray_sphere_intersect", "refract", "trace_eyes", "EyeTrace", "rasterize", "rasterize_uv", "project_to_clip", "interpolate"]


# --------------------------------------------------------------------------------------------
# ray_sphere_intersect
# --------------------------------------------------------------------------------------------
def _check_out(op: str, out, count: int, *inputs) -> None:
    """out= rules, as in torch: a tuple of `count` tensors, and no autograd through them."""
    if not isinstance(out, (tuple, list)) or len(out) != count or not all(isinstance(t, torch.Tensor) for t in out):
        raise TypeError(f"eyefast.{op}: out must be a tuple of {count} tensors, got {type(out).__name__}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (*inputs, *out) if isinstance(t, torch.Tensor)):
        raise RuntimeError(
            f"eyefast.{op}: out= does not support autograd (an input or out tensor requires grad); call it "
            "without out= to differentiate, or under torch.no_grad()"
        )


def _written(out) -> None:
    """Advances the version counters of buffers written in place, as torch's in-place ops do, so
    that autograd raises on a backward that saved one of them before it was overwritten. (Under
    torch.compile functionalisation writes the buffers back with copy_, which does the same.)"""
    if not torch.compiler.is_compiling():
        torch.autograd.graph.increment_version(tuple(out))


def ray_sphere_intersect(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    centers: torch.Tensor,
    radii: torch.Tensor,
    *,
    check: bool = True,
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
):
    """First sphere each ray enters.

    Args:
        origins: [N, 3] ray origins.
        dirs: [N, 3] ray directions, not necessarily unit length (t is in units of ``dirs``).
        centers: [S, 3] sphere centres.
        radii: [S] sphere radii (> 0).
        check: check the input values (see the module docstring).
        out: optional preallocated (t_near, t_far, index, normal), written in place and returned:
            the exact dtypes and shapes of the results, contiguous, sharing no memory with the
            inputs. Reusing buffers across calls saves the allocation and, on the CPU, the page
            faults of fresh memory, which cost more than the kernel itself at millions of rays.
            Not differentiable (as with torch's own out= arguments); the buffers' version counters
            advance, so autograd notices a saved buffer that was overwritten. When the data checks
            raise, the buffers have been partly written.

    Returns:
        t_near: [N] entry distance (0 when the ray starts inside the sphere), +inf on a miss.
        t_far: [N] exit distance of the same sphere, +inf on a miss.
        index: [N] int64 index of that sphere, -1 on a miss. Ties go to the lower index.
        normal: [N, 3] outward unit normal at the entry point; 0 on a miss or when the ray
            starts inside.

    Differentiable w.r.t. origins, dirs, centers and radii (through t_near, t_far and normal).
    At exactly tangent rays the derivative is unbounded and is returned as 0.
    """
    if out is not None:
        _check_out("ray_sphere_intersect", out, 4, origins, dirs, centers, radii)
        torch.ops.eyefast.ray_sphere_intersect.out(
            origins, dirs, centers, radii, check, t_near=out[0], t_far=out[1], index=out[2], normal=out[3]
        )
        _written(out)
        return tuple(out)
    return torch.ops.eyefast.ray_sphere_intersect(origins, dirs, centers, radii, check)


@register_fake("eyefast::ray_sphere_intersect")
def _ray_sphere_fake(origins, dirs, centers, radii, check=True):
    torch._check(origins.dim() == 2 and origins.shape[1] == 3, lambda: "origins must have shape [N, 3]")
    torch._check(dirs.shape == origins.shape, lambda: "dirs must have the shape of origins")
    torch._check(centers.dim() == 2 and centers.shape[1] == 3, lambda: "centers must have shape [S, 3]")
    torch._check(radii.dim() == 1 and radii.shape[0] == centers.shape[0], lambda: "radii must have shape [S]")
    n = origins.shape[0]
    return (
        origins.new_empty(n),
        origins.new_empty(n),
        origins.new_empty(n, dtype=torch.long),
        origins.new_empty(n, 3),
    )


@register_fake("eyefast::ray_sphere_intersect.out")
def _ray_sphere_out_fake(origins, dirs, centers, radii, check=True, *, t_near, t_far, index, normal):
    return None


@register_fake("eyefast::ray_sphere_intersect_backward")
def _ray_sphere_bwd_fake(origins, dirs, centers, radii, index, grad_t_near, grad_t_far, grad_normal):
    return (
        torch.empty_like(origins),
        torch.empty_like(dirs),
        torch.empty_like(centers),
        torch.empty_like(radii),
    )


def _ray_sphere_setup(ctx, inputs, output):
    origins, dirs, centers, radii, _check = inputs
    ctx.save_for_backward(origins, dirs, centers, radii, output[2])


def _ray_sphere_backward(ctx, g_t_near, g_t_far, _g_index, g_normal):
    origins, dirs, centers, radii, index = ctx.saved_tensors
    if not any(ctx.needs_input_grad[:4]):
        return None, None, None, None, None
    g_o, g_d, g_c, g_r = torch.ops.eyefast.ray_sphere_intersect_backward(
        origins, dirs, centers, radii, index, g_t_near, g_t_far, g_normal
    )
    need = ctx.needs_input_grad
    return (g_o if need[0] else None, g_d if need[1] else None, g_c if need[2] else None,
            g_r if need[3] else None, None)


torch.library.register_autograd(
    "eyefast::ray_sphere_intersect", _ray_sphere_backward, setup_context=_ray_sphere_setup
)


# --------------------------------------------------------------------------------------------
# refract
# --------------------------------------------------------------------------------------------
def refract(
    dirs: torch.Tensor,
    normals: torch.Tensor,
    eta,
    *,
    check: bool = True,
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
):
    """Refracts rays through a dielectric interface (Snell) with the exact Fresnel reflectance.

    Args:
        dirs: [N, 3] travel directions (any length > 0; normalised inside).
        normals: [N, 3] surface normals (any length > 0, either orientation: the side facing the
            incoming ray is used).
        eta: n_from / n_to, the index of the medium the ray travels in over the index of the
            medium it enters: a float, a 0-d tensor or an [N] tensor.
        check: check the input values (see the module docstring).
        out: optional preallocated (out, reflectance, tir), written in place and returned (the
            rules of :func:`ray_sphere_intersect`'s ``out``).

    Returns:
        out: [N, 3] unit refracted direction; on total internal reflection the mirror direction.
        reflectance: [N] unpolarised Fresnel reflectance (1 on total internal reflection).
        tir: [N] bool, total internal reflection.

    Differentiable w.r.t. dirs, normals and eta (when it is a tensor).
    """
    if not isinstance(eta, torch.Tensor):
        eta = torch.full((), float(eta), dtype=dirs.dtype, device=dirs.device)
    if out is not None:
        _check_out("refract", out, 3, dirs, normals, eta)
        torch.ops.eyefast.refract.out(dirs, normals, eta, check, out=out[0], reflectance=out[1], tir=out[2])
        _written(out)
        return tuple(out)
    return torch.ops.eyefast.refract(dirs, normals, eta, check)


@register_fake("eyefast::refract")
def _refract_fake(dirs, normals, eta, check=True):
    torch._check(dirs.dim() == 2 and dirs.shape[1] == 3, lambda: "dirs must have shape [N, 3]")
    torch._check(normals.shape == dirs.shape, lambda: "normals must have the shape of dirs")
    n = dirs.shape[0]
    return dirs.new_empty(n, 3), dirs.new_empty(n), dirs.new_empty(n, dtype=torch.bool)


@register_fake("eyefast::refract.out")
def _refract_out_fake(dirs, normals, eta, check=True, *, out, reflectance, tir):
    return None


@register_fake("eyefast::refract_backward")
def _refract_bwd_fake(dirs, normals, eta, grad_out, grad_reflectance):
    return torch.empty_like(dirs), torch.empty_like(normals), torch.empty_like(eta)


def _refract_setup(ctx, inputs, output):
    dirs, normals, eta, _check = inputs
    ctx.save_for_backward(dirs, normals, eta)


def _refract_backward(ctx, g_out, g_refl, _g_tir):
    dirs, normals, eta = ctx.saved_tensors
    need = ctx.needs_input_grad
    if not any(need[:3]):
        return None, None, None, None
    g_d, g_n, g_e = torch.ops.eyefast.refract_backward(dirs, normals, eta, g_out, g_refl)
    return g_d if need[0] else None, g_n if need[1] else None, g_e if need[2] else None, None


torch.library.register_autograd("eyefast::refract", _refract_backward, setup_context=_refract_setup)


# --------------------------------------------------------------------------------------------
# trace_eyes
# --------------------------------------------------------------------------------------------
class EyeTrace(NamedTuple):
    """Result of :func:`trace_eyes` (N rays)."""

    t: torch.Tensor  #: [N] distance to the first eye surface, in units of dirs; +inf on a miss
    eye: torch.Tensor  #: [N] int64 index of the eye hit, -1 on a miss
    region: torch.Tensor  #: [N] int64: 0 miss, 1 sclera, 2 iris (through the cornea), 3 cornea only
    normal: torch.Tensor  #: [N, 3] outward unit normal at the hit (0 on a miss)
    refr_dir: torch.Tensor  #: [N, 3] refracted (or, on TIR, mirrored) unit direction; cornea hits only
    fresnel: torch.Tensor  #: [N] unpolarised Fresnel reflectance at the cornea (1 on TIR); cornea hits only
    t_iris: torch.Tensor  #: [N] distance from the cornea hit to the iris along refr_dir; +inf unless region 2
    iris_uv: torch.Tensor  #: [N, 2] iris-plane coordinates in limbus radii (axes: gaze_frame); region 2 only


def trace_eyes(origins: torch.Tensor, dirs: torch.Tensor, eyes: torch.Tensor, *, check: bool = True) -> EyeTrace:
    """Traces camera rays into refractive eyes in one fused kernel.

    Each eye (a row of ``eyes``, columns :data:`eyefast.reference.eye.EYE_COLUMNS`; build it with
    :func:`eyefast.reference.eye.pack_eyes`) is the union of its globe (centre ``c``, radius
    ``r``) and a cornea cap: a sphere of radius ``cornea_radius * r`` whose centre lies
    ``cornea_offset * r`` from ``c`` along the unit gaze ``g`` (the gaze columns need not be unit
    length). Per ray:

    * the first eye surface entered at ``t >= 0`` wins; eyes whose globe or cornea sphere contains
      the ray origin are skipped. Equal distances go to the sclera (globe) over the cornea and to
      the lower eye index.
    * globe hit: ``region`` 1 (sclera).
    * cornea hit: the ray refracts into the aqueous with ``eta = 1 / ior`` (Snell, exact
      unpolarised Fresnel reflectance). If the refracted ray then meets the iris plane
      (orthogonal to ``g``, ``iris_depth * r`` behind the corneal apex ``c + (cornea_offset +
      cornea_radius) r g``) ahead of it, within ``limbus_radius * r`` of the plane's centre:
      ``region`` 2 (iris), with ``t_iris`` and ``iris_uv``; otherwise ``region`` 3 (cornea: the
      refracted ray misses the iris disc, or is totally reflected when ``ior < 1``, in which case
      ``refr_dir`` is the mirror direction and ``fresnel`` 1).
    * ``iris_uv`` are coordinates on the iris plane in units of the limbus radius along the axes of
      :func:`eyefast.reference.eye.gaze_frame` (the world x and y axes turned by the smallest
      rotation taking +z to ``g``); ``u^2 + v^2 <= 1`` on the iris.

    Args:
        origins: [N, 3] ray origins.
        dirs: [N, 3] ray directions, any length > 0 (``t`` is in units of ``dirs``).
        eyes: [E, 12] eye parameters (same dtype and device as ``origins``).
        check: check the input values (see the module docstring): non-finite values, zero
            directions, radius / cornea_radius / limbus_radius / ior <= 0, a zero gaze, or a gaze
            along -z (where the iris frame is undefined).

    Returns:
        :class:`EyeTrace` ``(t, eye, region, normal, refr_dir, fresnel, t_iris, iris_uv)``; see its
        fields. Outputs that do not apply to a ray's region are 0 (``t``/``t_iris``: +inf).

    Differentiable w.r.t. origins, dirs and eyes (all 12 columns, the gaze through its
    normalisation), through t, normal, refr_dir, fresnel, t_iris and iris_uv. The discrete choices
    (which eye, which region) are held fixed; exactly tangent hits and the critical angle, where
    the derivative is unbounded, contribute 0. Same contract as the pure-PyTorch reference
    :func:`eyefast.reference.eye.trace_eyes`.
    """
    return EyeTrace(*torch.ops.eyefast.trace_eyes(origins, dirs, eyes, check))


@register_fake("eyefast::trace_eyes")
def _trace_eyes_fake(origins, dirs, eyes, check=True):
    torch._check(origins.dim() == 2 and origins.shape[1] == 3, lambda: "origins must have shape [N, 3]")
    torch._check(dirs.shape == origins.shape, lambda: "dirs must have the shape of origins")
    torch._check(eyes.dim() == 2 and eyes.shape[1] == 12, lambda: "eyes must have shape [E, 12]")
    n = origins.shape[0]
    return (
        origins.new_empty(n),
        origins.new_empty(n, dtype=torch.long),
        origins.new_empty(n, dtype=torch.long),
        origins.new_empty(n, 3),
        origins.new_empty(n, 3),
        origins.new_empty(n),
        origins.new_empty(n),
        origins.new_empty(n, 2),
    )


@register_fake("eyefast::trace_eyes_backward")
def _trace_eyes_bwd_fake(origins, dirs, eyes, t, eye, region, grad_t, grad_normal, grad_refr_dir, grad_fresnel,
                         grad_t_iris, grad_iris_uv):
    return torch.empty_like(origins), torch.empty_like(dirs), torch.empty_like(eyes)


def _trace_eyes_setup(ctx, inputs, output):
    origins, dirs, eyes, _check = inputs
    ctx.save_for_backward(origins, dirs, eyes, output[0], output[1], output[2])


def _trace_eyes_backward(ctx, g_t, _g_eye, _g_region, g_normal, g_refr_dir, g_fresnel, g_t_iris, g_iris_uv):
    origins, dirs, eyes, t, eye, region = ctx.saved_tensors
    need = ctx.needs_input_grad
    if not any(need[:3]):
        return None, None, None, None
    g_o, g_d, g_e = torch.ops.eyefast.trace_eyes_backward(
        origins, dirs, eyes, t, eye, region, g_t, g_normal, g_refr_dir, g_fresnel, g_t_iris, g_iris_uv
    )
    return g_o if need[0] else None, g_d if need[1] else None, g_e if need[2] else None, None


torch.library.register_autograd("eyefast::trace_eyes", _trace_eyes_backward, setup_context=_trace_eyes_setup)


# --------------------------------------------------------------------------------------------
# rasterize, rasterize_uv, project_to_clip, interpolate
# --------------------------------------------------------------------------------------------
def rasterize(verts_clip: torch.Tensor, faces: torch.Tensor, height: int, width: int, *, check: bool = True):
    """Rasterises a triangle mesh with a depth test (nearest face per pixel).

    Conventions (see ``csrc/include/eyefast/raster.h`` for the full contract):

    * ``verts_clip`` are clip-space positions ``(x, y, z, w)``; NDC = ``(x, y, z) / w``. NDC x
      in [-1, 1] maps to screen x in [0, W] (left to right), NDC y in [-1, 1] to screen y in
      [0, H] with **NDC y = -1 the top row** (y down, like the capture's camera: x right, y down,
      z forward). Pixel ``(i, j)`` (column i, row j) is sampled at its centre ``(i + 0.5, j + 0.5)``.
      :func:`project_to_clip` builds such vertices from a pinhole camera so that the result
      agrees with :meth:`eyefast.data.Capture.project` pixel for pixel.
    * Faces with a vertex behind the camera (w <= 0), in front of the near plane (NDC z < -1),
      non-finite, or more than 2^20 pixels off the image are **culled, not clipped**; pixels whose
      interpolated NDC z > 1 (beyond the far plane) are discarded. Both windings are drawn.
    * Coverage is exact and watertight (vertices snapped to 1/256 pixel, integer edge
      functions, top-left rule). The nearest view depth wins; equal depths go to the smallest
      face index. CPU and CUDA give bit-identical ``pix_to_face``.

    Args:
        verts_clip: [V, 4] float32/float64 clip-space vertices.
        faces: [F, 3] int32/int64 vertex indices.
        height, width: image size H, W (pixels).
        check: raise a ``ValueError`` naming the first face with an index outside [0, V) (such
            faces are skipped either way; on CUDA the check costs a device-to-host sync).

    Returns:
        pix_to_face: [H, W] int32 face index per pixel, -1 where empty.
        bary: [H, W, 3] perspective-correct barycentrics of the pixel centre's ray w.r.t.
            ``faces[pix_to_face]`` in the listed order (sum to 1; may be marginally negative
            at covered pixels next to an edge); 0 where empty.
        depth: [H, W] view depth ``w`` at the pixel centre (for :func:`project_to_clip`: the
            camera-space z, in world units), 0 where empty.

    Not differentiable (the outputs are returned detached); differentiate through
    :func:`interpolate` (w.r.t. vertex attributes and ``bary``).
    """
    return torch.ops.eyefast.rasterize(verts_clip.detach(), faces, int(height), int(width), check)


@register_fake("eyefast::rasterize")
def _rasterize_fake(verts_clip, faces, height, width, check=True):
    torch._check(verts_clip.dim() == 2 and verts_clip.shape[1] == 4, lambda: "verts_clip must have shape [V, 4]")
    torch._check(faces.dim() == 2 and faces.shape[1] == 3, lambda: "faces must have shape [F, 3]")
    return (
        verts_clip.new_empty(height, width, dtype=torch.int32),
        verts_clip.new_empty(height, width, 3),
        verts_clip.new_empty(height, width),
    )


def rasterize_uv(uvs: torch.Tensor, faces: torch.Tensor, height: int, width: int, *, check: bool = True):
    """Rasterises a mesh in texture space (for texture baking): which face covers each texel.

    Texel ``(i, j)`` (column i, row j of an H x W image) is sampled at
    ``u = (i + 0.5) / W``, ``v = 1 - (j + 0.5) / H``: **v = 0 is the bottom row** and v = 1 the
    top row, the OBJ convention (an image written top row first, as PNGs are, is indexed
    ``image[j, i]``). Where UV triangles overlap, the smallest face index wins.

    Args:
        uvs: [V, 2] float texture coordinates (usually in [0, 1]).
        faces: [F, 3] int32/int64 indices into ``uvs``.
        height, width: texture size.

    Returns:
        pix_to_face: [H, W] int32, -1 where no face covers the texel.
        bary: [H, W, 3] barycentrics of the texel centre (affine in UV), 0 where empty.
    """
    torch._check(uvs.dim() == 2 and uvs.shape[1] == 2, lambda: f"eyefast.rasterize_uv: uvs must have shape [V, 2], got {tuple(uvs.shape)}")
    u, v = uvs.detach().unbind(-1)
    clip = torch.stack([2 * u - 1, 1 - 2 * v, torch.zeros_like(u), torch.ones_like(u)], -1).contiguous()
    pix_to_face, bary, _ = rasterize(clip, faces, height, width, check=check)
    return pix_to_face, bary


def project_to_clip(points: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor, height: int, width: int,
                    near: float = 0.01, far: float = 1000.0) -> torch.Tensor:
    """Clip-space vertices for :func:`rasterize` from the capture's pinhole camera.

    With ``(x, y, z)`` the camera-space point (``w2c`` applied; x right, y down, z forward) and
    ``u = (K[0,0] x + K[0,1] y) / z + K[0,2]``, ``v = K[1,1] y / z + K[1,2]`` its continuous
    pixel coordinates exactly as :meth:`eyefast.data.Capture.project` computes them (pixel index
    ``i`` covers ``[i, i + 1)``; the ray of pixel ``i`` passes through ``i + 0.5``), the result is
    ``(x_c, y_c, z_c, w_c)`` with ``x_c / w_c = 2u / W - 1``, ``y_c / w_c = 2v / H - 1``, ``w_c = z``
    and the OpenGL depth mapping ``z_c / w_c`` = -1 at ``z = near``, +1 at ``z = far``. So the
    rasteriser's pixel ``(i, j)`` holds the surface seen along the capture's ray of pixel
    ``(i, j)``, and its ``depth`` is the camera-space z.

    Args:
        points: [V, 3] world points.
        K: [3, 3] intrinsics (``Capture.K``).
        w2c: [4, 4] (or [3, 4]) world-to-camera (``Capture.w2c[frame]``).
        height, width: image size (``Capture.H``, ``Capture.W``).
        near, far: depth range in camera z (0 < near < far).

    Returns:
        [V, 4] clip-space vertices, dtype and device of ``points``; differentiable.
    """
    if not (0 < near < far):
        raise ValueError(f"project_to_clip: need 0 < near < far, got near={near}, far={far}")
    K = K.to(dtype=points.dtype, device=points.device)
    w2c = w2c.to(dtype=points.dtype, device=points.device)
    pc = points @ w2c[:3, :3].T + w2c[:3, 3]
    x, y, z = pc.unbind(-1)
    xc = (2.0 / width) * (K[0, 0] * x + K[0, 1] * y + K[0, 2] * z) - z
    yc = (2.0 / height) * (K[1, 1] * y + K[1, 2] * z) - z
    zc = ((far + near) * z - 2.0 * far * near) / (far - near)
    return torch.stack([xc, yc, zc, z], -1).contiguous()


def interpolate(attrs: torch.Tensor, faces: torch.Tensor, pix_to_face: torch.Tensor, bary: torch.Tensor, *,
                check: bool = True) -> torch.Tensor:
    """Interpolates per-vertex attributes at rasterised pixels.

    ``out[p] = sum_k bary[p, k] * attrs[faces[pix_to_face[p], k]]``; 0 where ``pix_to_face`` is -1.

    Args:
        attrs: [V, C] float32/float64 per-vertex attributes.
        faces: [F, 3] int32/int64.
        pix_to_face: [...] int32 (e.g. [H, W] from :func:`rasterize`), -1 = empty.
        bary: [..., 3] barycentrics, same dtype as ``attrs``.
        check: raise a ``ValueError`` naming the first ``pix_to_face`` entry outside [-1, F) or
            face with an index outside [0, V) (those pixels read as empty either way).

    Returns:
        [..., C]. Differentiable w.r.t. ``attrs`` and ``bary`` (backward kernel with atomic adds).
    """
    return torch.ops.eyefast.interpolate(attrs, faces, pix_to_face, bary, check)


@register_fake("eyefast::interpolate")
def _interpolate_fake(attrs, faces, pix_to_face, bary, check=True):
    torch._check(attrs.dim() == 2, lambda: "attrs must have shape [V, C]")
    torch._check(bary.shape == (*pix_to_face.shape, 3), lambda: "bary must have shape [..., 3]")
    return attrs.new_empty(*pix_to_face.shape, attrs.shape[1])


@register_fake("eyefast::interpolate_backward")
def _interpolate_bwd_fake(attrs, faces, pix_to_face, bary, grad_out):
    return torch.empty_like(attrs), torch.empty_like(bary)


def _interpolate_setup(ctx, inputs, output):
    attrs, faces, pix_to_face, bary, _check = inputs
    ctx.save_for_backward(attrs, faces, pix_to_face, bary)


def _interpolate_backward(ctx, g_out):
    attrs, faces, pix_to_face, bary = ctx.saved_tensors
    need = ctx.needs_input_grad
    if not (need[0] or need[3]):
        return None, None, None, None, None
    g_a, g_b = torch.ops.eyefast.interpolate_backward(attrs, faces, pix_to_face, bary, g_out)
    return g_a if need[0] else None, None, None, g_b if need[3] else None, None


torch.library.register_autograd("eyefast::interpolate", _interpolate_backward, setup_context=_interpolate_setup)
