"""Train a head model on a capture: ``eyefast train CONFIG``.

Usage::

    eyefast train data/demo/config.yaml
    eyefast train CONFIG --device cuda:0 --workspace runs --max-steps 500
    eyefast train CONFIG --resume                       # continue <workspace>/<name>/latest.pth
    eyefast train CONFIG --resume runs/demo/checkpoints/step_005000.pth
    eyefast train CONFIG --overwrite                    # replace the run in <workspace>/<name>
    eyefast train CONFIG --set train.max_steps=100 --set renderer.max_num_ray=2048
    eyefast train CONFIG --print-config                 # the config with its defaults, then exit
    eyefast train CONFIG --view                         # watch it train at http://localhost:8080

The run goes to <workspace>/<name>/ (the config's ``workspace`` and ``name``): config.yaml, latest.pth,
checkpoints/, scalars.csv, vis/ previews, val.json. Training into a folder that holds a run is refused
unless --resume or --overwrite is given, and so is a second training while one runs in that folder.
Ctrl-C finishes the step, saves latest.pth and exits with status 130 (--resume continues it).

CoRA's spelling works too (``python trainer.py`` becomes ``python -m eyefast.train``)::

    python -m eyefast.train --config_path CONFIG --device 0 [--ckpt_path CKPT] [--chunk_size N]
    python -m eyefast.train --config_path CONFIG --mode export_eyeball --ckpt_path CKPT --save_visual_dir OUT
"""

from __future__ import annotations

import json
import os
import sys

from .common import add_print_config, add_set, check_device_flag, fail, parser, print_config, setup_logging

PROG = "eyefast train"


def build_parser(prog: str = PROG):
    ap = parser(prog, __doc__)
    ap.add_argument("config", nargs="?", help="config.yaml (CoRA keys; see configs/ and docs/method.md)")
    ap.add_argument("--config-path", "--config_path", dest="config_path", help="the same as CONFIG (CoRA's spelling)")
    ap.add_argument("--device", help="cpu, cuda, cuda:N, N or auto (default: the config's device)")
    ap.add_argument("--workspace", help="output root; the run goes to WORKSPACE/<name> (default: the config's)")
    ap.add_argument("--max-steps", "--max_steps", type=int, dest="max_steps", help="override train.max_steps")
    ap.add_argument("--resume", nargs="?", const="", metavar="CKPT|RUN",
                    help="continue a run: its latest.pth (no value: the run this config names), a run folder "
                         "or a checkpoint file")
    ap.add_argument("--ckpt-path", "--ckpt_path", dest="ckpt_path",
                    help="CoRA's spelling: the checkpoint to resume from (train) or to export (export_eyeball)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the run already in <workspace>/<name> (its checkpoints, logs and exports)")
    ap.add_argument("--mode", choices=["train", "export_eyeball"], default="train",
                    help="CoRA's export_eyeball: export the checkpoint instead of training")
    ap.add_argument("--save-visual-dir", "--save_visual_dir", dest="save_visual_dir",
                    help="export_eyeball: output folder")
    ap.add_argument("--chunk-size", "--chunk_size", dest="chunk_size", type=int, help="override renderer.chunk_size")
    add_set(ap)
    ap.add_argument("--threads", type=int, help="CPU threads (torch and eyefast kernels; default: all cores). "
                    "On a machine busy with other work, fewer threads than cores avoids stalls")
    ap.add_argument("--quiet", action="store_true", help="no progress bar and no messages")
    ap.add_argument("--view", nargs="?", const=8080, type=int, metavar="PORT",
                    help="watch the training live in the browser (eyefast view's viewer, at http://localhost:PORT, "
                         "default 8080); it stays up after training until Ctrl-C")
    ap.add_argument("--view-every", type=int, default=50, metavar="N",
                    help="--view: steps between refreshes of the image (default 50; each costs a render)")
    add_print_config(ap)
    return ap


def _resume_path(arg: str, run_dir: str) -> str:
    """``--resume`` -> a checkpoint file: '' = RUN/latest.pth; a folder = FOLDER/latest.pth."""
    path = arg or run_dir
    if not arg or os.path.isdir(path):
        ck = os.path.join(path, "latest.pth")
        if not os.path.isfile(ck):
            raise FileNotFoundError(f"--resume: run folder '{path}' has no latest.pth to continue from "
                                    "(train without --resume to start it)")
        return ck
    return path


