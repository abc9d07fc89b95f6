"""Export a trained run as relightable assets: ``eyefast export --run RUN``.

Usage::

    eyefast export --run workspace/synth_demo [--preview]     # RUN/config.yaml + RUN/latest.pth -> RUN/export
    eyefast export CONFIG --ckpt CKPT --out DIR [--uv-size 2048] [--mc-res 256] [--eye-uv-size N]
                   [--chunk-size N] [--device cpu|cuda|cuda:N|N|auto] [--preview] [--set section.key=value ...]
    python -m eyefast.train --config_path CONFIG --mode export_eyeball --ckpt_path CKPT --save_visual_dir DIR

Writes mesh.obj, mesh_uv.obj (+ .mtl), diffuse/specular/roughness/normal.png, coord.npy, left/ and
right/ (the eyes), head.glb, export.json and (--preview) preview.png; see eyefast.export.
"""

from __future__ import annotations

import os
import sys
import time

from .common import add_print_config, add_set, check_device_flag, check_out_folder, fail, parser, print_config

PROG = "eyefast export"


def build_parser(prog: str = PROG):
    from ..export.files import DEFAULT_MC_RES, DEFAULT_UV_SIZE
    from ..geometry.mesh import DEFAULT_CHUNK

    ap = parser(prog, __doc__)
    ap.add_argument("config", nargs="?", help="config.yaml of the run (CoRA keys)")
    ap.add_argument("--run", help="run folder <workspace>/<name>: its config.yaml and latest.pth (default --out RUN/export)")
    ap.add_argument("--ckpt", help="checkpoint (with CONFIG: required; with --run: default RUN/latest.pth)")
    ap.add_argument("--out", help="output folder (default: <workspace>/<name>/export)")
    ap.add_argument("--uv-size", type=int, default=DEFAULT_UV_SIZE, help=f"face texture size (default {DEFAULT_UV_SIZE})")
    ap.add_argument("--eye-uv-size", type=int, default=None, help="eye texture size (default uv-size / 2)")
    ap.add_argument("--mc-res", type=int, default=DEFAULT_MC_RES,
                    help=f"marching-cubes grid resolution (default {DEFAULT_MC_RES})")
    ap.add_argument("--chunk-size", "--chunk_size", dest="chunk_size", type=int, default=DEFAULT_CHUNK,
                    help=f"points per network query (default {DEFAULT_CHUNK})")
    ap.add_argument("--device", help="cpu, cuda, cuda:N, N or auto (default: the config's device)")
    ap.add_argument("--preview", action="store_true", help="also write preview.png (relit renders)")
    ap.add_argument("--no-glb", action="store_true", help="skip head.glb")
    add_set(ap)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    add_print_config(ap)
    return ap


def main(argv=None, prog: str = PROG) -> int:
    ap = build_parser(prog)
    a = ap.parse_args(argv)
    from ..data import config as config_mod

    for flag, v, lo in (("--uv-size", a.uv_size, 16), ("--eye-uv-size", a.eye_uv_size, 8), ("--mc-res", a.mc_res, 16),
                        ("--chunk-size", a.chunk_size, 1)):
        if v is not None and v < lo:
            return fail(prog, f"{flag} must be >= {lo}, got {v}")
    for err in (check_device_flag(a.device) if a.device is not None else None,
                check_out_folder(a.out, "--out") if a.out else None):
        if err:
            return fail(prog, err)
    out = None
    try:
        overrides = list(a.set)
        if a.run:
            if a.config:
                ap.error("give either CONFIG or --run RUN, not both")
            run = os.path.abspath(a.run)
            cfg_path = os.path.join(run, "config.yaml")
            if not os.path.isfile(cfg_path):
                raise FileNotFoundError(f"--run '{a.run}' is not an eyefast run folder: no config.yaml "
                                        "(expected <workspace>/<name>)")
            ckpt = a.ckpt or os.path.join(run, "latest.pth")
            out = a.out or os.path.join(run, "export")
        else:
            if not a.config:
                ap.error("a config file (CONFIG) or --run RUN is needed")
            if not os.path.isfile(a.config):
                raise FileNotFoundError(f"config file '{a.config}' does not exist")
            if a.print_config:
                return print_config(a.config, overrides)
            if not a.ckpt:
                ap.error("--ckpt CKPT is needed with CONFIG (or use --run RUN)")
            run, cfg_path, ckpt, out = None, a.config, a.ckpt, a.out
        if a.print_config:
            return print_config(cfg_path, overrides)
        from ..export import export_run
        from ..run import Run

        t0 = time.perf_counter()
        r = Run.load(run, config=cfg_path, ckpt=ckpt, device=a.device, overrides=overrides)
        if out is None:
            out = os.path.join(r.cfg.workspace, r.cfg.name, "export")
        err = check_out_folder(out, "the output folder")
        if err:
            raise ValueError(err)
        if not a.quiet:
            print(f"[eyefast.export] {ckpt} (step {r.step}) on {r.device} -> {out}", file=sys.stderr, flush=True)
        paths = export_run(r, out, uv_size=a.uv_size, mc_res=a.mc_res, preview=a.preview, chunk_size=a.chunk_size,
                           eye_uv_size=a.eye_uv_size, quiet=a.quiet, glb=not a.no_glb)
    except (config_mod.ConfigError, ValueError, OSError) as e:
        return fail(prog, e)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted" + (f"; the export in {out} is incomplete" if out else ""), file=sys.stderr)
        return 130
    st = paths["stats"]
    print(f"exported step {r.step} in {time.perf_counter() - t0:.1f} s to {os.path.abspath(out)}:")
    print(f"  mesh.obj, mesh_uv.obj (+ .mtl): {st['faces']} faces, {st['vertices']} vertices "
          f"(marching cubes {st['faces_marching_cubes']}, decimated {st['faces_decimated']}, "
          f"visible {st['faces_visible']})")
    print(f"  diffuse.png, specular.png, roughness.png, normal.png ({a.uv_size}^2), coord.npy")
    print(f"  left/, right/: eye spheres ({st['left_eye_faces']} and {st['right_eye_faces']} faces) with textures")
    extra = [k for k in ("glb", "preview") if k in paths]
    if extra:
        print("  " + ", ".join(os.path.basename(paths[k]) for k in extra) + ", export.json")
    return 0
