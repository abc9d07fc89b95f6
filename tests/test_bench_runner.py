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
