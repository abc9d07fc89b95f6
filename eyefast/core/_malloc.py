"""glibc malloc settings for long CPU jobs (training): keep freed memory for reuse.

A training step allocates and frees tens of multi-MB activations. With glibc's defaults, blocks
above a dynamic threshold are mmap'd and unmapped on free, and freed heap tops are returned to
the OS, so the next step faults every page in afresh (zeroed by the kernel). Measured on the
2-core VM: a third of the eyefast training step went to page faults; with these settings the step
took 219 ms instead of 272 ms (the reference-ops step 727 vs 743 ms). This is the usual advice for
PyTorch CPU training (a caching malloc such as jemalloc or tcmalloc), done with glibc's own
``mallopt``. The cost: up to ``trim_threshold`` of freed memory stays with the process.

``EYEFAST_MALLOC_TUNING=0`` turns it off; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

_applied: bool | None = None


def tune(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30, top_pad: int = 64 << 20) -> bool:
    """Sets M_MMAP_THRESHOLD (32 MiB, glibc's maximum), M_TRIM_THRESHOLD and M_TOP_PAD once per
    process; returns whether they are in effect. Affects later allocations only: call it early."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("EYEFAST_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold) and mallopt(M_TRIM_THRESHOLD, trim_threshold)
                    and mallopt(M_TOP_PAD, top_pad))
    return _applied
