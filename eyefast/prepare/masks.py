"""Stage ``masks``: the capture's masks (docs/method.md section 1: single-channel 8-bit PNGs, 0 or 255, named
like the frames) and its images with the background black.

* ``mask/``: the foreground of the frames stage (person segmentation, or ``--masks``), undistorted, and cut
  to the pixels whose ray meets the scene cube ``[-bound, bound]^3`` (what lies outside, shoulders for
  instance, cannot be reconstructed, so it must not count as foreground).
* ``leye_mask/``, ``reye_mask/`` (with a face): the visible eyeball of the subject's left / right eye,
  inside its eyelid contour of the face landmarks, within the foreground.
* ``hair_mask/`` (with a face): see :func:`hair_mask`.
* ``specular_bfm/`` is not made (it needs a morphable-model fit); the config stage turns its prior off.

Frames in which the face landmarks were not found in the undistorted image use the projection of the
triangulated 3D landmarks instead. Writes the record ``OUT/prepare/masks.json``.
"""

from __future__ import annotations

import os

import numpy as np

from .common import (load_cameras, log, need_record, new_record, progress, read_image, remove_dirs, staged_dirs,
                     write_json, write_png)
from .common import project as project_points

#: hair: foreground pixels this many standard deviations (Mahalanobis, squared) from the skin colour
HAIR_D2 = 16.0
#: ... and no hair at all when the hairline's mean colour is this close to the skin's (a bald or shaved head)
BALD_D2 = 1.0


