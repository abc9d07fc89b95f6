"""Measuring a trained run: image and geometry metrics (:mod:`~eyefast.evaluation.metrics`), the
validation views (:mod:`~eyefast.evaluation.views`) and ``eyefast evaluate``
(:mod:`~eyefast.evaluation.evaluate`)."""
