"""Real spherical-harmonics direction encoding (pure PyTorch reference).

Same basis, order and signs as instant-ngp / tiny-cuda-nn's ``SphericalHarmonics``
encoding: real SH with the Condon-Shortley phase folded in, i.e. for band ``l`` and
order ``m`` (index ``l*l + l + m``)::

    m < 0:  sqrt(2) * Im(Y_l^|m|)      m = 0:  Y_l^0      m > 0:  sqrt(2) * Re(Y_l^m)

where ``Y_l^m`` are the complex SH with the Condon-Shortley phase (scipy's
convention).  "degree" counts bands as tcnn does: degree ``D`` gives ``D*D`` outputs
(degree 4 -> 16 coefficients, bands 0..3).

Input here is a *unit direction* in world space.  (tcnn's encoding takes inputs in
[0, 1]^3 and maps them with ``2*x - 1`` first; a kernel matching this reference must
be fed ``(d + 1) / 2`` when it follows tcnn's input convention.)
"""

from __future__ import annotations

import torch

__all__ = ["sh_encode", "sh_encode_deg4", "SH_C"]

#: the literal constants (as in tcnn's generated code), for tests and kernels
SH_C = {
    "C0": 0.28209479177387814,
    "C1": 0.48860251190291987,
    "C2a": 1.0925484305920792,
    "C2b": 0.94617469575755997,
    "C2c": 0.31539156525251999,
    "C2d": 0.54627421529603959,
    "C3a": 0.59004358992664352,
    "C3b": 2.8906114426405538,
    "C3c": 0.45704579946446572,
    "C3d": 0.3731763325901154,
    "C3e": 1.4453057213202769,
}


def sh_encode(dirs: torch.Tensor, degree: int = 4) -> torch.Tensor:
    """Real SH basis evaluated at unit directions.

    Args:
        dirs: ``[..., 3]`` unit vectors (any float dtype; not renormalised).
        degree: number of bands, 1..4 (outputs ``degree**2`` values).

    Returns:
        ``[..., degree**2]`` tensor, same dtype/device as ``dirs``; differentiable.
    """
    if dirs.shape[-1] != 3:
        raise ValueError(f"sh_encode: dirs must have shape [..., 3], got {tuple(dirs.shape)}")
    if degree not in (1, 2, 3, 4):
        raise ValueError(f"sh_encode: degree must be 1..4, got {degree}")
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    c = SH_C
    out = [torch.full_like(x, c["C0"])]
    if degree > 1:
        out += [-c["C1"] * y, c["C1"] * z, -c["C1"] * x]
    if degree > 2:
        x2, y2, z2 = x * x, y * y, z * z
        out += [
            c["C2a"] * x * y,
            -c["C2a"] * y * z,
            c["C2b"] * z2 - c["C2c"],
            -c["C2a"] * x * z,
            c["C2d"] * (x2 - y2),
        ]
    if degree > 3:
        out += [
            c["C3a"] * y * (3.0 * x2 - y2) * -1.0,
            c["C3b"] * x * y * z,
            c["C3c"] * y * (1.0 - 5.0 * z2),
            c["C3d"] * z * (5.0 * z2 - 3.0),
            c["C3c"] * x * (1.0 - 5.0 * z2),
            c["C3e"] * z * (x2 - y2),
            c["C3a"] * x * (3.0 * y2 - x2),
        ]
    return torch.stack(out, dim=-1)


def sh_encode_deg4(dirs: torch.Tensor) -> torch.Tensor:
    """Degree-4 (16-coefficient) encoding of unit directions ``[N, 3] -> [N, 16]``."""
    return sh_encode(dirs, 4)
