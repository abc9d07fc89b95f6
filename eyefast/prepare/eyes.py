"""Stage ``eyes`` (own-data step 1, automatic): 3D eye landmarks and initial eye centres.

Four landmarks per eye lie on the visible eyeball: mediapipe's iris centre and the iris boundary at its two
sides and at its bottom (:data:`eyefast.prepare.face.LEFT_LDM`). Each is triangulated over all frames with
outlier rejection (:func:`eyefast.prepare.triangulate.triangulate_points`: RANSAC over the views, a
reprojection threshold of 0.8% of the image's long side); the views in which all four landmarks of an eye
are inliers then give the final points through :func:`eyefast.data.tools.triangulate` (the least-squares
point nearest to the rays, the ``eyefast tools triangulate`` command's function). Each eye's centre starts
one default eye radius (the middle of ``data.eyeball_min_size`` and ``eyeball_max_size``) behind its iris
centre along the face's forward axis (+z in the head frame).

Writes the record ``OUT/prepare/eyes.json`` (``left_eye_ldm``, ``right_eye_ldm``, ``eyeball_left_center``,
``eyeball_right_center`` in units of the bound, views and residuals).
"""

from __future__ import annotations

import os

import numpy as np

from ..data import config as config_mod
from ..data.tools import ToolError, triangulate
from .common import PrepareError, load_cameras, log, need_record, new_record, write_json
from .poses import LANDMARK_THRESHOLD
from .triangulate import triangulate_points


def default_eye_radius() -> float:
    d = config_mod.defaults()["data"]
    return 0.5 * (d["eyeball_min_size"] + d["eyeball_max_size"])


def run(out: str, show: bool = True) -> dict:
    from .face import LEFT_LDM, RIGHT_LDM

    po = need_record(out, "poses", "eyes")
    rec = new_record("eyes", {"poses": po["run_id"]})
    path = os.path.join(out, "prepare", "landmarks.npz")
    if not os.path.isfile(path):
        rec.update(skipped="no face landmarks (--no-face, or no face found): the config trains the face alone "
                           "(data.ignore_eyeball: true)")
        write_json(os.path.join(out, "prepare", "eyes.json"), rec)
        log.info("eyes: skipped (no face landmarks)")
        return rec
    meta, names, K, c2w = load_cameras(out)
    npz = np.load(path)
    by_name = dict(zip(npz["names"].tolist(), npz["uv"]))
    uv = np.stack([by_name.get(n, np.full((478, 2), np.nan)) for n in names])  # [F, 478, 2]
    thr = max(2.0, LANDMARK_THRESHOLD * max(meta["w"], meta["h"]))
    bound = float(po.get("bound", 1.0))
    result, info = {}, {}
    inlier_views = {}
    for eye, ids in (("left_eye", LEFT_LDM), ("right_eye", RIGHT_LDM)):
        pts, inl, rms = triangulate_points(K, c2w, uv[:, ids], thr)
        if not np.isfinite(pts).all():
            raise PrepareError(f"the {eye.replace('_', ' ')}'s landmarks could not be triangulated (seen in "
                               f"{int(np.isfinite(uv[:, ids[0]]).all(-1).sum())} frames): film the eyes open from "
                               "several directions")
        all4 = inl.all(1)
        if all4.sum() < 2:
            all4 = inl.sum(1) >= 3
        inlier_views[eye] = all4
        info[eye] = {"views": int(np.isfinite(uv[:, ids[0]]).all(-1).sum()), "inlier_views": int(all4.sum()),
                     "ransac_rms_px": [round(float(r), 3) for r in rms]}
    lms = {}
    for i, n in enumerate(names):
        entry = {eye: uv[i, ids].tolist() for eye, ids in (("left_eye", LEFT_LDM), ("right_eye", RIGHT_LDM))
                 if inlier_views[eye][i]}
        if entry:
            lms[n] = entry
    try:
        tri = triangulate(out, lms)
    except ToolError as e:
        raise PrepareError(f"eye landmarks: {e}") from None
    w2c = np.linalg.inv(c2w)
    r = default_eye_radius()
    fwd = np.array([0.0, 0.0, 1.0])  # the head frame's forward axis
    for eye, key, ids in (("left_eye", "left_eye_ldm", LEFT_LDM), ("right_eye", "right_eye_ldm", RIGHT_LDM)):
        P = np.array(tri[key])
        result[key] = P.tolist()
        # reprojection residuals of the final points in their inlier views (pixels)
        sel = np.flatnonzero(inlier_views[eye])
        pc = np.einsum("vij,lj->vli", w2c[sel, :3, :3], P) + w2c[sel, None, :3, 3]
        q = pc[..., :2] / pc[..., 2:3] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]
        res = np.linalg.norm(q - uv[sel][:, ids], axis=-1)
        info[eye].update(residual_rms_px=float(np.sqrt(np.mean(res ** 2))), rms_ray_distance=tri["rms_ray_distance"][eye])
        centre = P[0] - r * fwd
        result["eyeball_" + eye.split("_")[0] + "_center"] = (centre / bound).tolist()
    if result["eyeball_left_center"][0] < result["eyeball_right_center"][0]:
        log.warning("eyes: the left eye (the subject's left) lies at smaller x than the right one: the head frame "
                    "may be mirrored")
    rec.update(**result, eye_radius=r, bound=bound, threshold_px=thr, **info)
    write_json(os.path.join(out, "prepare", "eyes.json"), rec)
    log.info("eyes: landmarks from %d / %d views (left / right), residual %.2f / %.2f px",
             info["left_eye"]["inlier_views"], info["right_eye"]["inlier_views"],
             info["left_eye"]["residual_rms_px"], info["right_eye"]["residual_rms_px"])
    return rec