def cube_mask(K, c2w, H: int, W: int, bound: float) -> np.ndarray:
    """Bool ``[H, W]``: pixels whose ray (through the pixel centre) meets the cube ``[-bound, bound]^3``."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) @ c2w[:3, :3].T
    o = c2w[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t0 = (-bound - o) * inv
        t1 = (bound - o) * inv
    tmin = np.nanmax(np.minimum(t0, t1), -1)
    tmax = np.nanmin(np.maximum(t0, t1), -1)
    return (tmax >= np.maximum(tmin, 0.0)) & np.isfinite(tmax)


def hair_mask(img: np.ndarray, fg: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Hair, from the face landmarks and the colours (a heuristic; the README says where it fails).

    Two colour models (Gaussians): skin, from the pixels inside the face outline without the eyes, eyebrows
    and lips; hair, from small patches just above the top of the face outline (the hairline). A pixel is hair
    when it is foreground, outside the face outline, above the chin (along the face's own up direction, so
    tilted heads work), inside an ellipse around the face (1.5 face widths wide, reaching 0.6 face heights
    above the face: no shoulders), and nearer the hair colour than the skin colour (squared Mahalanobis
    distances; within :data:`HAIR_D2` of the hair colour). When the hairline's mean colour is within
    :data:`BALD_D2` of the skin's (a bald or shaved head), only the eyebrows are hair. The eyebrows are always hair. Specks are removed (an opening)."""
    from scipy import ndimage

    from .face import FACE_OVAL, LEFT_BROW, LEFT_EYE, LIPS, RIGHT_BROW, RIGHT_EYE, fill_polygon

    H, W = fg.shape
    oval = fill_polygon((H, W), lm[FACE_OVAL])
    brows = (fill_polygon((H, W), lm[LEFT_BROW]) | fill_polygon((H, W), lm[RIGHT_BROW])) & fg
    parts = brows | fill_polygon((H, W), lm[LEFT_EYE]) | fill_polygon((H, W), lm[RIGHT_EYE]) | fill_polygon((H, W), lm[LIPS])
    face_h = float(np.linalg.norm(lm[10] - lm[152]))
    grow = max(1, int(round(0.03 * face_h)))
    parts = ndimage.binary_dilation(parts, iterations=grow)
    col = img[..., :3].astype(np.float64) / 255.0
    up = (lm[10] - lm[152]) / max(face_h, 1e-9)
    right = np.array([-up[1], up[0]])
    v, u = np.mgrid[0:H, 0:W]
    pix = np.stack([u + 0.5, v + 0.5], -1)
    # skin
    skin = oval & fg & ~parts
    if skin.sum() < 50:
        return brows
    # hair seeds: patches above the top of the face outline
    outside = fg & ~ndimage.binary_dilation(oval, iterations=grow)
    seed = np.zeros((H, W), bool)
    for k in (10, 338, 109, 297, 67):
        c = lm[k] + up * 0.12 * face_h
        seed |= ((pix - c) ** 2).sum(-1) < (0.06 * face_h) ** 2
    seed &= outside
    if seed.sum() < 30:
        return brows

    def gauss(m):
        x = col[m]
        return x.mean(0), np.linalg.inv(np.cov(x.T) + np.eye(3) * 2e-4)

    def d2(model, x):
        mu, P = model
        dx = x - mu
        return np.einsum("...i,ij,...j->...", dx, P, dx)

    ms, mh = gauss(skin), gauss(seed)
    if d2(ms, mh[0]) < BALD_D2:  # the hairline looks like skin: no hair there
        return brows
    # the head's ellipse in the face's own axes
    c0 = lm[FACE_OVAL].mean(0)
    rel = lm[FACE_OVAL] - c0
    half_w = np.abs(rel @ right).max()
    up_h, down_h = (rel @ up).max(), -(rel @ up).min()
    q = pix - c0
    x, y = q @ right, q @ up
    b = np.where(y > 0, up_h + 0.6 * face_h, down_h)
    head = (x / (1.5 * half_w)) ** 2 + (y / b) ** 2 <= 1.0
    above = ((pix - lm[152]) @ up) > 0
    dh, ds = d2(mh, col), d2(ms, col)
    hair = outside & head & above & (dh < ds) & (dh < HAIR_D2)
    hair = ndimage.binary_opening(hair, iterations=max(1, grow // 2))
    return hair | brows


def run(out: str, show: bool = True) -> dict:
    fr = need_record(out, "frames", "masks")
    po = need_record(out, "poses", "masks")
    meta, names, K, c2w = load_cameras(out)
    H, W = meta["h"], meta["w"]
    bound = float(po.get("bound", 1.0))
    und = os.path.join(out, "prepare", "undistorted")
    und_m = os.path.join(out, "prepare", "undistorted_mask")
    face = bool(fr.get("face"))
    lm2d = lm3d = None
    if face and os.path.isfile(os.path.join(out, "prepare", "landmarks.npz")):
        npz = np.load(os.path.join(out, "prepare", "landmarks.npz"))
        by_name = dict(zip(npz["names"].tolist(), npz["uv"]))
        lm2d = [by_name.get(n) for n in names]
        lm3d = npz["xyz"]
    face = lm2d is not None
    rec = new_record("masks", {"frames": fr["run_id"], "poses": po["run_id"]})
    kinds = ["image", "mask"] + (["hair_mask", "leye_mask", "reye_mask"] if face else [])
    stats = {"foreground": {}, "left_eye_pixels": {}, "right_eye_pixels": {}, "hair": {}, "projected_landmarks": []}
    from .face import eye_masks

    w2c = np.linalg.inv(c2w)
    with staged_dirs(out, kinds) as tmp:
        for i, n in enumerate(progress(names, "masks", show)):
            img = read_image(os.path.join(und, n + ".png"))
            mp = os.path.join(und_m, n + ".png")
            fg = read_image(mp) >= 128 if os.path.isfile(mp) else np.ones((H, W), bool)
            fg &= cube_mask(K, c2w[i], H, W, bound)
            write_png(os.path.join(tmp["mask"], n + ".png"), fg.astype(np.uint8) * 255)
            write_png(os.path.join(tmp["image"], n + ".png"), img * fg[..., None].astype(np.uint8))
            stats["foreground"][n] = round(float(fg.mean()), 4)
            if not face:
                continue
            lm = lm2d[i]
            if lm is None or not np.isfinite(lm).all():
                lm = project_points(K, w2c[i], lm3d)
                stats["projected_landmarks"].append(n)
            if not np.isfinite(lm).all():  # not every landmark triangulated: no face masks in this frame
                left = right = hair = np.zeros((H, W), bool)
            else:
                left, right = eye_masks((H, W), lm)
                left, right = left & fg, right & fg
                hair = hair_mask(img, fg, lm)
            for kind, m in (("leye_mask", left), ("reye_mask", right), ("hair_mask", hair)):
                write_png(os.path.join(tmp[kind], n + ".png"), m.astype(np.uint8) * 255)
            stats["left_eye_pixels"][n] = int(left.sum())
            stats["right_eye_pixels"][n] = int(right.sum())
            stats["hair"][n] = round(float(hair.sum() / max(fg.sum(), 1)), 4)
    if not face:  # no face: no eye or hair masks (stale ones from an earlier run would contradict the config)
        remove_dirs(out, ["hair_mask", "leye_mask", "reye_mask"])
    rec.update(frames=len(names), face=face, bound=bound, kinds=kinds[1:], **stats,
               specular_bfm="not made: the config stage sets loss.w_abdmm and loss.w_abdmm_refine to 0 (without "
                            "specular_bfm/ the trainer reads zeros and would pull the specular intensity to zero)")
    write_json(os.path.join(out, "prepare", "masks.json"), rec)
    log.info("masks: %d frames (%s)", len(names), ", ".join(kinds[1:]))
    return rec
