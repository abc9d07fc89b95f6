"""Counting the points where a GPU would wait for the host: ``with HostSyncCounter() as c: ...; c.count``.

On a GPU, an operation whose result the host must see before it can go on (``tensor.item()``,
``bool(tensor)``, a boolean-mask index, ``nonzero``, an op whose output size depends on the data)
stalls the stream: the host waits until the GPU has finished everything queued before it. The
counter records such operations as they are dispatched, whatever the device, so a CPU run counts the
syncs a GPU run would make (``torch.cuda.set_sync_debug_mode`` sees them only on a GPU).

Counted: ``aten::_local_scalar_dense`` (``.item()``, ``float()``, ``bool()``, ``int()`` of a tensor),
``aten::nonzero``, ``aten::masked_select``, ``aten::unique*``, ``aten::repeat_interleave`` with tensor
repeats, indexing with a boolean mask (``x[mask]``, ``x[mask] = v``), tensors made from Python data
(``torch.tensor([...])``: ``aten::lift_fresh``, a blocking host-to-device copy on a GPU), copies between
the CPU and a device, the eyefast ops whose output size depends on their input values
(:data:`DATA_DEPENDENT_OPS`: the occupancy sampler, which reads its sample count once) and eyefast ops
called with ``check=True`` (their input check reads a flag back).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostSyncCounter", "DATA_DEPENDENT_OPS"]

#: eyefast ops whose output size is known only after the kernel ran (one read of a count)
DATA_DEPENDENT_OPS = ("occupancy_sampling",)

_ALWAYS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique", "_unique2", "unique_consecutive",
           "unique_dim", "nonzero_static"}


def _is_bool_index(indices) -> bool:
    return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in (indices or ()))


class HostSyncCounter(TorchDispatchMode):
    """A dispatch mode counting host syncs (see the module docstring). ``count`` is the total,
    ``by_op`` a :class:`collections.Counter` of op names, ``stack`` (with ``record_stacks=True``) the
    Python stack of each sync, for finding where they come from."""

    def __init__(self, record_stacks: bool = False):
        super().__init__()
        self.by_op: Counter = Counter()
        self.record_stacks = record_stacks
        self.stacks: list = []

    @property
    def count(self) -> int:
        return sum(self.by_op.values())

    def _hit(self, name: str) -> None:
        self.by_op[name] += 1
        if self.record_stacks:
            import traceback

            self.stacks.append((name, "".join(traceback.format_stack(limit=14)[:-2])))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        ns = func.namespace
        name = func.__name__.split(".")[0]
        if ns == "aten":
            if name in _ALWAYS:
                self._hit(name)
            elif name in ("index", "_index_put_impl_", "index_put_", "index_put") and _is_bool_index(
                    args[1] if len(args) > 1 else kwargs.get("indices")):
                self._hit(f"{name}[bool mask]")
            elif (name == "repeat_interleave" and func._overloadname in ("Tensor", "self_Tensor")
                  and kwargs.get("output_size") is None):
                self._hit(name)  # its output size is the sum of the repeats, unless given
            elif name == "lift_fresh":
                self._hit("tensor from Python data")
            elif name in ("_to_copy", "to", "copy_"):
                src = args[1] if name == "copy_" else args[0]
                dst_dev = args[0].device if name == "copy_" else kwargs.get("device")
                if isinstance(src, torch.Tensor) and dst_dev is not None and (
                        (src.device.type == "cpu") != (torch.device(dst_dev).type == "cpu")):
                    self._hit(f"{name}({src.device.type}->{torch.device(dst_dev).type})")
        elif ns == "eyefast":
            if name in DATA_DEPENDENT_OPS:
                self._hit(f"eyefast::{name}")
            elif any(a.name == "check" for a in func._schema.arguments):
                i = [a.name for a in func._schema.arguments].index("check")
                if bool(args[i] if i < len(args) else kwargs.get("check", False)):
                    self._hit(f"eyefast::{name}(check=True)")
        return func(*args, **kwargs)
