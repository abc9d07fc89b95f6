"""eyefast: a performance engine for relightable face and eye capture.

Importing the package is cheap: the compiled kernels (``eyefast._C``) load on first
use of :mod:`eyefast.ops` (or anything that needs them).
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy submodules, so `import eyefast` stays light
    import importlib

    if name in {"ops", "reference", "config", "data", "synth", "nn", "metrics", "volrend", "occupancy", "tools"}:
        return importlib.import_module(f"eyefast.{name}")
    if name == "OccupancyGrid":
        return importlib.import_module("eyefast.occupancy").OccupancyGrid
    raise AttributeError(f"module 'eyefast' has no attribute {name!r}")
