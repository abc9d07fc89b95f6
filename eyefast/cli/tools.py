"""Own-data step-1 tools: eye masks from painted UV masks, 3D eye landmarks from painted texels or
from 2D landmarks in several views: ``eyefast tools COMMAND``.

Usage::

    eyefast tools eye-masks --capture DIR --mesh-uv mesh_uv.obj [--left-mask PNG] [--right-mask PNG]
                            [--out DIR | --overwrite]
    eyefast tools uv-landmarks --image painted.png --coord-map coord.npy
    eyefast tools uv-landmarks --left-image l.png --right-image r.png --coord-map coord.npy
    eyefast tools triangulate --capture DIR --landmarks landmarks.json [--json OUT]

Conventions (left = the subject's left eye, UV rows, pixel centres): see eyefast.data.tools.
"""

from __future__ import annotations

import json
import os
import sys

from .common import check_device_flag, fail, parser, setup_logging

PROG = "eyefast tools"


def build_parser(prog: str = PROG):
    ap = parser(prog, __doc__)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser("eye-masks", help="write leye_mask/ and reye_mask/ from painted UV masks")
    p.add_argument("--capture", required=True, help="capture folder (transforms.json, image/, ...)")
    p.add_argument("--mesh-uv", required=True, help="the exported UV-mapped mesh (mesh_uv.obj)")
    p.add_argument("--left-mask", default=None, help="painted UV mask (default CAPTURE/diffuse_leye_mask.png)")
    p.add_argument("--right-mask", default=None, help="painted UV mask (default CAPTURE/diffuse_reye_mask.png)")
    p.add_argument("--out", default=None, help="folder for leye_mask/ and reye_mask/ (default: the capture)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the eye masks already in leye_mask/ and reye_mask/ (without it, existing masks "
                        "are an error)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p = sub.add_parser("uv-landmarks", help="3D eye landmarks from green texels painted on the UV map")
    p.add_argument("--image", default=None, help="texture with 8 green landmarks (4 per eye)")
    p.add_argument("--left-image", default=None, help="texture with the 4 left-eye landmarks")
    p.add_argument("--right-image", default=None, help="texture with the 4 right-eye landmarks")
    p.add_argument("--coord-map", required=True, help="texel-to-3D map (coord.npy from the export)")
    p.add_argument("--tolerance", type=int, default=0, help="8-bit levels of slack around (0,255,0) (JPEGs)")
    p.add_argument("--json", default=None, help="also write {left_eye_ldm, right_eye_ldm} to this file")
    p = sub.add_parser("triangulate", help="3D eye landmarks from multi-view 2D landmarks")
    p.add_argument("--capture", required=True, help="capture folder (its cameras)")
    p.add_argument("--landmarks", required=True, help='JSON {"<image>": {"left_eye": [[x,y]x4], "right_eye": ...}}')
    p.add_argument("--integer-pixel-centers", action="store_true",
                   help="the 2D points put pixel centres at integers (OpenCV style): add 0.5")
    p.add_argument("--json", default=None, help="also write {left_eye_ldm, right_eye_ldm} to this file")
    return ap


def main(argv=None, prog: str = PROG) -> int:
    a = build_parser(prog).parse_args(argv)
    from ..core.device import parse_device
    from ..data.capture import CaptureError
    from ..data.tools import ToolError, config_lines, eye_masks, triangulate, uv_landmarks

    setup_logging()
    where = f"{prog} {a.cmd}"
    tol = getattr(a, "tolerance", None)
    if tol is not None and not 0 <= tol <= 255:
        return fail(where, f"--tolerance must be 0 to 255 (8-bit levels), got {tol}")
    if getattr(a, "json", None) and os.path.isdir(a.json):
        return fail(where, f"--json '{a.json}' is a folder: give a file name")
    try:
        if a.cmd == "eye-masks":
            err = check_device_flag(a.device)
            if err:
                raise ToolError(err)
            try:
                device = parse_device(a.device)
            except ValueError as e:
                raise ToolError(str(e)) from None
            res = eye_masks(a.capture, a.mesh_uv, a.left_mask, a.right_mask, a.out, device, overwrite=a.overwrite)
            print(f"wrote {res['frames']} frames to {os.path.join(res['out_dir'], 'leye_mask')} and "
                  f"{os.path.join(res['out_dir'], 'reye_mask')} (frames with a visible eye: left "
                  f"{sum(c > 0 for c in res['left_pixels'])}, right {sum(c > 0 for c in res['right_pixels'])})")
            return 0
        if a.cmd == "uv-landmarks":
            res = uv_landmarks(a.coord_map, a.image, a.left_image, a.right_image, a.tolerance)
        else:
            res = triangulate(a.capture, a.landmarks, a.integer_pixel_centers)
            for eye in ("left_eye", "right_eye"):
                print(f"# {eye}: {res['views'][eye]} views, rms ray distance {res['rms_ray_distance'][eye]:.3g}",
                      file=sys.stderr)
        print(config_lines(res))
        if a.json:
            os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump({k: res[k] for k in ("left_eye_ldm", "right_eye_ldm")}, f, indent=1)
        return 0
    except (ToolError, CaptureError, OSError) as e:
        return fail(where, e)
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130

