"""Shared fixtures: the device list (CUDA cases run only where a GPU and CUDA kernels exist)."""

import os

# Every op output is pre-filled with NaN / a sentinel, so unwritten elements fail the tests.
os.environ.setdefault("EYEFAST_POISON", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def _cuda_ok() -> bool:
    if not torch.cuda.is_available():
        return False
    from eyefast import _ext

    return _ext.with_cuda()


CUDA_OK = _cuda_ok()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA_OK, reason="needs a CUDA GPU and CUDA kernels"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 (finite entries must match exactly in position)."""
    out, ref = out.double().cpu(), ref.double().cpu()
    fin = torch.isfinite(ref)
    assert torch.equal(fin, torch.isfinite(out)), "finite/non-finite pattern differs"
    assert torch.equal(out[~fin], ref[~fin]), "non-finite entries differ"
    num = (out[fin] - ref[fin]).norm()
    den = ref[fin].norm().clamp_min(1e-30)
    return float(num / den)
