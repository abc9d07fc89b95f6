"""From a phone video to a trainable capture: ``eyefast prepare INPUT OUT``.

Usage::

    eyefast prepare my_video.mp4 data/me                 # then: eyefast train data/me/config.yaml
    eyefast prepare photos/ data/me --every 1            # a folder of images (names keep their stems)
    eyefast prepare my_video.mp4 data/me --stages masks,eyes,config --force   # rerun some stages
    eyefast prepare frames/ data/head --no-face --masks masks/                # no face landmarks; given masks

Stages (each reads what the earlier ones wrote in OUT; finished ones are skipped unless --force):
frames (sharpest frame of every --every, closed eyes dropped), poses (structure from motion, undistortion,
head frame: transforms.json, image/), masks (mask/, hair_mask/, leye_mask/, reye_mask/), eyes (3D eye
landmarks and centres), config (config.yaml and config_quick.yaml). OUT/prepare/report.png and report.json
show what was kept and how well it registered. Needs the optional packages: pip install 'eyefast[prepare]'.
Details: docs/own_data.md.
"""

from __future__ import annotations

import os

from .common import fail, parser, setup_logging

PROG = "eyefast prepare"


def build_parser(prog: str = PROG):
    from ..prepare import STAGES

    ap = parser(prog, __doc__)
    ap.add_argument("input", help="a video file (mp4, mov, ...) or a folder of images")
    ap.add_argument("out", help="the capture folder to write (transforms.json, image/, masks, config.yaml)")
    ap.add_argument("--stages", default=",".join(STAGES),
                    help=f"comma-separated stages to run, in this order: {','.join(STAGES)} (default: all)")
    ap.add_argument("--every", type=int, default=None,
                    help="keep the sharpest frame of every N (default: 10 for a video, 1 for a folder)")
    ap.add_argument("--max-frames", type=int, default=300, help="at most this many frames (default 300)")
    ap.add_argument("--resolution", type=int, default=960, help="long side of the frames in pixels (default 960; "
                    "never enlarged)")
    ap.add_argument("--no-face", action="store_true",
                    help="no face landmarks: no eye masks, eye landmarks or hair mask; the head frame from the cameras")
    ap.add_argument("--masks", default=None, metavar="DIR",
                    help="foreground masks named like the frames (their stems), instead of person segmentation")
    ap.add_argument("--force", action="store_true", help="rerun the stages even where they are done")
    ap.add_argument("--threads", type=int, default=-1, help="CPU threads for structure from motion (default: all)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars and no messages")
    return ap


def main(argv=None, prog: str = PROG) -> int:
    a = build_parser(prog).parse_args(argv)
    setup_logging(a.quiet)
    from ..prepare import PrepareError, prepare

    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    try:
        rep = prepare(a.input, a.out, stages=stages, every=a.every, max_frames=a.max_frames, resolution=a.resolution,
                      no_face=a.no_face, force=a.force, masks=a.masks, progress=not a.quiet, threads=a.threads)
    except (PrepareError, OSError) as e:
        return fail(prog, e)
    if a.quiet:
        return 0
    fr, po = rep.get("frames"), rep.get("poses")
    if rep["skipped"]:
        print(f"skipped (done already; --force reruns): {', '.join(rep['skipped'])}")
    if fr:
        print(f"frames: {len(fr['kept'])} kept, {len(fr['dropped'])} dropped (reasons in {a.out}/prepare/report.json)")
    if po:
        print(f"poses: {po['registered_fraction']:.0%} of the frames registered, reprojection error "
              f"{po['reprojection_error_px']:.2f} px; head frame from the {rep['head_frame'].get('method')}")
    if "eyes" in rep and "skipped" not in rep["eyes"]:
        r = rep["landmark_residuals"]
        print(f"eyes: landmarks from {r['left_eye']['inlier_views']} / {r['right_eye']['inlier_views']} views "
              f"(left / right), residual {r['left_eye']['residual_rms_px']:.2f} / "
              f"{r['right_eye']['residual_rms_px']:.2f} px")
    if rep.get("report_png"):
        print(f"report: {rep['report_png']}")
    if rep.get("config"):
        cfg = os.path.join(a.out, "config.yaml")
        print(f"next: eyefast train {cfg}   (a first look: eyefast train {os.path.join(a.out, 'config_quick.yaml')})")
    return 0
