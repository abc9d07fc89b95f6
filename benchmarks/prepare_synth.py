"""``eyefast prepare`` measured: the cameras it finds for the synthetic textured head against the truth, and
the eye masks it draws on a real photo.

    python -m benchmarks.prepare_synth [--views 30] [--resolution 256] [--work /tmp/prepare_synth]
                                       [--json benchmarks/results/prepare_synth.json]
                                       [--figure docs/images/prepare_astronaut.png]

The synthetic capture (``eyefast synth --texture fine --renderer mesh``) goes through all the stages with
``--no-face`` and its own masks. Reported: the registered fraction, the reprojection error, the camera
rotation and centre errors after a similarity fit (centre errors relative to the camera distance), the
focal length against the truth, and the time of each stage. ``--figure`` draws the eye masks (left red,
right blue), the hair mask (yellow) and the iris landmarks found on scikit-image's astronaut photo.
Needs the extra eyefast[prepare] (and scikit-image for the figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time

import numpy as np


def similarity_errors(out: str, src: str):
    """The cameras ``prepare`` found in ``out`` against the synthetic capture ``src``'s true ones, after the
    similarity that best maps the found camera centres onto the true ones: ``(ids, rotation error in
    degrees, centre error over the distance to the look-at target, the similarity, transforms.json)``."""
    from eyefast.data.capture import nerf_to_cora
    from eyefast.prepare.frame import umeyama

    with open(os.path.join(out, "transforms.json")) as fh:
        meta = json.load(fh)
    with open(os.path.join(src, "gt", "scene.json")) as fh:
        gt = np.array(json.load(fh)["c2w_converted"])
    ids = [int(os.path.basename(f["file_path"])[:5]) for f in meta["frames"]]
    c2w = nerf_to_cora(np.array([f["transform_matrix"] for f in meta["frames"]]))
    G = gt[ids]
    T = umeyama(c2w[:, :3, 3], G[:, :3, 3])
    A = T.cameras(c2w)
    dist = np.linalg.norm(G[:, :3, 3] - np.array([0.0, 0.0, 0.1]), axis=-1)  # the sweep's look-at target
    centre = np.linalg.norm(A[:, :3, 3] - G[:, :3, 3], axis=-1) / dist
    rot = np.degrees(np.arccos(np.clip((np.einsum("fij,fij->f", A[:, :3, :3], G[:, :3, :3]) - 1) / 2, -1, 1)))
    return ids, rot, centre, T, meta


def cameras(views: int, resolution: int, work: str) -> dict:
    from eyefast.data import synth
    from eyefast.prepare import prepare

    shutil.rmtree(work, ignore_errors=True)
    src, out = os.path.join(work, "synth"), os.path.join(work, "cap")
    t0 = time.time()
    synth.generate(src, preset="tiny", views=views, resolution=resolution, texture="fine", renderer="mesh")
    t_synth = time.time() - t0
    rep = prepare(os.path.join(src, "image"), out, no_face=True, masks=os.path.join(src, "mask"), progress=False)
    _, rot, centre, T, meta = similarity_errors(out, src)
    return {
        "views": views, "resolution": resolution, "synth_seconds": round(t_synth, 1),
        "registered_fraction": rep["poses"]["registered_fraction"],
        "reprojection_error_px": round(rep["poses"]["reprojection_error_px"], 3),
        "rotation_error_deg": {"median": round(float(np.median(rot)), 3), "max": round(float(rot.max()), 3)},
        "centre_error_of_distance": {"median": round(float(np.median(centre)), 5), "max": round(float(centre.max()), 5)},
        "focal_error": round(meta["fl_x"] / (2.2 * resolution) - 1.0, 4),
        "head_frame_scale_vs_truth": round(T.s, 3),
        "stage_seconds": {k: v["seconds"] for k, v in rep["stages"].items()},
    }


def figure(path: str) -> dict:
    from PIL import Image, ImageDraw
    from skimage import data

    from eyefast.prepare.face import LEFT_LDM, RIGHT_LDM, FaceLandmarks, PersonSegmentation, eye_masks
    from eyefast.prepare.masks import hair_mask

    img = data.astronaut()
    with FaceLandmarks() as detect, PersonSegmentation() as seg:
        lm = detect(img)
        fg = seg(img) >= 0.5
    left, right = eye_masks(img.shape[:2], lm)
    hair = hair_mask(img, fg, lm)
    o = np.where(fg[..., None], img.astype(np.float32), img * 0.35)
    for m, c in ((hair, (250, 210, 40)), (left, (235, 60, 60)), (right, (60, 120, 255))):
        o = np.where(m[..., None], 0.45 * o + 0.55 * np.array(c, np.float32), o)
    full = Image.fromarray(o.clip(0, 255).astype(np.uint8))
    # the eyes, 4x: masks and the 4 landmarks per eye
    x0, x1 = int(lm[RIGHT_LDM, 0].min() - 30), int(lm[LEFT_LDM, 0].max() + 30)
    yc = int(lm[RIGHT_LDM + LEFT_LDM, 1].mean())
    h = (x1 - x0) // 3
    s = 4
    crop = full.crop((x0, yc - h // 2, x1, yc + h // 2)).resize(((x1 - x0) * s, h * s), Image.LANCZOS)
    d = ImageDraw.Draw(crop)
    for ids in (LEFT_LDM, RIGHT_LDM):
        for x, y in lm[ids]:
            cx, cy = (x - x0) * s, (y - (yc - h // 2)) * s
            d.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=(255, 255, 255), outline=(0, 0, 0))
    full = full.resize((256, 256), Image.LANCZOS)
    crop = crop.resize((int(crop.size[0] * 256 / crop.size[1] * 0.5), 128), Image.LANCZOS)
    sheet = Image.new("RGB", (256 + crop.size[0], 256), (0, 0, 0))
    sheet.paste(full, (0, 0))
    sheet.paste(crop, (256, 64))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return {"figure": path, "left_eye_pixels": int(left.sum()), "right_eye_pixels": int(right.sum()),
            "hair_pixels": int(hair.sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", type=int, default=30)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--work", default="/tmp/prepare_synth")
    ap.add_argument("--json", default=None)
    ap.add_argument("--figure", default=None)
    a = ap.parse_args(argv)
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "cameras": cameras(a.views, a.resolution, a.work)}
    if a.figure:
        res["photo"] = figure(a.figure)
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