def main(argv=None, prog: str = PROG) -> int:
    from ..core import _malloc

    _malloc.tune()  # keep freed activations for reuse: fewer page faults per step (eyefast/core/_malloc.py)
    ap = build_parser(prog)
    a = ap.parse_args(argv)
    path = a.config or a.config_path
    if path is None:
        ap.error("a config file is needed (CONFIG or --config-path)")
    if a.config and a.config_path and os.path.abspath(a.config) != os.path.abspath(a.config_path):
        ap.error("give the config once (CONFIG or --config-path)")
    if a.resume is not None and a.ckpt_path and a.resume and os.path.abspath(a.resume) != os.path.abspath(a.ckpt_path):
        ap.error("--resume and --ckpt-path name different checkpoints; give one")
    if a.resume is not None and a.overwrite:
        ap.error("--resume continues the run and --overwrite replaces it; give one")
    if a.threads is not None and a.threads < 1:
        ap.error(f"--threads must be >= 1, got {a.threads}")
    overrides = list(a.set)
    if a.workspace:
        overrides.append(f"workspace={json.dumps(a.workspace)}")  # a JSON string is a YAML string
    if a.max_steps is not None:
        overrides.append(f"train.max_steps={a.max_steps}")
    if a.chunk_size is not None:
        overrides.append(f"renderer.chunk_size={a.chunk_size}")
    if a.device is not None:
        err = check_device_flag(a.device)
        if err:
            return fail(prog, err)
        overrides.append(f"device={json.dumps(a.device)}")
    if a.mode == "export_eyeball":
        ckpt = a.ckpt_path or a.resume
        if not ckpt or not a.save_visual_dir:
            ap.error("--mode export_eyeball needs --ckpt-path and --save-visual-dir")
        from .export import main as export_main

        return export_main([path, "--ckpt", ckpt, "--out", a.save_visual_dir,
                            *sum((["--set", s] for s in overrides), [])])

    from ..data import config as config_mod

    state: dict = {}  # what _train got to: the run folder, the trainer
    try:
        if a.print_config:
            return print_config(path, overrides)
        setup_logging(a.quiet)
        import torch

        if a.threads is not None:
            torch.set_num_threads(a.threads)
        return _train(path, overrides, a, state)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the training loop
        tr = state.get("trainer")
        latest = os.path.join(tr.run_dir, "latest.pth") if tr is not None else None
        saved = (f"; the last saved checkpoint is {latest}" if latest and os.path.isfile(latest) else "")
        print(f"{prog}: interrupted{saved}", file=sys.stderr)
        return 130
    except (config_mod.ConfigError, ValueError, OSError, FloatingPointError, RuntimeError) as e:
        code = fail(prog, e)
        if isinstance(e, FloatingPointError):
            tr = state.get("trainer")
            latest = os.path.join(tr.run_dir, "latest.pth") if tr is not None else None
            if latest and os.path.isfile(latest):
                hint = (f"the last good checkpoint is {latest}: continue it with --resume, e.g. with a lower "
                        "train.lr (--set train.lr=...)")
            else:
                hint = ("no checkpoint was saved before it; check the config's values (light, data, loss "
                        "weights) or lower train.lr, and train again")
            print(f"{prog}: {hint}", file=sys.stderr)
        return code


def _train(path: str, overrides, a, state: dict) -> int:
    import logging

    from ..core.device import parse_device
    from ..data import config as config_mod
    from ..training import distributed
    from ..training.trainer import Trainer

    log = logging.getLogger("eyefast.training")
    cfg = config_mod.load(path, overrides)
    trainer = None
    try:
        device = distributed.init_distributed(parse_device(cfg.device))
        trainer = Trainer(cfg, device=device, quiet=a.quiet)
        state["trainer"] = trainer
        resume = a.ckpt_path if a.ckpt_path else (None if a.resume is None else _resume_path(a.resume, trainer.run_dir))
        if resume:
            trainer.load(resume)
            if not a.quiet:
                log.info(f"resumed from {resume} at step {trainer.step}")
        if not a.quiet:
            log.info(f"{trainer.train_cap} -> {trainer.run_dir} on {trainer.device} ({cfg.ops_backend} ops)")
        viewer = None
        if getattr(a, "view", None) is not None and trainer.rank == 0:
            from ..visual.viewer import Viewer

            viewer = Viewer(trainer.as_run(), port=a.view, training=True, every=a.view_every)
        m = trainer.fit(overwrite=a.overwrite, callback=None if viewer is None else viewer.hook)
        if viewer is not None:
            viewer.run.step = trainer.step
            viewer.start()  # from now on its own thread renders
            if not a.quiet:
                log.info(f"training done: the viewer stays at {viewer.url} (Ctrl-C stops it)")
            viewer.serve_forever()
    finally:
        d = distributed.dist()
        if d is not None:
            try:
                d.barrier()  # every rank done (rank 0 may still be writing) before the group goes
            finally:
                d.destroy_process_group()
    if trainer.interrupted:  # Ctrl-C: latest.pth is saved, but the model is unfinished
        if trainer.rank == 0:
            print(f"interrupted at step {trainer.step} of {cfg.train.max_steps}: saved "
                  f"{os.path.join(trainer.run_dir, 'latest.pth')}; continue with --resume", file=sys.stderr)
        return 130
    if not a.quiet and trainer.rank == 0:
        keys = [k for k in ("val/psnr", "val/ssim", "val/psnr_eye") if k in m]
        print(f"done: step {trainer.step}; " + ", ".join(f"{k} {m[k]:.3f}" for k in keys) +
              f"; checkpoints in {trainer.run_dir}")
    return 0
