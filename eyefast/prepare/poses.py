"""Stage ``poses``: structure from motion (pycolmap: SIFT, matching, incremental mapping), undistortion to a
pinhole camera, the head frame, and the capture's ``transforms.json`` and ``image/``.

* Features: SIFT on ``OUT/prepare/frames/``, only inside the foreground (``frames_mask/``, eroded by 2% of
  the image size so that no feature sits on the silhouette, where the background shows through).
* Matching: every pair for up to :data:`EXHAUSTIVE_MAX` frames; beyond, sequential matching (each frame
  with its 10 neighbours and a few farther ones) plus loop closure without a vocabulary tree: a keyframe
  every ``n / 30`` frames matched with every other keyframe, so that the end of a circle meets its start.
* Mapping: one camera shared by all frames (SIMPLE_RADIAL: focal length, principal point at the centre,
  one radial term); the radial term is held at 0 while mapping (a phone's narrow view makes it trade off
  against the focal length) and freed in a last bundle adjustment, kept when it lowers the error by 2% or
  more and stays small. Frames that do not register are listed and dropped; fewer than
  :data:`MIN_REGISTERED` of them is an error.
* Undistortion: the images and masks are resampled to a pinhole camera (the loader has no distortion
  model); the face landmarks of the frames stage move with them.
* Head frame (:mod:`.frame`): from the triangulated face landmarks, or from the cameras.

Writes ``OUT/transforms.json`` (NeRF/OpenGL camera-to-world, docs/method.md section 1), ``OUT/image/``
(undistorted frames; the masks stage blacks out their background), ``OUT/prepare/undistorted/`` and
``undistorted_mask/``, ``OUT/prepare/sparse/`` (the COLMAP model, in COLMAP's own frame),
``OUT/prepare/points.npz`` (sparse points in the head frame), ``OUT/prepare/landmarks.npz`` (2D face
landmarks per frame in the undistorted images, their triangulated 3D points in the head frame) and the
record ``OUT/prepare/poses.json``.
"""

from __future__ import annotations

import os
import shutil
import uuid

import numpy as np

from ..data.capture import cora_to_nerf
from .common import (PrepareError, log, need_record, new_record, progress, read_image, require, staged_dirs,
                     write_json, write_png)

EXHAUSTIVE_MAX = 40
MIN_REGISTERED = 0.6
#: the radial term found by the last bundle adjustment is kept only while |k| stays below this
MAX_RADIAL = 0.3
#: ... and when it lowers the mean reprojection error by this fraction at least (a lens without distortion
#: gains nothing from the term, which would only trade off against the focal length)
RADIAL_GAIN = 0.02
#: face landmarks farther than this fraction of the image's long side from their reprojection are outliers
LANDMARK_THRESHOLD = 0.008


def _options(pycolmap, threads: int):
    ro = pycolmap.ImageReaderOptions()
    ro.camera_model = "SIMPLE_RADIAL"
    eo = pycolmap.FeatureExtractionOptions()
    eo.num_threads = threads
    eo.sift.peak_threshold = 0.004  # skin is smooth: a lower contrast threshold than COLMAP's 0.0067
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = threads
    return ro, eo, mo


def _erode(mask: np.ndarray, px: int) -> np.ndarray:
    from scipy import ndimage

    if px <= 0:
        return mask
    return ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), iterations=px, border_value=0)


