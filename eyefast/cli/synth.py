"""Generate the built-in synthetic capture: ``eyefast synth OUT``.

Usage::

    eyefast synth data/demo [--preset demo|tiny] [--views N] [--resolution R] [--seed S] [--refractive]
                            [--texture smooth|fine] [--renderer trace|mesh]

Writes a complete capture folder (images, all masks, transforms.json, config.yaml) plus the ground
truth in OUT/gt/ (face mesh, materials, eyes); see eyefast.data.synth.
"""

from __future__ import annotations

from .common import fail, parser

PROG = "eyefast synth"


def _size(text: str):
    """``"128"`` -> 128, ``"720x960"`` -> (720, 960)."""
    import argparse

    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    from ..data.synth import MAX_RESOLUTION

    if len(parts) not in (1, 2) or min(parts) < 4 or max(parts) > MAX_RESOLUTION:
        raise argparse.ArgumentTypeError(f"expected a size R or WxH of 4 to {MAX_RESOLUTION} pixels, got {text!r}")
    return parts[0] if len(parts) == 1 else tuple(parts)


def build_parser(prog: str = PROG):
    from ..data.synth import PRESETS

    ap = parser(prog, __doc__)
    ap.add_argument("out", help="output capture folder")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    ap.add_argument("--views", type=int, default=None, help="number of views (default: preset)")
    ap.add_argument("--resolution", type=_size, default=None, metavar="R|WxH",
                    help="image side in pixels, or width x height (default: preset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refractive", action="store_true", help="add a refracting cornea to each eye")
    ap.add_argument("--texture", choices=["smooth", "fine"], default="smooth",
                    help="fine: a high-frequency skin and hair pattern (for structure from motion, eyefast prepare)")
    ap.add_argument("--renderer", choices=["trace", "mesh"], default="trace",
                    help="trace: sphere tracing of the analytic head; mesh: rasterised meshes (far faster; no "
                         "--refractive)")
    return ap


def main(argv=None, prog: str = PROG) -> int:
    a = build_parser(prog).parse_args(argv)
    import os

    from ..data.synth import MAX_VIEWS, generate

    if a.views is not None and not 1 <= a.views <= MAX_VIEWS:
        return fail(prog, f"--views must be 1 to {MAX_VIEWS}, got {a.views}")
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        return fail(prog, f"OUT '{a.out}' is a file, not a folder: give a new or empty folder")
    if os.path.isdir(a.out) and os.listdir(a.out) and not os.path.isdir(os.path.join(a.out, "gt")):
        return fail(prog, f"OUT '{a.out}' holds files and is not a synthetic capture (no gt/): give a new or "
                          "empty folder (synth would overwrite its images, masks and transforms.json)")
    try:
        res = generate(a.out, a.preset, a.views, a.resolution, a.seed, a.refractive, a.texture, a.renderer)
    except (ValueError, OSError) as e:
        return fail(prog, e)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {a.out} is incomplete", file=__import__("sys").stderr)
        return 130
    size = res["resolution"] if isinstance(res["resolution"], str) else f"{res['resolution']}x{res['resolution']}"
    print(f"{res['views']} views at {size} -> {res['out']} in {res['seconds']:.1f} s "
          f"(face mesh {res['face_vertices']} vertices, foreground {res['foreground']:.0%}); "
          f"train it with: eyefast train {res['out']}/config.yaml")
    return 0
