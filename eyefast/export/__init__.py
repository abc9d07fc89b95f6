"""Relightable assets from a trained run (docs/method.md section 6): meshes, UV textures, the eyes,
``head.glb`` and a relit preview. ``export_run(Run.load(RUN), OUT)``; on the command line
``eyefast export --run RUN``."""

from .export import export_run
from .files import ExportError

__all__ = ["export_run", "ExportError"]
