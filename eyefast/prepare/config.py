"""Stage ``config``: ``OUT/config.yaml``, the full method (``configs/cora.yaml``, its comments kept when the
source checkout's ``configs/`` is there, else the same defaults) with this capture's values filled in, and
``OUT/config_quick.yaml``, the same on a short schedule for a first look (2000 steps, CPU-sized batches).

Filled in: ``name`` (the folder's name), ``data.meta_path: .`` (the folder itself), ``data.bound``, the eye
centres and the eye landmarks of the eyes stage, ``train.camera_refine: true`` (the cameras come from structure
from motion: docs/training.md, camera refinement), and ``loss.w_abdmm`` = ``loss.w_abdmm_refine`` = 0 (no
``specular_bfm/``: without them the trainer would read zeros and pull the specular intensity to zero).
Without eye landmarks (``--no-face``) the face is trained alone: ``data.ignore_eyeball: true``, CoRA's
step-1 setting (``configs/cora_wo_hybrid.yaml``).
"""

from __future__ import annotations

import os
import re

import yaml

from ..data import config as config_mod
from .common import PrepareError, load_record, log, need_record, new_record, write_json

#: the short schedule of config_quick.yaml (CoRA's schedule divided by 10, the demo's batch sizes)
QUICK = {
    "train": {"max_steps": 2000, "level_grow_iter": 100, "warmup_steps": 100, "milestones": [1000, 1500],
              "save_freq": 500, "val_freq": 500, "vis_freq": 250, "mesh_render_iter": 1500},
    "renderer": {"sample_batch_size": 65536, "max_num_ray": 8192, "chunk_size": 8192, "grid_resolution": 64},
}


def cora_yaml_path():
    p = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs", "cora.yaml")
    return p if os.path.isfile(p) else None


def _flow(v) -> str:
    if isinstance(v, float):
        return repr(round(v, 6))
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...").strip()


def edit_yaml(text: str, values: dict) -> str:
    """``text`` (a config with one ``key: value  # comment`` per line, two-space sections) with the values of
    ``values`` (``{"name": ..., "data": {...}, ...}``) put in place, comments kept. Keys missing from the text are
    an error."""
    todo = {(None, k): v for k, v in values.items() if not isinstance(v, dict)}
    todo.update({(s, k): v for s, kv in values.items() if isinstance(kv, dict) for k, v in kv.items()})
    out, section = [], None
    for line in text.splitlines():
        m = re.match(r"^(\w+):\s*(#.*)?$", line)
        if m:
            section = m.group(1)
            out.append(line)
            continue
        m = re.match(r"^(\s*)(\w+):(\s+)(.*?)(\s+#.*)?$", line)
        if m:
            indent, key = m.group(1), m.group(2)
            sec = None if indent == "" else section
            if indent == "":
                section = None
            if (sec, key) in todo:
                new = _flow(todo.pop((sec, key)))
                comment = m.group(5) or ""
                width = len(m.group(3)) + len(m.group(4))
                pad = " " * max(1, width - len(new) - 1) if comment else ""
                line = f"{indent}{key}: {new}{pad}{comment}" if comment else f"{indent}{key}: {new}"
        out.append(line)
    if todo:
        raise PrepareError(f"configs/cora.yaml lacks the keys {', '.join(f'{s}.{k}' if s else k for s, k in todo)}")
    return "\n".join(out) + "\n"


def _header(name: str, out: str, quick: bool, eyes: bool, method: str) -> str:
    lines = [
        f"# eyefast prepare: {'a short first run of ' if quick else ''}CoRA's full method (configs/cora.yaml) on the "
        "capture in this folder.",
        f"# Train:  eyefast train {os.path.join(out, 'config_quick.yaml' if quick else 'config.yaml')}",
    ]
    if quick:
        lines.append("# 2000 steps at the demo's batch sizes: a first look (minutes on a GPU, about an hour on a "
                     "laptop CPU); config.yaml has the full 20000-step schedule.")
    else:
        lines.append(f"# A first look first: eyefast train {os.path.join(out, 'config_quick.yaml')} (2000 steps).")
    lines.append(f"# Head frame from the {method}; "
                 + ("eye centres and landmarks from the eyes stage (OUT/prepare/eyes.json)."
                    if eyes else "no eye landmarks (--no-face): the face alone (data.ignore_eyeball: true)."))
    lines.append("# Cameras from structure from motion: refined while training (train.camera_refine: true).")
    lines.append("# No specular_bfm/: the specular prior is off (loss.w_abdmm = loss.w_abdmm_refine = 0).")
    lines.append("# Every key: configs/cora.yaml and docs/method.md. The light section is the phone's flashlight.")
    return "\n".join(lines) + "\n\n"


def _strip_header(text: str) -> str:
    lines = text.splitlines()
    i = 0
    while i < len(lines) and (lines[i].startswith("#") or not lines[i].strip()):
        i += 1
    return "\n".join(lines[i:]) + "\n"


def run(out: str, show: bool = True) -> dict:
    po = need_record(out, "poses", "config")
    ey = load_record(out, "eyes")
    name = os.path.basename(os.path.normpath(os.path.abspath(out))) or "capture"
    name = re.sub(r"[^\w.-]+", "_", name)
    bound = float(po.get("bound", 1.0))
    data = {"meta_path": ".", "bound": bound}
    eyes = ey is not None and "left_eye_ldm" in ey
    if eyes:
        data.update(eyeball_left_center=ey["eyeball_left_center"], eyeball_right_center=ey["eyeball_right_center"],
                    left_eye_ldm=ey["left_eye_ldm"], right_eye_ldm=ey["right_eye_ldm"], ignore_eyeball=False)
    else:
        data.update(ignore_eyeball=True)
    # cameras from structure from motion are good, not perfect: refine them while training
    values = {"name": name, "data": data, "loss": {"w_abdmm": 0.0, "w_abdmm_refine": 0.0},
              "train": {"camera_refine": True}}
    quick = {**values, "name": f"{name}_quick", **{k: {**values.get(k, {}), **v} for k, v in QUICK.items()}}
    src = cora_yaml_path()
    method = po.get("head_frame", {}).get("method", "cameras")
    method = "face landmarks" if method == "face" else "cameras (--no-face)"
    rec = new_record("config", {"poses": po["run_id"], **({"eyes": ey["run_id"]} if ey else {})})
    written = {}
    for fname, vals, is_quick in (("config.yaml", values, False), ("config_quick.yaml", quick, True)):
        if src:
            with open(src, encoding="utf-8") as f:
                body = _strip_header(edit_yaml(f.read(), vals))
        else:  # an installed wheel has no configs/: the same defaults, without their comments
            d = config_mod.defaults()
            for k, v in vals.items():
                if isinstance(v, dict):
                    d[k].update(v)
                else:
                    d[k] = v
            body = yaml.safe_dump(d, sort_keys=False, default_flow_style=None)
        text = _header(name, out, is_quick, eyes, method) + body
        path = os.path.join(out, fname)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            config_mod.load(tmp)  # validate what we write
        except (ValueError, OSError) as e:
            os.remove(tmp)
            raise PrepareError(f"the written config does not load: {e}") from None
        os.replace(tmp, path)
        written[fname] = path
    rec.update(config=written["config.yaml"], config_quick=written["config_quick.yaml"], name=name, eyes=eyes,
               source=src or "eyefast.data.config.defaults()")
    write_json(os.path.join(out, "prepare", "config.json"), rec)
    log.info("config: %s and %s", written["config.yaml"], written["config_quick.yaml"])
    return rec
