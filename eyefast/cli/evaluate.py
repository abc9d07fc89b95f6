"""Evaluate a trained run against its capture: ``eyefast evaluate --run RUN``.

Usage::

    eyefast evaluate --run workspace/synth_demo [--capture DIR] [--ckpt CKPT] [--json eval.json]

Renders the validation views (every 10th frame) and prints PSNR, SSIM and PSNR on the eye pixels;
with the synthetic capture's ground truth (gt/), also the eye-centre and radius errors and the
surface error of the exported mesh (RUN/export/mesh.obj). Writes a report with pictures to RUN/eval/:
index.html (open it in a browser) with the metrics, per view prediction | truth | error heat-map, the
eye crops side by side and the training curves (--report DIR elsewhere, --no-report none).
"""

from __future__ import annotations

import json
import os
import sys

from .common import add_print_config, check_device_flag, fail, parser, print_config

PROG = "eyefast evaluate"


def build_parser(prog: str = PROG):
    ap = parser(prog, __doc__)
    ap.add_argument("--run", "--workspace", dest="run", required=True, metavar="RUN",
                    help="run folder <workspace>/<name> (--workspace: the older spelling)")
    ap.add_argument("--capture", help="capture folder (default: the run config's data.meta_path)")
    ap.add_argument("--ckpt", help="checkpoint (default RUN/latest.pth)")
    ap.add_argument("--mesh", help="exported face mesh (default RUN/export/mesh.obj)")
    ap.add_argument("--device", help="cpu, cuda, cuda:N or N (default: the run's device)")
    ap.add_argument("--max-views", type=int, help="evaluate only the first N validation views")
    ap.add_argument("--json", help="write the numbers to this JSON file")
    ap.add_argument("--report", metavar="DIR", help="folder of the report with pictures (default RUN/eval)")
    ap.add_argument("--no-report", action="store_true", help="write no report (the numbers only)")
    add_print_config(ap)
    return ap


def main(argv=None, prog: str = PROG) -> int:
    ap = build_parser(prog)
    a = ap.parse_args(argv)
    if a.max_views is not None and a.max_views < 1:
        ap.error(f"--max-views must be >= 1, got {a.max_views}")
    if a.device is not None and check_device_flag(a.device):
        return fail(prog, check_device_flag(a.device))
    if a.json and os.path.isdir(a.json):
        return fail(prog, f"--json '{a.json}' is a folder: give a file name")
    from ..data.config import ConfigError
    from ..evaluation.evaluate import evaluate, format_table

    try:
        if a.print_config:
            cfg_path = os.path.join(a.run, "config.yaml")
            if not os.path.isfile(cfg_path):
                raise FileNotFoundError(f"'{a.run}' is not an eyefast run folder: no config.yaml")
            return print_config(cfg_path, [])
        report = None if a.no_report else (a.report or os.path.join(a.run, "eval"))
        res = evaluate(a.run, a.capture, a.ckpt, a.device, a.mesh, a.max_views, report=report)
    except (ConfigError, ValueError, OSError) as e:
        return fail(prog, e)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    print(format_table(res))
    if res.get("report"):
        print(f"report: {res['report']} (open it in a browser)")
    if a.json:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
        except OSError as e:
            return fail(prog, e)
        print(f"wrote {a.json}")
    return 0
