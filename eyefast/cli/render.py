"""Render a trained head from anywhere, lit from anywhere: ``eyefast render --run RUN``.

Usage::

    eyefast render --run workspace/synth_demo --orbit 24 --light orbit --out turntable.mp4
    eyefast render --run RUN --orbit 24 --light left --light right --out turntable.gif
    eyefast render --run RUN --views --light flash --out views/           # the capture's cameras
    eyefast render --run RUN --camera cam.json --light 1.5,0.5,2 --out shot.png
    eyefast render --run RUN --orbit 8 --source export --out strip.png    # the exported assets

Cameras (one of): --orbit N, a turntable of N frames around the head at the capture's mean distance
and height (by default a swing over the angles the capture saw, --arc 360 for a full turn); --views,
the capture's cameras (--split train|val); --camera JSON, cameras given as a file or text (c2w in the
capture's convention, transform_matrix as in transforms.json, or position + look_at).

Lights (--light, repeatable, they add up): flash (at the camera, the capture's light), left, right,
top, bottom (50 degrees off the camera, moving with it), orbit (circling the view axis once over the
frames), or a world point x,y,z. Each has the capture's colour and intensity (times --intensity).

Output (--out): a video (.mp4, H.264 through imageio-ffmpeg), .gif, .png (a strip of the frames,
--columns per row) or a folder (ending in /). --source export draws RUN/export (run eyefast export
first) through eyefast's rasteriser instead of the volume model. --mode picks the buffer shown:
shaded, albedo, specular, roughness, normals or eyes.
"""

from __future__ import annotations

import os
import sys
import time

from .common import add_device, fail, parser, setup_logging

PROG = "eyefast render"


def build_parser(prog: str = PROG):
    from ..visual.render import MODES

    ap = parser(prog, __doc__)
    ap.add_argument("--run", "--workspace", dest="run", required=True, metavar="RUN",
                    help="run folder <workspace>/<name> (written by eyefast train)")
    cams = ap.add_mutually_exclusive_group()
    cams.add_argument("--orbit", type=int, metavar="N", help="a turntable of N frames (default 24 when no camera is given)")
    cams.add_argument("--views", action="store_true", help="the capture's cameras (--split)")
    cams.add_argument("--camera", metavar="JSON", help="cameras from a JSON file or JSON text")
    ap.add_argument("--arc", type=float, metavar="DEG",
                    help="--orbit: degrees swung about the front (default: the capture's span; 360: a full turn)")
    ap.add_argument("--elevation", type=float, metavar="DEG",
                    help="--orbit: camera elevation (default: the capture's mean height)")
    ap.add_argument("--split", choices=["train", "val"], default="train", help="--views: which cameras (default train)")
    ap.add_argument("--light", action="append", metavar="SPEC",
                    help="flash|left|right|top|bottom|orbit|x,y,z (repeatable; default flash)")
    ap.add_argument("--intensity", type=float, default=1.0, help="scale of every light's intensity (default 1)")
    ap.add_argument("--size", default="256", metavar="N|WxH",
                    help="image size: the longer side (the capture's aspect) or WIDTHxHEIGHT (default 256; "
                         "'native' with --views: the capture's)")
    ap.add_argument("--source", choices=["model", "export"], default="model",
                    help="model: the trained volume model; export: RUN/export's meshes and textures")
    ap.add_argument("--export-dir", help="--source export: the export folder (default RUN/export)")
    ap.add_argument("--mode", choices=list(MODES), default="shaded", help="the buffer shown (default shaded)")
    ap.add_argument("--out", required=True, help="video.mp4 | anim.gif | strip.png | frames_dir/")
    ap.add_argument("--fps", type=float, default=12.0, help="frames per second of a video or GIF (default 12)")
    ap.add_argument("--columns", type=int, help="frames per row of a .png strip (default: up to 8)")
    ap.add_argument("--labels", action="store_true", help="write each frame's camera name on it")
    ap.add_argument("--ckpt", help="checkpoint (default RUN/latest.pth)")
    ap.add_argument("--chunk-size", type=int, help="rays per batch (default: the config's renderer.chunk_size)")
    ap.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    add_device(ap, "the run's")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv=None, prog: str = PROG) -> int:
    ap = build_parser(prog)
    a = ap.parse_args(argv)
    if a.orbit is not None and a.orbit < 1:
        ap.error(f"--orbit must be >= 1, got {a.orbit}")
    if a.fps <= 0:
        ap.error(f"--fps must be > 0, got {a.fps}")
    if a.threads is not None and a.threads < 1:
        ap.error(f"--threads must be >= 1, got {a.threads}")
    from ..data.config import ConfigError
    from ..export.files import ExportError
    from ..visual.lights import parse_light

    try:
        specs = [parse_light(s) for s in (a.light or ["flash"])]
    except ValueError as e:
        ap.error(str(e))
    setup_logging(a.quiet)
    try:
        import torch

        if a.threads is not None:
            torch.set_num_threads(a.threads)
        return _render(a, specs, prog)
    except (ConfigError, ExportError, ValueError, FileNotFoundError, RuntimeError) as e:
        return fail(prog, e)


def _render(a, specs, prog) -> int:
    from ..run import Run
    from ..visual import cameras as C
    from ..visual.render import Renderer, render_sequence, write_frames

    t0 = time.perf_counter()
    run = Run.load(a.run, ckpt=a.ckpt, device=a.device)
    renderer = Renderer(run, a.source, a.export_dir, a.chunk_size)
    size = None if a.size == "native" else C.parse_size(a.size)
    if a.views:
        cams = C.capture_cameras(run.capture(a.split), size)
    elif a.camera:
        cams = C.cameras_from_json(a.camera, run.capture("train"), size)
    else:
        cams = C.orbit_cameras(run.capture("train"), a.orbit or 24, size, a.arc, a.elevation)
    t1 = time.perf_counter()
    frames = render_sequence(renderer, cams, specs, a.mode, a.intensity, a.labels, progress=not a.quiet)
    t2 = time.perf_counter()
    out = write_frames(frames, a.out, a.fps, a.columns)
    H, W = frames[0].shape[:2]
    if not a.quiet:
        print(f"wrote {out}: {len(frames)} frames of {W}x{H} ({a.source}; lights: "
              f"{', '.join(s if isinstance(s, str) else ','.join(f'{v:g}' for v in s) for s in specs)}) "
              f"in {t2 - t1:.1f} s ({(t2 - t1) / len(frames):.2f} s per frame; loading {t1 - t0:.1f} s)",
              file=sys.stdout)
    return 0
