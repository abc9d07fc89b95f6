"""The head frame: a similarity transform from the structure-from-motion world to eyefast's world, with the
head at the origin, about 1 unit tall (inside ``data.bound`` 1), +y up, the face looking along +z and +x
the subject's left (docs/method.md section 1).

* With a face: the triangulated face landmarks (eye corners, nose tip, chin) are fitted (Umeyama, least
  squares) to a mean head's: :data:`TEMPLATE_MM`, in millimetres, 1 unit = :data:`MM_PER_UNIT` mm.
* Without (``--no-face``, or no face found): from the cameras. The centre is the point nearest all optical
  axes, +y the mean camera up, +z from the centre towards the mean camera position (made orthogonal to
  +y); the scale puts the 90th percentile of the distances from the centre of the sparse points seen
  inside the foreground at :data:`HEAD_RADIUS`.
"""

from __future__ import annotations

import numpy as np

from ..data.tools import ToolError, nearest_point_to_rays
from .common import PrepareError

#: 1 world unit in millimetres: a 12 mm eyeball is then 0.05 units, the config's eyeball size
MM_PER_UNIT = 240.0
#: mediapipe landmark -> its place on a mean adult head (mm; x the subject's left, y up, z forward, origin the
#: head's centre, about mid-way between the crown and the chin): outer/inner eye corners, nose tip, chin
TEMPLATE_MM = {
    33: (-45.0, 0.0, 60.0),   # right eye, outer corner
    133: (-16.0, 0.0, 72.0),  # right eye, inner corner
    362: (16.0, 0.0, 72.0),   # left eye, inner corner
    263: (45.0, 0.0, 60.0),   # left eye, outer corner
    1: (0.0, -45.0, 100.0),   # nose tip
    152: (0.0, -118.0, 68.0),  # chin
}
#: --no-face: the foreground's sparse points reach this far from the centre (90th percentile; world units)
HEAD_RADIUS = 0.5


class Similarity:
    """``x' = s R x + t``."""

    def __init__(self, s: float, R: np.ndarray, t: np.ndarray):
        self.s, self.R, self.t = float(s), np.asarray(R, np.float64), np.asarray(t, np.float64)

    def points(self, p):
        return self.s * np.asarray(p, np.float64) @ self.R.T + self.t

    def cameras(self, c2w):
        """Camera-to-world ``[..., 4, 4]`` -> the same cameras in the new frame (rotations stay rotations)."""
        c2w = np.asarray(c2w, np.float64)
        out = c2w.copy()
        out[..., :3, :3] = self.R @ c2w[..., :3, :3]
        out[..., :3, 3] = self.points(c2w[..., :3, 3])
        return out

    def to_dict(self):
        return {"scale": self.s, "rotation": self.R.tolist(), "translation": self.t.tolist()}


def umeyama(src, dst) -> Similarity:
    """The least-squares similarity with ``dst ~ s R src + t`` (``[N, 3]`` each, N >= 3)."""
    X, Y = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    U, S, Vt = np.linalg.svd(Yc.T @ Xc / len(X))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt)) or 1.0
    R = U @ D @ Vt
    var = (Xc ** 2).sum() / len(X)
    s = float(np.trace(np.diag(S) @ D) / var) if var > 0 else 1.0
    return Similarity(s, R, my - s * R @ mx)


def from_face(points3d: np.ndarray):
    """The head frame from triangulated mediapipe landmarks ``[478, 3]`` (NaN where not triangulated).

    Returns ``(Similarity, info)``; info has the anchors used and their residuals after the fit (mm)."""
    ids = [i for i in TEMPLATE_MM if np.isfinite(points3d[i]).all()]
    if len(ids) < 4:
        raise PrepareError(f"only {len(ids)} of the 6 face anchors (eye corners, nose tip, chin) could be "
                           "triangulated: the face is not seen well enough; try --no-face")
    dst = np.array([TEMPLATE_MM[i] for i in ids]) / MM_PER_UNIT
    T = umeyama(points3d[ids], dst)
    res = np.linalg.norm(T.points(points3d[ids]) - dst, axis=-1) * MM_PER_UNIT
    return T, {"method": "face", "anchors": ids, "anchor_residual_mm": [round(float(r), 2) for r in res]}


def from_cameras(c2w: np.ndarray, points: np.ndarray):
    """The head frame from the cameras ``[F, 4, 4]`` (x right, y down, z forward) and the sparse points seen
    inside the foreground ``[P, 3]``. Returns ``(Similarity, info)``."""
    c2w = np.asarray(c2w, np.float64)
    centres, fwd = c2w[:, :3, 3], c2w[:, :3, 2]
    try:
        centre = nearest_point_to_rays(centres, fwd)
    except ToolError:
        raise PrepareError("the cameras' optical axes are (nearly) parallel: film around the head, "
                           "not past it") from None
    up = -c2w[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    z = centres.mean(0) - centre
    z -= (z @ up) * up
    if np.linalg.norm(z) < 1e-9:
        raise PrepareError("the cameras surround the head evenly: the front of the face is undefined; "
                           "prepare it with the face landmarks (without --no-face)")
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    R = np.stack([x, up, z])
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if len(pts) >= 10:
        r90 = float(np.percentile(np.linalg.norm(pts - centre, axis=-1), 90))
    else:  # hardly any points: the camera distance stands in (a head fills about a third of the view)
        r90 = float(np.median(np.linalg.norm(centres - centre, axis=-1))) / 5.0
    s = HEAD_RADIUS / max(r90, 1e-12)
    T = Similarity(s, R, -s * R @ centre)
    return T, {"method": "cameras", "points": int(len(pts)), "radius_90": r90}
