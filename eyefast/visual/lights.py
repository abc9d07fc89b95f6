"""Lights to render a head under: named placements relative to the viewer, a light orbiting the view,
or a point anywhere in the world.

A light spec (``eyefast render --light SPEC``, repeatable: the lights add up):

* ``flash``: at the camera (the capture's own light, as in training);
* ``left``, ``right``, ``top``, ``bottom``: turned :data:`SIDE_ANGLE` degrees from the camera about the
  target, to the viewer's left, right, up or down, at the camera's distance (they move with the camera:
  a turntable under them looks like the head turning in a fixed studio);
* ``orbit``: circles the view axis :data:`ORBIT_ANGLE` degrees off it once over the frames (left, top,
  right, bottom), at the camera's distance;
* ``x,y,z``: a world point (fixed while the camera moves).

Each light has the capture's colour and intensity (``light`` section of the config) times a scale;
the learned ``light_scale`` applies on top, as in training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..scene.shading import point_light

__all__ = ["SIDE_ANGLE", "ORBIT_ANGLE", "NAMED", "parse_light", "place_lights", "direction_light"]

SIDE_ANGLE = 50.0
ORBIT_ANGLE = 45.0
NAMED = ("flash", "left", "right", "top", "bottom", "orbit")


def parse_light(spec: str):
    """A light spec -> a name of :data:`NAMED` or a world point ``(x, y, z)``; ValueError otherwise."""
    s = str(spec).strip().lower()
    if s in NAMED:
        return s
    parts = s.split(",")
    if len(parts) == 3:
        try:
            p = tuple(float(v) for v in parts)
            if all(math.isfinite(v) for v in p):
                return p
        except ValueError:
            pass
    raise ValueError(f"light {spec!r}: give one of {', '.join(NAMED)} or a world point x,y,z (e.g. 1.5,0.5,2)")


def _rot(v: torch.Tensor, axis: torch.Tensor, ang: float) -> torch.Tensor:
    axis = F.normalize(axis, dim=0)
    c, s = math.cos(ang), math.sin(ang)
    return v * c + torch.linalg.cross(axis, v, dim=0) * s + axis * (axis @ v) * (1 - c)


def direction_light(cam, target: torch.Tensor, azimuth_deg: float, elevation_deg: float, distance: float | None = None):
    """A position ``[3]`` around ``target``: the camera's direction turned ``azimuth_deg`` to the viewer's
    right (negative: left) and ``elevation_deg`` up, at ``distance`` (default: the camera's)."""
    c2w = cam.c2w.float()
    camc, target = c2w[:3, 3], target.float()
    D = float((camc - target).norm()) if distance is None else float(distance)
    d0 = F.normalize(camc - target, dim=0)
    right, up = c2w[:3, 0], -c2w[:3, 1]
    d = _rot(d0, up, math.radians(azimuth_deg))
    axis = torch.linalg.cross(d, up)  # horizontal, to the viewer's left of d: turning about it lifts d
    if float(axis.norm()) < 1e-6:
        axis = -right
    d = _rot(d, axis, math.radians(elevation_deg))
    return target + D * d


def place_lights(specs, cam, target: torch.Tensor, t: float, color, intensity: float) -> list:
    """The point lights (:func:`eyefast.scene.shading.point_light`) of ``specs`` (parsed by
    :func:`parse_light`) for camera ``cam`` at time ``t`` in [0, 1) of a sequence."""
    out = []
    for s in specs:
        if s == "flash":
            pos = None
        elif s == "left":
            pos = direction_light(cam, target, -SIDE_ANGLE, 0.0)
        elif s == "right":
            pos = direction_light(cam, target, SIDE_ANGLE, 0.0)
        elif s == "top":
            pos = direction_light(cam, target, 0.0, SIDE_ANGLE)
        elif s == "bottom":
            pos = direction_light(cam, target, 0.0, -SIDE_ANGLE)
        elif s == "orbit":
            phi = 2 * math.pi * t  # 0: left, 1/4: top, 1/2: right, 3/4: bottom
            a = ORBIT_ANGLE
            pos = direction_light(cam, target, -a * math.cos(phi), a * math.sin(phi))
        else:
            pos = torch.tensor(s, dtype=torch.float32)
        out.append(point_light(pos, color, intensity))
    return out
