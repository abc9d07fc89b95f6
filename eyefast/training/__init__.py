"""Training a head model on a capture (docs/method.md section 5): :class:`Trainer` and its parts
(losses, optimiser, stage 2, the run folder, scalars, torchrun)."""

from .trainer import Trainer

__all__ = ["Trainer"]
