"""Cameras to render a head from: the capture's own, a turntable around it, or any given in JSON.

A :class:`Camera` is a pinhole in the capture's convention (docs/method.md section 1): ``c2w`` maps
camera space (x right, y down, z forward) to the world (+y up, the face looking along +z), and pixel
``(x, y)`` looks along ``((x - cx + 0.5) / fx, (y - cy + 0.5) / fy, 1)``, exactly as
:meth:`eyefast.data.Capture.rays`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Camera", "Rig", "rig_of", "look_at", "camera_rays", "capture_cameras", "orbit_cameras",
           "cameras_from_json", "parse_size", "sized"]


@dataclass
class Camera:
    """A pinhole camera: intrinsics in pixels of a ``W x H`` image, ``c2w [4, 4]`` (float64, the capture's
    convention), ``frame_id`` (the capture's global frame id, for the per-view ambient occlusion; None for
    a new view: the mean of the training views) and a ``name``."""

    fx: float
    fy: float
    cx: float
    cy: float
    W: int
    H: int
    c2w: torch.Tensor
    frame_id: int | None = None
    name: str = ""

    @property
    def K(self) -> torch.Tensor:
        return torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=torch.float32)

    @property
    def center(self) -> torch.Tensor:
        return self.c2w[:3, 3].float()

    def scaled(self, s: float) -> "Camera":
        """The same view with ``s`` times the pixels per side (the field of view kept)."""
        W, H = max(1, round(self.W * s)), max(1, round(self.H * s))
        sx, sy = W / self.W, H / self.H
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy, W=W, H=H)


@dataclass
class Rig:
    """Where the capture's cameras are: ``target`` (the point nearest to all their optical axes),
    ``distance`` (mean camera-to-target distance), ``height`` (mean camera height, world y),
    ``azimuths`` (of the cameras about the vertical axis through the target, radians; 0 = in front,
    +z) and the reference intrinsics (the first camera's)."""

    target: torch.Tensor
    distance: float
    height: float
    azimuths: np.ndarray
    ref: Camera


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    """``c2w [4, 4]`` (float64) of a camera at ``eye`` looking at ``target`` (columns right, down,
    forward, centre)."""
    eye, target, up = (torch.as_tensor(np.asarray(v, dtype=np.float64)) for v in (eye, target, up))
    f = F.normalize(target - eye, dim=0)
    r = torch.linalg.cross(f, up)
    if float(r.norm()) < 1e-9:  # looking straight up or down: any right vector
        r = torch.linalg.cross(f, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    r = F.normalize(r, dim=0)
    d = torch.linalg.cross(f, r)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = r, d, f, eye
    return m


def camera_rays(cam: Camera, device="cpu"):
    """``(origins [H*W, 3], dirs [H*W, 3])`` float32 of every pixel, row-major (the formula of
    :meth:`eyefast.data.Capture.rays`)."""
    ys, xs = torch.meshgrid(torch.arange(cam.H, device=device), torch.arange(cam.W, device=device), indexing="ij")
    xs, ys = xs.reshape(-1).float(), ys.reshape(-1).float()
    d_cam = torch.stack([(xs - cam.cx + 0.5) / cam.fx, (ys - cam.cy + 0.5) / cam.fy, torch.ones_like(xs)], -1)
    c2w = cam.c2w.float().to(device)
    d = d_cam @ c2w[:3, :3].T
    o = c2w[:3, 3].expand_as(d)
    return o.contiguous(), F.normalize(d, dim=-1)


def parse_size(text) -> tuple | int | None:
    """``"256"`` -> 256 (the longer side, the capture's aspect kept); ``"320x240"`` -> (320, 240)
    (width, height); None -> None (the capture's size)."""
    if text is None or isinstance(text, (int, tuple)):
        return text
    t = str(text).lower().strip()
    try:
        if "x" in t:
            w, h = (int(v) for v in t.split("x"))
            if w < 4 or h < 4:
                raise ValueError
            return (w, h)
        n = int(t)
        if n < 4:
            raise ValueError
        return n
    except ValueError:
        raise ValueError(f"size {text!r}: give the longer side (e.g. 256) or WIDTHxHEIGHT (e.g. 320x240), "
                         "at least 4 pixels") from None


def sized(cam: Camera, size) -> Camera:
    """``cam`` at ``size`` (see :func:`parse_size`): an int scales the longer side to it; ``(W, H)``
    gives that image, the focal length scaled with the height and the principal point centred."""
    size = parse_size(size)
    if size is None:
        return cam
    if isinstance(size, int):
        return cam.scaled(size / max(cam.W, cam.H))
    W, H = size
    s = H / cam.H
    return replace(cam, fx=cam.fx * s, fy=cam.fy * s, cx=W / 2.0, cy=H / 2.0, W=W, H=H)


def _capture_camera(cap, i: int) -> Camera:
    return Camera(float(cap.fl_x), float(cap.fl_y), float(cap.cx), float(cap.cy), int(cap.W), int(cap.H),
                  cap.c2w64[i].clone(), int(cap.frame_ids[i]), f"{cap.split} view {i} ({cap.image_names[i]})")


def capture_cameras(cap, size=None, frames=None) -> list:
    """The capture's cameras (``frames``: indices into the split; default all), at ``size``."""
    idx = range(cap.n_frames) if frames is None else frames
    return [sized(_capture_camera(cap, int(i)), size) for i in idx]


def rig_of(cap) -> Rig:
    """The :class:`Rig` of a capture's cameras."""
    c2w = cap.c2w64
    o = c2w[:, :3, 3]
    d = F.normalize(c2w[:, :3, 2], dim=-1)
    # least squares: the point nearest to every optical axis, sum (I - d d^T) (p - o) = 0
    P = torch.eye(3, dtype=torch.float64)[None] - d[:, :, None] * d[:, None, :]
    A, b = P.sum(0), (P @ o[:, :, None]).sum(0)[:, 0]
    if float(torch.linalg.det(A)) > 1e-9:
        target = torch.linalg.solve(A, b)
    else:  # parallel axes (one camera): a point in front of the first camera
        target = o[0] + d[0] * float(o[0].norm())
    rel = o - target
    dist = float(rel.norm(dim=-1).mean())
    height = float(o[:, 1].mean())
    az = np.arctan2(rel[:, 0].numpy(), rel[:, 2].numpy())
    return Rig(target.float(), dist, height, az, _capture_camera(cap, 0))


def _unwrap_span(az: np.ndarray) -> tuple:
    """``(centre, span)`` of angles (radians), the span taken the short way round."""
    s = np.sort(np.mod(az, 2 * math.pi))
    gaps = np.diff(np.concatenate([s, s[:1] + 2 * math.pi]))
    k = int(np.argmax(gaps))  # the largest gap is where the cameras are not
    start = s[(k + 1) % len(s)]
    span = 2 * math.pi - float(gaps[k])
    return float(start + span / 2), span


def orbit_cameras(cap, n: int, size=None, arc_deg: float | None = None, elevation_deg: float | None = None) -> list:
    """``n`` cameras of a turntable around the capture's target (:func:`rig_of`), at the capture's mean
    distance and height, with the first camera's intrinsics at ``size``. ``arc_deg`` None: a swing to
    and fro over the azimuths the capture saw (a loop: the last frame leads back to the first);
    360: once around; another value: a swing over that many degrees about the front. ``elevation_deg``
    replaces the capture's mean height with a height at that elevation."""
    if n < 1:
        raise ValueError(f"--orbit needs at least 1 frame, got {n}")
    rig = rig_of(cap)
    tgt = rig.target.double()
    centre, span = _unwrap_span(rig.azimuths)
    if elevation_deg is None:
        dy = rig.height - float(tgt[1])
        dy = max(-0.95 * rig.distance, min(0.95 * rig.distance, dy))
    else:
        dy = rig.distance * math.sin(math.radians(elevation_deg))
    horiz = math.sqrt(max(rig.distance ** 2 - dy ** 2, 1e-12))
    ref = sized(rig.ref, size)
    cams = []
    for k in range(n):
        t = k / n
        if arc_deg is not None and float(arc_deg) >= 360.0:
            az = centre + 2 * math.pi * t
        else:
            half = 0.5 * (span if arc_deg is None else math.radians(float(arc_deg)))
            az = centre + half * math.sin(2 * math.pi * t)
        eye = tgt + torch.tensor([horiz * math.sin(az), dy, horiz * math.cos(az)], dtype=torch.float64)
        cams.append(replace(ref, c2w=look_at(eye, tgt), frame_id=None,
                            name=f"orbit {k + 1}/{n} (azimuth {(math.degrees(az) + 180) % 360 - 180:.0f} deg)"))
    return cams


def cameras_from_json(spec: str, cap, size=None) -> list:
    """Cameras from ``spec``: a JSON file or a JSON text, one object or a list of them (or an object with
    ``frames``, as transforms.json). Each object gives the pose as ``c2w`` (4x4 or 3x4, the capture's
    convention), ``transform_matrix`` (NeRF / OpenGL, as in transforms.json) or ``position`` +
    ``look_at`` (+ ``up``, default +y); intrinsics ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``
    default to the capture's first camera (then ``size`` applies)."""
    from ..data.capture import nerf_to_cora

    text = spec
    if os.path.isfile(spec):
        with open(spec) as fh:
            text = fh.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--camera: neither a JSON file nor JSON text ({e}): {spec[:80]!r}") from None
    top = data if isinstance(data, dict) else {}
    items = data.get("frames", [data]) if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ValueError("--camera: expected a camera object, a list of them or {\"frames\": [...]}")
    ref = _capture_camera(cap, 0)
    cams = []
    for k, it in enumerate(items):
        if not isinstance(it, dict):
            raise ValueError(f"--camera: camera {k} is not a JSON object")
        it = {**{key: top[key] for key in ("fl_x", "fl_y", "cx", "cy", "w", "h") if key in top}, **it}
        if "c2w" in it:
            m = np.asarray(it["c2w"], dtype=np.float64)
            if m.shape == (3, 4):
                m = np.vstack([m, [0, 0, 0, 1]])
        elif "transform_matrix" in it:
            m = nerf_to_cora(np.asarray(it["transform_matrix"], dtype=np.float64))
        elif "position" in it and "look_at" in it:
            m = look_at(it["position"], it["look_at"], it.get("up", (0.0, 1.0, 0.0))).numpy()
        else:
            raise ValueError(f"--camera: camera {k} needs c2w, transform_matrix, or position and look_at")
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise ValueError(f"--camera: camera {k}: the pose must be a finite 4x4 or 3x4 matrix")
        cam = replace(ref, c2w=torch.as_tensor(m), frame_id=None, name=it.get("name", f"camera {k}"))
        if any(key in it for key in ("fl_x", "fl_y", "cx", "cy", "w", "h")):
            W, H = int(it.get("w", ref.W)), int(it.get("h", ref.H))
            fx = float(it.get("fl_x", ref.fx * W / ref.W))
            cam = replace(cam, fx=fx, fy=float(it.get("fl_y", fx)), cx=float(it.get("cx", W / 2)),
                          cy=float(it.get("cy", H / 2)), W=W, H=H)
        else:
            cam = sized(cam, size)
        cams.append(cam)
    return cams
