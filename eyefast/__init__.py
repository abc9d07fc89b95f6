"""eyefast: a performance engine for relightable face and eye capture.

The package, one folder per stage of the data flow:

* :mod:`eyefast.core`: the compiled kernels as torch ops (``ops``, ``volrend``, ``occupancy``,
  ``nn``), the op backends, the extension loader.
* :mod:`eyefast.data`: captures (:class:`~eyefast.data.Capture`), configs, the synthetic capture,
  own-data step-1 tools.
* :mod:`eyefast.scene`: the head model, its shading and its volume renderer.
* :mod:`eyefast.geometry`: the face mesh from the SDF (training's stage 2 and the export).
* :mod:`eyefast.training`: the trainer, losses, stage 2, checkpoints, torchrun.
* :mod:`eyefast.evaluation`: metrics and evaluation against a capture.
* :mod:`eyefast.export`: relightable assets (meshes, textures, glTF, preview).
* :mod:`eyefast.run`: a trained run loaded for inference (:class:`~eyefast.run.Run`).
* :mod:`eyefast.visual`: renders from any camera under any lights, turntables, the browser viewer.
* :mod:`eyefast.cli`: the ``eyefast`` command.
* :mod:`eyefast.reference`: pure-PyTorch references of the ops (what tests compare the kernels
  with, and the ``ops_backend: reference`` backend).

Importing the package is cheap: the compiled kernels (``eyefast._C``) load on first use of an op.
The short names below are loaded on first access: ``eyefast.ops``, ``eyefast.nn``,
``eyefast.volrend``, ``eyefast.OccupancyGrid``, ``eyefast.Run``, ``eyefast.Trainer``,
``eyefast.Capture``, ``eyefast.export_run``, ``eyefast.view`` (``eyefast.view(run)`` serves the browser
viewer).
"""

__version__ = "0.1.0"

#: lazy attributes: name -> (module, attribute or None for the module itself)
_LAZY = {
    "ops": ("eyefast.core.ops", None),
    "nn": ("eyefast.core.nn", None),
    "volrend": ("eyefast.core.volrend", None),
    "occupancy": ("eyefast.core.occupancy", None),
    "OccupancyGrid": ("eyefast.core.occupancy", "OccupancyGrid"),
    "Run": ("eyefast.run", "Run"),
    "Trainer": ("eyefast.training.trainer", "Trainer"),
    "Capture": ("eyefast.data.capture", "Capture"),
    "export_run": ("eyefast.export.export", "export_run"),
    "view": ("eyefast.view", None),  # a callable module: eyefast.view(run) serves the browser viewer
}


def __getattr__(name):  # PEP 562: lazy, so `import eyefast` stays light
    import importlib

    if name in _LAZY:
        mod, attr = _LAZY[name]
        m = importlib.import_module(mod)
        return m if attr is None else getattr(m, attr)
    raise AttributeError(f"module 'eyefast' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
