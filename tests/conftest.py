"""Shared fixtures: the device list (CUDA cases run only where a GPU and CUDA kernels exist)."""

import os

# Every op output is pre-filled with NaN / a sentinel, so unwritten elements fail the tests.
os.environ.setdefault("EYEFAST_POISON", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def _cuda_ok() -> bool:
    if not torch.cuda.is_available():
        return False
    from eyefast.core import _ext

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


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The `tiny` synthetic capture (read-only: tests that write into a capture make their own)."""
    from eyefast.data import synth

    d = tmp_path_factory.mktemp("tiny")
    synth.generate(str(d), preset="tiny")
    return str(d)


@pytest.fixture(scope="session")
def tiny_refractive(tmp_path_factory):
    """The `tiny` synthetic capture with refracting corneas (``--refractive``; read-only)."""
    from eyefast.data import synth

    d = tmp_path_factory.mktemp("tiny_refractive")
    synth.generate(str(d), preset="tiny", refractive=True)
    return str(d)


def tiny_cfg(tiny, workspace, *extra):
    """The tiny capture's config on the CPU, writing to ``workspace``, without validation, previews or
    periodic checkpoints (plus ``extra`` overrides)."""
    import os

    from eyefast.data import config as config_mod

    return config_mod.load(os.path.join(tiny, "config.yaml"),
                           ["device=cpu", f"workspace={workspace}", "train.val_freq=0", "train.vis_freq=0",
                            "train.save_freq=0", *extra])


class OpCalls(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the calls of eyefast ops whose name starts with ``prefix`` as ``(name, *need_flags)``:
    the values of their ``need_*`` arguments (which gradients a backward kernel computed)."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix, self.calls = prefix, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if func.namespace == "eyefast" and name.startswith(self.prefix):
            flags = tuple(bool(a) for a, arg in zip(args, func._schema.arguments) if arg.name.startswith("need_"))
            self.calls.append((name,) + flags)
        return func(*args, **(kwargs or {}))