def loop_pairs(names, n_key: int = 30):
    """Loop-closure pairs: every keyframe (one every ``len(names) / n_key``) with every other keyframe."""
    step = max(1, len(names) // n_key)
    keys = names[::step]
    return [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]


def _sfm(work: str, image_dir: str, names, mask_dir, show: bool, threads: int):
    pycolmap = require("pycolmap", "structure from motion (the poses stage)")
    pycolmap.logging.minloglevel = 2
    pycolmap.set_random_seed(0)
    db = os.path.join(work, "database.db")
    ro, eo, mo = _options(pycolmap, threads)
    files = [n + ".png" for n in names]
    if mask_dir is not None:
        ro.mask_path = mask_dir
    log.info("poses: SIFT features in %d frames", len(files))
    pycolmap.extract_features(db, image_dir, image_names=files, camera_mode=pycolmap.CameraMode.SINGLE,
                              reader_options=ro, extraction_options=eo, device=pycolmap.Device.cpu)
    if len(files) <= EXHAUSTIVE_MAX:
        matching = "exhaustive"
        pycolmap.match_exhaustive(db, matching_options=mo, device=pycolmap.Device.cpu)
    else:
        matching = "sequential + keyframe loop closure"
        po = pycolmap.SequentialPairingOptions()
        po.overlap = 10
        po.quadratic_overlap = True
        pycolmap.match_sequential(db, matching_options=mo, pairing_options=po, device=pycolmap.Device.cpu)
        pairs_path = os.path.join(work, "loop_pairs.txt")
        with open(pairs_path, "w") as f:
            f.writelines(f"{a} {b}\n" for a, b in loop_pairs(files))
        ip = pycolmap.ImportedPairingOptions()
        ip.match_list_path = pairs_path
        pycolmap.match_image_pairs(db, matching_options=mo, pairing_options=ip, device=pycolmap.Device.cpu)
    log.info("poses: incremental mapping (%s matching)", matching)
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = threads
    opts.random_seed = 0
    opts.ba_refine_extra_params = False
    opts.mapper.abs_pose_refine_extra_params = False
    sparse = os.path.join(work, "sparse")
    os.makedirs(sparse, exist_ok=True)
    recs = pycolmap.incremental_mapping(db, image_dir, sparse, opts)
    if not recs:
        return None, matching
    rec = max(recs.values(), key=lambda r: r.num_reg_images())
    # free the radial term in a last bundle adjustment; keep it when it helps and stays small
    before = rec.compute_mean_reprojection_error()
    cam = next(iter(rec.cameras.values()))
    old = np.array(cam.params)
    try:
        ba = pycolmap.BundleAdjustmentOptions()
        ba.refine_extra_params = True
        ba.refine_focal_length = True
        ba.print_summary = False
        trial = pycolmap.Reconstruction(rec)
        pycolmap.bundle_adjustment(trial, ba)
        k = float(next(iter(trial.cameras.values())).params[3])
        if abs(k) < MAX_RADIAL and trial.compute_mean_reprojection_error() < (1.0 - RADIAL_GAIN) * before:
            rec = trial
    except Exception as e:  # an older pycolmap: keep the mapping's result
        log.info("poses: the last bundle adjustment failed (%s); the radial term stays %g", e, old[3])
    return rec, matching


def _undistort_map(cam, new):
    """Sampling positions (array indices, ``[2, H', W']`` rows then columns) in the distorted image for the
    pixel centres of the undistorted one."""
    Hn, Wn = new.height, new.width
    u, v = np.meshgrid(np.arange(Wn) + 0.5, np.arange(Hn) + 0.5)
    fx, fy, cx, cy = new.params[:4]
    xyz = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1).reshape(-1, 3)
    uv = np.asarray(cam.img_from_cam(xyz), np.float64).reshape(Hn, Wn, 2)
    return np.stack([uv[..., 1] - 0.5, uv[..., 0] - 0.5])


