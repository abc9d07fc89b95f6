"""Generate the built-in synthetic capture: ``eyefast synth OUT``.

Usage::

    eyefast synth data/demo [--preset demo|tiny] [--views N] [--resolution R] [--seed S] [--refractive]

Writes a complete capture folder (images, all masks, transforms.json, config.yaml) plus the ground
truth in OUT/gt/ (face mesh, materials, eyes); see eyefast.data.synth.
"""

from __future__ import annotations

from .common import fail, parser

PROG = "eyefast synth"


def build_parser(prog: str = PROG):
    from ..data.synth import PRESETS

    ap = parser(prog, __doc__)
    ap.add_argument("out", help="output capture folder")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    ap.add_argument("--views", type=int, default=None, help="number of views (default: preset)")
    ap.add_argument("--resolution", type=int, default=None, help="image side in pixels (default: preset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refractive", action="store_true", help="add a refracting cornea to each eye")
    return ap


def main(argv=None, prog: str = PROG) -> int:
    a = build_parser(prog).parse_args(argv)
    from ..data.synth import generate

    try:
        res = generate(a.out, a.preset, a.views, a.resolution, a.seed, a.refractive)
    except (ValueError, OSError) as e:
        return fail(prog, e)
    print(f"{res['views']} views at {res['resolution']}x{res['resolution']} -> {res['out']} in {res['seconds']:.1f} s "
          f"(face mesh {res['face_vertices']} vertices, foreground {res['foreground']:.0%}); "
          f"train it with: eyefast train {res['out']}/config.yaml")
    return 0
