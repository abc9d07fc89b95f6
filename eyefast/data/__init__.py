"""Captures and configs (docs/method.md section 1): loading a capture folder
(:class:`~eyefast.data.capture.Capture`), the run config (:mod:`~eyefast.data.config`), the built-in
synthetic capture (:mod:`~eyefast.data.synth`) and the own-data step-1 tools
(:mod:`~eyefast.data.tools`)."""

from .capture import MASK_KINDS, Capture, CaptureError, cora_to_nerf, frame_name, nerf_to_cora

__all__ = ["Capture", "CaptureError", "MASK_KINDS", "nerf_to_cora", "cora_to_nerf", "frame_name"]
