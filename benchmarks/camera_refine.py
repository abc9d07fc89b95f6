"""Camera refinement on perturbed cameras: ``python -m benchmarks.camera_refine``.

The demo capture's cameras are perturbed as structure from motion errs (every camera rotated by
``--deg`` degrees about a random axis and moved by ``--frac`` of its distance to the head in a random
direction, seeded); the demo then trains four times: on the true cameras without and with
``train.camera_refine`` (refinement must not harm good cameras), and on the perturbed ones without and
with it. Each run is evaluated on the true cameras (the validation views of the unperturbed capture):
PSNR, SSIM, eye-centre error and the surface error of its exported mesh; and again in its own frame
(``psnr_aligned``: the true cameras moved by :func:`gauge_alignment`). The refined runs also report
their cameras' remaining errors. ``--set train.seed=N`` trains with another seed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np

from .training_runs import run_cmd, train_and_evaluate, write_json


def _rot(axis: np.ndarray, ang: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(ang) * K + (1 - math.cos(ang)) * K @ K


def perturb_capture(src: str, dst: str, deg: float, frac: float, seed: int = 0, target=(0.0, 0.0, 0.0)) -> str:
    """A copy of capture ``src`` at ``dst`` (pixels linked, not copied) whose cameras (transforms.json,
    NeRF convention) are rotated by ``deg`` degrees about random axes and moved by ``frac`` of their
    distance to ``target`` in random directions."""
    rng = np.random.default_rng(seed)

    def move(m: np.ndarray) -> np.ndarray:
        R = _rot(rng.normal(size=3), math.radians(deg))
        dist = np.linalg.norm(m[:3, 3] - np.asarray(target))
        v = rng.normal(size=3)
        m[:3, :3] = R @ m[:3, :3]
        m[:3, 3] = m[:3, 3] + frac * dist * v / np.linalg.norm(v)
        return m

    return _copy_with_cameras(src, dst, move)


def camera_errors(c2w_a: np.ndarray, c2w_b: np.ndarray, scale: float, points: np.ndarray | None = None) -> dict:
    """Median and max rotation angle (degrees) and centre distance (/ ``scale``) between two sets of
    camera-to-world matrices [F, 4, 4]; with ``points`` [P, 3] also the view error: per camera the
    largest angle (degrees) between where the two cameras see a point (how far apart it lands in their
    images)."""
    Ra, Rb = c2w_a[:, :3, :3], c2w_b[:, :3, :3]
    cos = (np.einsum("fij,fij->f", Ra, Rb) - 1.0) / 2.0
    ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    dc = np.linalg.norm(c2w_a[:, :3, 3] - c2w_b[:, :3, 3], axis=-1) / scale
    out = {"rot_deg_median": float(np.median(ang)), "rot_deg_max": float(ang.max()),
           "centre_rel_median": float(np.median(dc)), "centre_rel_max": float(dc.max())}
    if points is not None:
        da = np.einsum("fji,fpj->fpi", Ra, points[None] - c2w_a[:, None, :3, 3])
        db = np.einsum("fji,fpj->fpi", Rb, points[None] - c2w_b[:, None, :3, 3])
        cos = (da * db).sum(-1) / (np.linalg.norm(da, axis=-1) * np.linalg.norm(db, axis=-1))
        view = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).max(-1)
        out.update(view_deg_median=float(np.median(view)), view_deg_max=float(view.max()))
    return out


def _face_points(truth: str) -> np.ndarray:
    """Points on the face of capture ``truth`` (its eye landmarks and eye centres): where it is seen."""
    from eyefast.data import config as config_mod

    d = config_mod.load(os.path.join(truth, "config.yaml")).data
    return np.asarray([*d.left_eye_ldm, *d.right_eye_ldm, d.eyeball_left_center, d.eyeball_right_center])


def _image_dirs(c2w: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Where ``points`` [P, 3] land in the images of cameras ``c2w`` [F, 4, 4] (eyefast convention), as
    tangents of their angles off the optical axis, [F, P, 2]."""
    v = np.einsum("fji,fpj->fpi", c2w[:, :3, :3], points[None] - c2w[:, None, :3, 3])
    return v[..., :2] / v[..., 2:3]