def _remap(img: np.ndarray, coords) -> np.ndarray:
    from scipy import ndimage

    if coords is None:
        return img
    if img.ndim == 2:
        return ndimage.map_coordinates(img.astype(np.float32), coords, order=1, mode="constant", cval=0.0)
    return np.stack([ndimage.map_coordinates(img[..., c].astype(np.float32), coords, order=1, mode="constant",
                                             cval=0.0) for c in range(img.shape[-1])], -1)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def run(out: str, show: bool = True, threads: int = -1) -> dict:
    fr = need_record(out, "frames", "poses")
    names = list(fr["frames"])
    frames_dir = os.path.join(out, "prepare", "frames")
    fmask_dir = os.path.join(out, "prepare", "frames_mask")
    W, H = fr["size"]
    rec_out = new_record("poses", {"frames": fr["run_id"]})
    work = os.path.join(out, "prepare", f".sfm-{uuid.uuid4().hex[:8]}")
    os.makedirs(work)
    try:
        mask_dir = None
        if os.path.isdir(fmask_dir):
            mask_dir = os.path.join(work, "masks")
            os.makedirs(mask_dir)
            px = int(round(0.02 * max(W, H)))
            for n in names:  # COLMAP's mask of image "x.png" is "x.png.png"; black pixels get no feature
                m = read_image(os.path.join(fmask_dir, n + ".png")) >= 128
                write_png(os.path.join(mask_dir, n + ".png.png"), _erode(m, px).astype(np.uint8) * 255)
        sfm, matching = _sfm(work, frames_dir, names, mask_dir, show, threads)
        reg = {}
        if sfm is not None:
            for im in sfm.images.values():
                if im.has_pose:
                    reg[os.path.splitext(im.name)[0]] = im
        frac = len(reg) / len(names)
        missing = [n for n in names if n not in reg]
        if frac < MIN_REGISTERED:
            raise PrepareError(
                f"structure from motion registered only {len(reg)} of {len(names)} frames ({frac:.0%}; at least "
                f"{MIN_REGISTERED:.0%} are needed). Not registered: {', '.join(missing)}. Film slowly, with the "
                "flashlight on and the whole head in every frame, or give more frames (a smaller --every)")
        cam = next(iter(sfm.cameras.values()))
        pycolmap = require("pycolmap", "the poses stage")
        if np.allclose(np.asarray(cam.params)[3:], 0.0):
            new = pycolmap.Camera.create_from_model_name(1, "PINHOLE", float(cam.params[0]), cam.width, cam.height)
            new.params = [cam.params[0], cam.params[0], cam.params[1], cam.params[2]]
            coords = None
        else:
            new = pycolmap.undistort_camera(pycolmap.UndistortCameraOptions(), cam)
            coords = _undistort_map(cam, new)
        fx, fy, cx, cy = (float(v) for v in new.params[:4])
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        Wn, Hn = int(new.width), int(new.height)
        kept = [n for n in names if n in reg]
        c2w = np.zeros((len(kept), 4, 4))
        for i, n in enumerate(kept):
            M = np.eye(4)
            pose = reg[n].cam_from_world
            M[:3, :4] = (pose() if callable(pose) else pose).matrix()  # a method since pycolmap 3.12
            c2w[i] = np.linalg.inv(M)
        # sparse points, and whether one of their observations lies inside a foreground mask
        pts, fg = [], []
        fmask = {n: read_image(os.path.join(fmask_dir, n + ".png")) >= 128 for n in kept} if mask_dir else None
        for pid, p in sfm.points3D.items():
            pts.append(p.xyz)
            inside = True
            if fmask is not None:
                inside = False
                for el in p.track.elements:
                    im = sfm.image(el.image_id)
                    x, y = im.points2D[el.point2D_idx].xy
                    m = fmask.get(os.path.splitext(im.name)[0])
                    if m is not None and 0 <= int(y) < m.shape[0] and 0 <= int(x) < m.shape[1] and m[int(y), int(x)]:
                        inside = True
                        break
            fg.append(inside)
        pts = np.array(pts, np.float64).reshape(-1, 3)
        fg = np.array(fg, bool)

        # face landmarks in the undistorted frames, triangulated
        from . import frame as head_frame
        from .triangulate import triangulate_points

        lm2d = None
        info = None
        if fr.get("face"):
            npz = np.load(os.path.join(out, "prepare", "frames_landmarks.npz"))
            by_name = dict(zip(npz["names"].tolist(), npz["landmarks"]))
            lm2d = np.full((len(kept), 478, 2), np.nan)
            for i, n in enumerate(kept):
                raw = by_name.get(n)
                if raw is None or not np.isfinite(raw).all():
                    continue
                xy = np.asarray(cam.cam_from_img(raw), np.float64)  # normalised camera coordinates
                lm2d[i] = xy * np.array([fx, fy]) + np.array([cx, cy])
            thr = max(2.0, LANDMARK_THRESHOLD * max(Wn, Hn))
            lm3d, inl, rms = triangulate_points(K, c2w, lm2d, thr)
            try:
                T, info = head_frame.from_face(lm3d)
            except PrepareError as e:
                log.warning("poses: %s; the head frame comes from the cameras", e)
                T = None
            if T is not None:
                lm3d = T.points(lm3d)
                info["landmark_threshold_px"] = thr
                info["landmark_rms_px"] = float(np.nanmedian(rms))
        if info is None:
            T, info = head_frame.from_cameras(c2w, pts[fg])
        c2w = T.cameras(c2w)
        pts = T.points(pts)
        centres = c2w[:, :3, 3]
        inside = np.abs(centres).max(-1) < 1.0
        if inside.any():
            log.warning("poses: %d camera(s) lie inside the scene cube [-1, 1]^3, closer than about 24 cm to the "
                        "head's centre: film from a little farther", int(inside.sum()))

        # the capture: undistorted images (and masks), transforms.json
        with staged_dirs(out, ["image", "prepare/undistorted", "prepare/undistorted_mask"]) as tmp:
            for n in progress(kept, "poses: undistort", show):
                img = read_image(os.path.join(frames_dir, n + ".png"))
                und = np.clip(_remap(img, coords) + 0.5, 0, 255).astype(np.uint8) if coords is not None else img
                p = os.path.join(tmp["prepare/undistorted"], n + ".png")
                write_png(p, und)
                _link_or_copy(p, os.path.join(tmp["image"], n + ".png"))
                if mask_dir:
                    m = read_image(os.path.join(fmask_dir, n + ".png")).astype(np.float32)
                    m = _remap(m, coords) if coords is not None else m
                    write_png(os.path.join(tmp["prepare/undistorted_mask"], n + ".png"),
                              (m >= 127.5).astype(np.uint8) * 255)
            sparse_tmp = os.path.join(work, "model")
            os.makedirs(sparse_tmp)
            sfm.write(sparse_tmp)
        nerf = cora_to_nerf(c2w)
        meta = {"w": Wn, "h": Hn, "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy,
                "camera_angle_x": float(2 * np.arctan(Wn / (2 * fx))),
                "frames": [{"file_path": f"image/{n}.png", "transform_matrix": nerf[i].tolist()}
                           for i, n in enumerate(kept)]}
        write_json(os.path.join(out, "transforms.json"), meta)
        np.savez(os.path.join(out, "prepare", "points.npz"), xyz=pts.astype(np.float32), foreground=fg)
        lm_path = os.path.join(out, "prepare", "landmarks.npz")
        if lm2d is not None:
            np.savez(lm_path, names=np.array(kept), uv=lm2d, xyz=lm3d, rms=rms, inliers=inl)
        elif os.path.isfile(lm_path):
            os.remove(lm_path)
        final_sparse = os.path.join(out, "prepare", "sparse")
        if os.path.isdir(final_sparse):
            shutil.rmtree(final_sparse)
        os.replace(sparse_tmp, final_sparse)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rec_out.update(
        registered=kept, dropped={n: "not registered by structure from motion" for n in missing},
        registered_fraction=frac, matching=matching, reprojection_error_px=float(sfm.compute_mean_reprojection_error()),
        points=int(len(pts)), foreground_points=int(fg.sum()),
        camera={"model": cam.model_name, "params": [float(v) for v in cam.params], "width": cam.width, "height": cam.height},
        pinhole={"w": Wn, "h": Hn, "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy}, undistorted=coords is not None,
        head_frame={**info, **T.to_dict()}, cameras_inside_bound=int(inside.sum()), bound=1.0)
    write_json(os.path.join(out, "prepare", "poses.json"), rec_out)
    log.info("poses: %d of %d frames registered (%.0f%%), reprojection error %.2f px, head frame from the %s",
             len(kept), len(names), 100 * frac, rec_out["reprojection_error_px"], info["method"])
    return rec_out
