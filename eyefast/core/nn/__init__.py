"""Neural-field building blocks on eyefast's kernels: hash-grid and spherical-harmonics encodings,
and Softplus with fused first and second derivatives; the fused SDF network (encoding + MLP +
its x-gradient)."""

from .activation import Softplus, softplus
from .hash_grid import HashGrid, hash_grid_encode, level_layout, level_scales
from .sdf_network import sdf_network
from .sh import SHEncoding, sh_encode

__all__ = ["HashGrid", "hash_grid_encode", "level_scales", "level_layout", "SHEncoding", "sh_encode", "Softplus", "softplus",
           "sdf_network"]
