"""Surfaces from the trained fields: the clipped face mesh shared by training's stage 2 and the
export (:mod:`~eyefast.geometry.mesh`)."""
