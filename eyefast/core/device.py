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
        d = None
    if d is None or d.type not in ("cpu", "cuda"):
        raise ValueError(f"device {dev!r}: expected cpu, cuda, cuda:N, N or auto")
    if d.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {dev!r}: CUDA is not available on this machine (use --device cpu, or "
                         "device: cpu in the config)")
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise ValueError(f"device {dev!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return d
