"""Data parallelism under ``torchrun``: the process group, and what the trainer shares between ranks."""

from __future__ import annotations

import os

import torch

__all__ = ["dist", "init_distributed", "allreduce_grads", "sum_over_ranks", "any_rank"]


def dist():
    """``torch.distributed`` when a process group is initialised (torchrun), else None."""
    import torch.distributed as d

    return d if d.is_available() and d.is_initialized() else None


def init_distributed(device: torch.device):
    """Under ``torchrun`` (WORLD_SIZE > 1): one process group (NCCL on CUDA, Gloo on the CPU), and this
    rank's device (``cuda:LOCAL_RANK``). Returns the device to train on, or None for ``device``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist() is not None:
        return None
    import torch.distributed as d

    dev = device
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    d.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


def _comm_device(device: torch.device):
    return device if device.type == "cuda" else "cpu"


def sum_over_ranks(v: int, device: torch.device) -> int:
    d = dist()
    if d is None or d.get_world_size() == 1:
        return int(v)
    t = torch.tensor([float(v)], dtype=torch.float64, device=_comm_device(device))
    d.all_reduce(t)
    return int(t.item())


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (Ctrl-C on one rank stops them all after the same step)."""
    d = dist()
    if d is None or d.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device(device))
    d.all_reduce(t, op=d.ReduceOp.MAX)
    return bool(t.item() > 0)


def allreduce_grads(params, device: torch.device) -> None:
    """Average the gradients of all ranks in one flat buffer. (DDP's reducer hooks cannot follow the
    eikonal term's double backward through ``autograd.grad(create_graph=True)``; this is what DDP
    computes, done after ``backward``.) Parameters without a gradient on every rank stay without one,
    so Adam skips them as in one process."""
    d = dist()
    if d is None or d.get_world_size() == 1:
        return
    world = d.get_world_size()
    params = [p for p in params if p.requires_grad]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=_comm_device(device))
    d.all_reduce(has)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    d.all_reduce(flat)
    flat /= world
    off = 0
    for p, h in zip(params, has.tolist()):
        n = p.numel()
        p.grad = flat[off:off + n].view_as(p).clone() if h > 0 else None
        off += n
