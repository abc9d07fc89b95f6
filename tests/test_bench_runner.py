"""The benchmark runner (`python -m benchmarks.run`, what `eyefast bench` and benchmarks/gpu_session.sh
call) runs every case at its quick sizes and writes a record per case: a broken case is found here,
not on a lent GPU. Timings are not checked (they belong in the benchmarks); that they exist is."""

from __future__ import annotations

import json
import math

from benchmarks import run


def _records(tmp_path, *args):
    path = tmp_path / "records.json"
    assert run.main(["--quick", "--json", str(path), *args]) == 0
    with open(path) as fh:
        return {r["op"]: r for r in json.load(fh)}


def test_every_case_runs_and_records(tmp_path):
    recs = _records(tmp_path, "--no-reference")
    want = {"ray_sphere_intersect", "refract", "trace_eyes", "trace_eyes+bwd", "hash_grid", "sh_encode",
            "sdf_eikonal", "rasterize", "interpolate", "train_step", "occupancy_sampling",
            "render_weight_from_density"}
    assert want <= set(recs), sorted(want - set(recs))
    for op, r in recs.items():
        assert math.isfinite(r["eyefast_ms"]) and r["eyefast_ms"] > 0, (op, r)
        assert r["device"] == "cpu" and r["torch"]
    assert recs["train_step"]["host_syncs_per_step"] <= 2
    assert math.isfinite(recs["sdf_eikonal"]["numerical_ms"])  # the extra timing of the case


def test_cases_with_their_references(tmp_path):
    recs = _records(tmp_path, "--only", "sdf_eikonal,sh_encode,train_step")
    assert {"sdf_eikonal", "sh_encode", "train_step"} <= set(recs)
    for op, r in recs.items():
        assert math.isfinite(r["reference_ms"]) and r["speedup"] > 0, (op, r)


def test_camera_benchmark_finds_the_world_motion_between_two_rigs(tmp_path):
    """benchmarks.camera_refine evaluates a run in its own frame: gauge_alignment must find the rigid motion G
    of the world between a rig and the same rig moved by G (plus noise), and aligned_capture must move every
    camera of a capture by it (through the capture's NeRF convention)."""
    import os

    import numpy as np

    from benchmarks.camera_refine import _rigid, aligned_capture, camera_errors, gauge_alignment, training_cameras
    from eyefast.data.capture import cora_to_nerf

    rng = np.random.default_rng(3)
    points = rng.normal(scale=0.1, size=(10, 3)) + np.array([0.0, 0.0, 0.3])
    rig = []
    for az in np.linspace(-0.8, 0.8, 12):  # cameras on an arc, 2.5 from the head, looking at it (eyefast: z forward)
        c = np.array([2.5 * math.sin(az), 0.1, 2.5 * math.cos(az)])
        z = -c / np.linalg.norm(c)
        x = np.cross([0.0, 1.0, 0.0], z)
        x /= np.linalg.norm(x)
        m = np.eye(4)
        m[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
        m[:3, 3] = c
        rig.append(m)
    rig = np.asarray(rig)
    G = _rigid(np.array([0.002, -0.003, 0.001, 0.004, -0.002, 0.003]))
    moved = np.einsum("ij,fjk->fik", G, rig)
    found = gauge_alignment(moved, rig, points)
    assert np.abs(found - G).max() < 1e-6
    jitter = np.stack([_rigid(rng.normal(scale=1e-4, size=6)) for _ in rig])
    found = gauge_alignment(moved @ jitter, rig, points)  # noise per camera: G is still found, roughly
    errs = camera_errors(np.einsum("ij,fjk->fik", found, rig), moved, 2.5, points)
    assert errs["view_deg_median"] < 0.03 < camera_errors(rig, moved, 2.5, points)["view_deg_median"]

    src = tmp_path / "cap"
    os.makedirs(src / "image")
    frames = [{"file_path": f"image/{i:05d}.png", "transform_matrix": cora_to_nerf(m).tolist()} for i, m in enumerate(rig)]
    with open(src / "transforms.json", "w") as fh:
        json.dump({"frames": frames}, fh)
    out = aligned_capture(str(src), str(tmp_path / "aligned"), G)
    assert os.path.islink(os.path.join(out, "image"))
    got, want = training_cameras(os.path.join(out, "transforms.json")), training_cameras(str(src / "transforms.json"))
    assert np.allclose(got, np.einsum("ij,fjk->fik", G, want), atol=1e-12)
