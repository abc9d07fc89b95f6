"""Fake kernels with the real ops' device rule: :func:`register_fake`.

``torch.library.register_fake`` makes a function both the op's fake kernel (``torch.compile``) and its
``Meta`` kernel. The dispatcher runs the ``Meta`` kernel whenever one argument is on the ``meta``
device, even when the others are CPU or CUDA tensors (``Meta`` outranks both), and fakes that build
their outputs with ``x.new_empty(...)`` then returned CPU tensors of uninitialised memory. Every eyefast
fake is therefore registered through :func:`register_fake`, which first checks what the real kernels
check: all tensor arguments (and the tensors in list arguments) on one device. All-``meta`` arguments
give ``meta`` results of the right shapes, as any meta kernel does.
"""

from __future__ import annotations

import functools
import inspect

import torch

__all__ = ["register_fake", "check_same_device"]


def check_same_device(op: str, names, args, kwargs) -> None:
    """Raises (as the real kernels do, a RuntimeError) naming the first tensor argument of ``op`` whose device
    differs from the first tensor argument's."""
    ref = None
    items = list(zip(names, args)) + list(kwargs.items())
    for name, v in items:
        tensors = [(name, v)] if isinstance(v, torch.Tensor) else (
            [(f"{name}[{k}]", t) for k, t in enumerate(v) if isinstance(t, torch.Tensor)]
            if isinstance(v, (list, tuple)) else [])
        for n, t in tensors:
            if ref is None:
                ref = (n, t.device)
            elif t.device != ref[1]:
                raise RuntimeError(f"eyefast.{op}: {n} must be on {ref[1]} like {ref[0]}, got {t.device} "
                                   "(all tensor arguments must be on one device)")


def register_fake(qualname: str):
    """``torch.library.register_fake(qualname)`` for a function that also checks the device rule."""
    op = qualname.split("::", 1)[-1]

    def deco(fn):
        names = list(inspect.signature(fn).parameters)

        @functools.wraps(fn)
        def fake(*args, **kwargs):
            check_same_device(op, names, args, kwargs)
            return fn(*args, **kwargs)

        torch.library.register_fake(qualname, fake, _stacklevel=2)
        return fn

    return deco
