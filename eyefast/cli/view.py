"""Look at a trained head in the browser: ``eyefast view --run RUN``.

Usage::

    eyefast view --run workspace/synth_demo              # then open http://localhost:8080
    eyefast view --run RUN --port 8081 --size 384
    eyefast view --run RUN --source export               # the exported meshes and textures
    eyefast view --run RUN --host 0.0.0.0                # reachable from other machines

Serves a viewer (viser) on this machine: drag to orbit the head, scroll to zoom; the panel moves the
light (at the camera like the capture's flash, or around the head: azimuth, elevation, distance,
intensity), switches between the shaded image, albedo, specular, roughness, normals and eye opacities,
and shows the eye model's parameters. Rendering is progressive: a small image while the camera moves,
the full one when it stops. Ctrl-C stops the server. From Python: ``eyefast.view(run_or_folder)``; while
training: ``eyefast train CONFIG --view``.
"""

from __future__ import annotations

from .common import add_device, fail, parser, setup_logging

PROG = "eyefast view"


def build_parser(prog: str = PROG):
    ap = parser(prog, __doc__)
    ap.add_argument("--run", "--workspace", dest="run", required=True, metavar="RUN",
                    help="run folder <workspace>/<name> (written by eyefast train)")
    ap.add_argument("--port", type=int, default=8080, help="port to serve on (default 8080)")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to serve on (default 127.0.0.1: this machine; 0.0.0.0: the network)")
    ap.add_argument("--source", choices=["model", "export"], default="model",
                    help="model: the trained volume model; export: RUN/export's meshes and textures")
    ap.add_argument("--size", type=int, default=256, help="longer side of the image at rest (default 256)")
    ap.add_argument("--preview-size", type=int, default=64, help="longer side while the camera moves (default 64)")
    ap.add_argument("--ckpt", help="checkpoint (default RUN/latest.pth)")
    ap.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    add_device(ap, "the run's")
    return ap


def main(argv=None, prog: str = PROG) -> int:
    ap = build_parser(prog)
    a = ap.parse_args(argv)
    if not 0 <= a.port < 65536:
        ap.error(f"--port must be in 0..65535, got {a.port}")
    if a.size < 16 or a.preview_size < 16:
        ap.error("--size and --preview-size must be >= 16")
    from ..data.config import ConfigError
    from ..export.files import ExportError

    setup_logging(False)
    try:
        import torch

        if a.threads is not None:
            torch.set_num_threads(a.threads)
        from ..run import Run
        from ..visual.viewer import Viewer

        run = Run.load(a.run, ckpt=a.ckpt, device=a.device)
        v = Viewer(run, port=a.port, host=a.host, source=a.source, size=a.size, preview_size=a.preview_size)
    except (ConfigError, ExportError, ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        return fail(prog, e)
    v.serve_forever()
    return 0
