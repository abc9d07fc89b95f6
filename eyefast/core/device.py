"""Device names as users write them (``--device``, the config's ``device``)."""

from __future__ import annotations

import torch

__all__ = ["parse_device"]


def parse_device(dev) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"``, an index ``N`` (-> ``cuda:N``) or ``"auto"`` (CUDA if available)."""
    s = str(dev).strip()
    if s == "auto":
        s = "cuda" if torch.cuda.is_available() else "cpu"
    if s.isdigit():
        s = f"cuda:{s}"
    try:
        d = torch.device(s)
    except RuntimeError:
        raise ValueError(f"--device: expected cpu, cuda, cuda:N, N or auto, got {dev!r}") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {dev!r}: CUDA is not available on this machine (use --device cpu)")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise ValueError(f"--device {dev!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if d.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected cpu, cuda, cuda:N or N, got {dev!r}")
    return d
