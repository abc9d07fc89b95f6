"""Pure-PyTorch references of every eyefast op (float64-safe, autograd-differentiable).

They define the semantics the kernels are tested against; they are slow by design.
"""
