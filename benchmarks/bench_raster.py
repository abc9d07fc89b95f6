"""pytest-benchmark of the rasteriser vs its PyTorch reference (`pytest benchmarks/bench_raster.py`)."""

import pytest
import torch

from benchmarks.cases_raster import cases

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CASES = {(d, c.op): c for d in DEVICES for c in cases(d, quick=True)}


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[1]}-{k[0]}")
def test_eyefast(benchmark, key):
    case = CASES[key]
    benchmark.group = case.op
    benchmark(case.eyefast)


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[1]}-{k[0]}-reference")
def test_reference(benchmark, key):
    case = CASES[key]
    benchmark.group = case.op
    # The brute-force rasteriser reference runs on a smaller problem (see cases_raster.py): its
    # time times reference_scale estimates the full size.
    benchmark.extra_info["reference_scale"] = case.reference_scale
    benchmark.extra_info["note"] = case.note
    benchmark.pedantic(case.reference, rounds=3, iterations=1)
