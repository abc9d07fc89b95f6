"""Timing helpers shared by the benchmark runner and the pytest-benchmark files.

A *case* describes one op at one size: the eyefast call, the reference call (pure PyTorch, or
another library), and the bytes the op must move at the least (each input read once, each output
written once), from which GB/s follows. ``copy_gbps`` is measured in the same run: a torch copy
into a preallocated buffer of half as many bytes, so that it moves the same total (read + write).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch


@dataclass
class Case:
    op: str
    n: int
    device: str
    eyefast: Callable[[], object]
    reference: Optional[Callable[[], object]]
    bytes_moved: int
    extra: dict = field(default_factory=dict)  # e.g. {"nerfacc": fn} for GPU comparisons
    note: str = ""
    info: dict = field(default_factory=dict)  # extra fields copied into the record
    # The reference may run on a subset (a slow reference at full size takes minutes): its time
    # is multiplied by this factor, and the note says so.
    reference_scale: float = 1.0
    # Untimed calls before each timed call of eyefast / reference (e.g. restoring a trainer's state,
    # so that every repetition times the identical work).
    eyefast_setup: Optional[Callable[[], object]] = None
    reference_setup: Optional[Callable[[], object]] = None


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], object], device: str, *, min_time: float = 0.3, max_reps: int = 50, warmup: int = 2,
            setup: Optional[Callable[[], object]] = None) -> float:
    """Median wall time of fn() in milliseconds (CUDA: synchronised around each call); ``setup()``, when
    given, runs untimed before every call."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < 3 or time.perf_counter() - start < min_time):
        if setup is not None:
            setup()
            sync(device)
        if device.startswith("cuda"):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def copy_gbps(total_bytes: int, device: str) -> float:
    """Bandwidth of a torch copy moving `total_bytes` (read + write) into a preallocated buffer:
    the memory-bandwidth ceiling. (The ops allocate their outputs, which on the CPU also costs
    page faults; that cost is counted against them, not against the ceiling.)"""
    half = max(total_bytes // 2, 1)
    src = torch.empty(half, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    ms = time_fn(lambda: dst.copy_(src), device)
    return total_bytes / (ms * 1e-3) / 1e9


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
