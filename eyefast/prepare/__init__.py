"""From a phone video (or a folder of photos) to a capture that trains: ``eyefast prepare INPUT OUT``.

Stages, each reading what the earlier ones wrote in ``OUT`` (their records ``OUT/prepare/<stage>.json``):

1. ``frames`` (:mod:`.frames`): the sharpest frame of every ``--every``, upright, resized; frames without a
   face or with closed eyes dropped; a foreground mask per frame.
2. ``poses`` (:mod:`.poses`, :mod:`.frame`): structure from motion, undistortion, the head frame;
   ``transforms.json`` and ``image/``.
3. ``masks`` (:mod:`.masks`): ``mask/``, ``hair_mask/``, ``leye_mask/``, ``reye_mask/``; ``image/`` with a
   black background.
4. ``eyes`` (:mod:`.eyes`): 3D eye landmarks and initial eye centres.
5. ``config`` (:mod:`.config`): ``config.yaml`` (and ``config_quick.yaml``) ready for ``eyefast train``.

A stage whose record exists and was made from the current records of the stages before it is skipped
(``force`` reruns it). Every stage writes to temporary names and renames at the end, so a failed stage leaves
``OUT`` as it was. After each run, ``OUT/prepare/report.json`` and ``report.png`` (:mod:`.report`) are
written. The packages needed (pycolmap, mediapipe 0.10.14, imageio-ffmpeg) are the optional extra
``eyefast[prepare]``. Nothing is downloaded: mediapipe's wheel ships its models.
"""

from __future__ import annotations

import os
import time

from .common import PrepareError, load_record, log, record_path, write_json

__all__ = ["prepare", "PrepareError", "STAGES"]

STAGES = ("frames", "poses", "masks", "eyes", "config")
#: the stages each stage is made from
UPSTREAM = {"frames": (), "poses": ("frames",), "masks": ("frames", "poses"), "eyes": ("poses",),
            "config": ("poses", "eyes")}


def _current(out: str, stage: str) -> bool:
    rec = load_record(out, stage)
    if rec is None:
        return False
    for u in UPSTREAM[stage]:
        up = load_record(out, u)
        if up is not None and rec.get("inputs", {}).get(u) != up.get("run_id"):
            return False
    return True


def prepare(inp, out, stages=None, every=None, max_frames: int = 300, resolution: int = 960, no_face: bool = False,
            force: bool = False, masks=None, progress: bool = True, threads: int = -1) -> dict:
    """Runs the stages ``stages`` (default: all, in order) from ``inp`` (a video file or a folder of images)
    into the capture folder ``out``; returns the report (``OUT/prepare/report.json``) with ``ran`` and
    ``skipped`` stage lists. Raises :class:`PrepareError` on bad input or a failed stage."""
    stages = list(STAGES if stages is None else stages)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise PrepareError(f"unknown stage(s) {', '.join(bad)}; stages: {', '.join(STAGES)}")
    stages = [s for s in STAGES if s in stages]
    out = os.path.abspath(os.fspath(out))
    os.makedirs(os.path.join(out, "prepare"), exist_ok=True)
    ran, skipped = [], []
    for stage in stages:
        if not force and _current(out, stage) and not (stage == "frames" and _input_changed(out, inp)):
            log.info("%s: done already (--force reruns it)", stage)
            skipped.append(stage)
            continue
        t0 = time.time()
        if stage == "frames":
            if inp is None:
                raise PrepareError("the frames stage needs INPUT (a video file or a folder of images)")
            from . import frames

            frames.run(inp, out, every, max_frames, resolution, no_face, masks, progress)
        elif stage == "poses":
            from . import poses

            poses.run(out, progress, threads)
        elif stage == "masks":
            from . import masks as masks_mod

            masks_mod.run(out, progress)
        elif stage == "eyes":
            from . import eyes

            eyes.run(out, progress)
        else:
            from . import config

            config.run(out, progress)
        rec = load_record(out, stage)
        rec["seconds"] = round(time.time() - t0, 2)
        write_json(record_path(out, stage), rec)
        ran.append(stage)
    from . import report

    rep = report.write(out)
    rep["ran"], rep["skipped"] = ran, skipped
    return rep


def _input_changed(out: str, inp) -> bool:
    """The frames stage's record was made from another input."""
    if inp is None:
        return False
    rec = load_record(out, "frames")
    return rec is not None and rec.get("source") != os.path.abspath(os.fspath(inp))