def _rigid(x: np.ndarray) -> np.ndarray:
    """The 4x4 rigid motion of ``x`` = (rotation vector, translation)."""
    G = np.eye(4)
    G[:3, :3] = _rot(x[:3], float(np.linalg.norm(x[:3]))) if np.linalg.norm(x[:3]) > 0 else np.eye(3)
    G[:3, 3] = x[3:]
    return G


def gauge_alignment(cams: np.ndarray, truth: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The rigid motion ``G`` [4, 4] of the world for which the true cameras ``G @ truth`` see ``points`` where
    the cameras ``cams`` (a run's training cameras, [F, 4, 4]) see them, in the least-squares sense.

    A capture's cameras fix the world's frame only up to such a motion: no refinement can know that the
    perturbed cameras are, on average, off by a fraction of their error (the mean of 45 random errors), and
    the refined ones keep that mean. Evaluating a run on ``G @`` its true validation cameras asks how well it
    renders new views in its own frame, as pose-refining NeRFs are evaluated (BARF aligns its cameras to
    the truth by Procrustes analysis before it measures new views)."""
    from scipy.optimize import least_squares

    target = _image_dirs(cams, points)
    fit = least_squares(lambda x: (_image_dirs(np.einsum("ij,fjk->fik", _rigid(x), truth), points) - target).ravel(),
                        np.zeros(6), x_scale=np.array([1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3]))
    return _rigid(fit.x)


def aligned_capture(src: str, dst: str, G: np.ndarray) -> str:
    """A copy of capture ``src`` at ``dst`` (pixels linked) whose cameras are all moved by ``G`` (world, 4x4)."""
    from eyefast.data.capture import cora_to_nerf, nerf_to_cora

    return _copy_with_cameras(src, dst, lambda m: cora_to_nerf(G @ nerf_to_cora(m)))


def _copy_with_cameras(src: str, dst: str, move) -> str:
    """A copy of capture ``src`` at ``dst`` (folders linked) whose transforms.json has each frame's
    matrix ``m`` (NeRF convention, float64 4x4) replaced by ``move(m)``, frame by frame in file order."""
    os.makedirs(dst, exist_ok=True)
    _link_capture(src, dst)
    with open(os.path.join(src, "transforms.json")) as fh:
        meta = json.load(fh)
    for fr in meta["frames"]:
        fr["transform_matrix"] = move(np.asarray(fr["transform_matrix"], dtype=np.float64)).tolist()
    with open(os.path.join(dst, "transforms.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    return dst


def _link_capture(src: str, dst: str) -> None:
    """``dst`` gets links to the folders of capture ``src`` and copies of its files, but transforms.json."""
    for name in os.listdir(src):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if name == "transforms.json" or os.path.exists(d):
            continue
        if os.path.isdir(s):
            os.symlink(os.path.abspath(s), d)
        else:
            shutil.copy(s, d)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.camera_refine", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/demo", help="the demo capture (generated when missing)")
    ap.add_argument("--work", default="workspace/camera_refine", help="perturbed capture and runs")
    ap.add_argument("--deg", type=float, default=0.2)
    ap.add_argument("--frac", type=float, default=0.003)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="config overrides for every run")
    ap.add_argument("--refine-set", action="append", default=[], help="config overrides for the refined runs")
    ap.add_argument("--cases", default="true,true+refine,perturbed,perturbed+refine",
                    help="comma-separated: true, true+refine, perturbed, perturbed+refine")
    ap.add_argument("--json", help="write the table's records here")
    a = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(a.data, "transforms.json")):
        run_cmd([sys.executable, "-m", "eyefast.synth", a.data, "--preset", "demo"])
    pert = perturb_capture(a.data, os.path.join(a.work, "perturbed"), a.deg, a.frac, a.seed)
    cfg = os.path.join(a.data, "config.yaml")
    moved = [f"data.meta_path={json.dumps(os.path.abspath(pert))}"]
    refine = ["train.camera_refine=true", *a.refine_set]
    runs = {"true": [], "true+refine": refine, "perturbed": moved, "perturbed+refine": moved + refine}
    records = []
    for name in a.cases.split(","):
        if name not in runs:
            ap.error(f"--cases: unknown case {name!r} (one of {', '.join(runs)})")
        sets = runs[name]
        ws = os.path.join(a.work, name.replace("+", "_"))
        res = train_and_evaluate(cfg, ws, sets=[*a.set, *sets], eval_capture=os.path.abspath(a.data), export=True)
        res["case"] = name
        res["sets"] = sets
        res["cameras_before"] = None if "perturbed" not in name else refined_camera_errors(
            None, a.data, os.path.join(pert, "transforms.json"))
        if "train.camera_refine=true" in sets:
            res["cameras"] = refined_camera_errors(os.path.join(ws, "run"), a.data)
        refined = "train.camera_refine=true" in sets
        if "perturbed" in name or refined:
            res.update(evaluate_in_own_frame(ws, a.data, pert if "perturbed" in name else None, refined))
        else:  # the true cameras as they are: the run's frame is the truth's
            res.update(psnr_aligned=res["psnr"], ssim_aligned=res["ssim"], gauge={"rot_deg": 0.0, "trans_rel": 0.0})
        records.append(res)
        print(json.dumps({k: res.get(k) for k in ("case", "psnr", "ssim", "psnr_aligned", "eye_center_error_rel",
                                                  "surface_error", "cameras")}), flush=True)
    if a.json:
        write_json(a.json, {"deg": a.deg, "frac": a.frac, "seed": a.seed, "set": a.set, "runs": records})
    return 0


def evaluate_in_own_frame(ws: str, truth: str, given: str | None, refined: bool) -> dict:
    """``psnr_aligned``, ``ssim_aligned`` (and ``gauge``: the alignment's rotation in degrees and
    translation / camera distance) of run ``ws/run`` on the true validation cameras moved into its own
    frame by :func:`gauge_alignment` of its training cameras (the refined ones, else those of capture
    ``given``)."""
    run = os.path.join(ws, "run")
    b = training_cameras(os.path.join(truth, "transforms.json"))
    cams = training_cameras(os.path.join(run, "transforms_refined.json") if refined
                            else os.path.join(given, "transforms.json"))
    G = gauge_alignment(cams, b, _face_points(truth))
    e = camera_errors(G[None], np.eye(4)[None], float(np.median(np.linalg.norm(b[:, :3, 3], axis=-1))))
    gauge = {"rot_deg": e["rot_deg_median"], "trans_rel": e["centre_rel_median"]}
    cap = aligned_capture(truth, os.path.join(ws, "truth_in_run_frame"), G)
    out = os.path.join(ws, "eval_aligned.json")
    run_cmd([sys.executable, "-m", "eyefast.evaluate", "--run", run, "--capture", os.path.abspath(cap), "--json", out,
             "--no-report"])
    with open(out) as fh:
        ev = json.load(fh)
    return {"psnr_aligned": ev["psnr"], "ssim_aligned": ev["ssim"], "gauge": gauge}


def training_cameras(transforms: str) -> np.ndarray:
    """The training frames' cameras [F, 4, 4] (eyefast convention) of a transforms.json (every frame but
    every 10th, in file order, as the capture splits them)."""
    from eyefast.data.capture import nerf_to_cora

    with open(transforms) as fh:
        fr = sorted(json.load(fh)["frames"], key=lambda f: f["file_path"])
    return nerf_to_cora(np.asarray([f["transform_matrix"] for i, f in enumerate(fr) if i % 10]))


def refined_camera_errors(run: str | None, truth: str, cameras: str | None = None) -> dict:
    """The refined training cameras (run/transforms_refined.json, or the file ``cameras``) against the
    true ones."""
    a = training_cameras(cameras or os.path.join(run, "transforms_refined.json"))
    b = training_cameras(os.path.join(truth, "transforms.json"))
    return camera_errors(a, b, float(np.median(np.linalg.norm(b[:, :3, 3], axis=-1))), _face_points(truth))


if __name__ == "__main__":
    sys.exit(main())
