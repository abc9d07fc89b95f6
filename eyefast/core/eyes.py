"""The refractive eye's parameters: the ``eyes`` tensor of :func:`eyefast.core.ops.trace_eyes`, the
model-eye ratios, and the iris-plane frame.

These are the op's contract (what its columns mean, what its ``region`` codes say) and the model
eye the scene uses; the kernels (``csrc/include/eyefast/trace_eyes.h``) and the pure-PyTorch
reference (:mod:`eyefast.reference.eye`) follow them.
"""

from __future__ import annotations

import torch

__all__ = ["EYE_COLUMNS", "EYE_PARAMS", "MODEL_EYE", "model_eye_planes", "REGION_MISS", "REGION_SCLERA",
           "REGION_IRIS", "REGION_CORNEA", "pack_eyes", "gaze_frame"]

#: columns of the ``eyes`` parameter tensor of :func:`trace_eyes` ([E, EYE_PARAMS])
EYE_COLUMNS = ("cx", "cy", "cz", "radius", "gx", "gy", "gz", "cornea_radius", "cornea_offset", "limbus_radius",
               "iris_depth", "ior")
EYE_PARAMS = len(EYE_COLUMNS)

#: SPEC section 8 model-eye ratios (Atchison 2006 via gkaModelEye), in units of the globe radius
#: (12 mm): cornea front radius 7.77 mm, apex 13.3 mm in front of the centre, limbus 5.9 mm,
#: iris plane 3.7 mm behind the apex; one refracting surface into the aqueous (n = 1.336).
MODEL_EYE = {
    "cornea_radius": 7.77 / 12.0,
    "cornea_offset": (13.3 - 7.77) / 12.0,
    "limbus_radius": 5.9 / 12.0,
    "iris_depth": 3.7 / 12.0,
    "ior": 1.336,
}

def model_eye_planes(m: dict = MODEL_EYE) -> tuple[float, float]:
    """Distances along the gaze from the eyeball centre, in units of the globe radius, of the iris
    plane (``cornea_offset + cornea_radius - iris_depth``) and of the plane where the cornea sphere
    meets the globe (the seam)."""
    co, cr = m["cornea_offset"], m["cornea_radius"]
    return co + cr - m["iris_depth"], (co * co + 1.0 - cr * cr) / (2.0 * co)


#: ``region`` codes of :func:`trace_eyes`
REGION_MISS, REGION_SCLERA, REGION_IRIS, REGION_CORNEA = 0, 1, 2, 3


def pack_eyes(centers, radii, gaze, cornea_radius=None, cornea_offset=None, limbus_radius=None, iris_depth=None,
              ior=None):
    """Builds the ``[E, 12]`` ``eyes`` tensor of :func:`trace_eyes` (differentiably).

    centers [E, 3], radii [E] or scalar, gaze [E, 3] (need not be unit); the cornea values are
    scalars or [E] tensors in units of the globe radius (defaults: :data:`MODEL_EYE`).
    """
    e = centers.shape[0]

    def col(v, default):
        v = default if v is None else v
        if not torch.is_tensor(v):  # a fill: a tensor from Python data would be a blocking copy on a GPU
            return centers.new_full((e, 1), float(v))
        return v.to(centers.dtype).reshape(-1).expand(e)[:, None]

    return torch.cat([
        centers, col(radii, None if radii is None else radii), gaze,
        col(cornea_radius, MODEL_EYE["cornea_radius"]), col(cornea_offset, MODEL_EYE["cornea_offset"]),
        col(limbus_radius, MODEL_EYE["limbus_radius"]), col(iris_depth, MODEL_EYE["iris_depth"]),
        col(ior, MODEL_EYE["ior"]),
    ], dim=1)


def gaze_frame(g):
    """Iris-plane axes ``(e_u, e_v)`` for unit gaze ``g [..., 3]``: the world x and y axes carried
    onto the plane orthogonal to ``g`` by the smallest rotation taking +z to ``g`` (continuous
    everywhere except at ``g = -z``, an eye looking straight back into the head)."""
    gx, gy, gz = g.unbind(-1)
    k = 1.0 / (1.0 + gz)
    e_u = torch.stack([1.0 - gx * gx * k, -gx * gy * k, -gx], -1)
    e_v = torch.stack([-gx * gy * k, 1.0 - gy * gy * k, -gy], -1)
    return e_u, e_v
