"""Gaussians rigged to triangle meshes: triangle frames, fused deformation, a tile rasterizer with
gsplat's conventions (C++ CPU and CUDA backends, pure-PyTorch reference), binding-aware
densification and 3DGS PLY I/O.

Importing never needs the compiled extension ``rigged_gaussians._C``: without it the operations
fall back to :mod:`rigged_gaussians.reference` (with one warning).
"""

from rigged_gaussians import ply, reference, strategy
from rigged_gaussians._types import Deformed, RasterMeta, TriangleFrames
from rigged_gaussians.api import build_info, cuda_available, deform, rasterize, render_rigged, triangle_frames
from rigged_gaussians.settings import RasterSettings

__version__ = "0.1.0"

__all__ = [
    "Deformed",
    "RasterMeta",
    "RasterSettings",
    "TriangleFrames",
    "__version__",
    "build_info",
    "cuda_available",
    "deform",
    "ply",
    "rasterize",
    "reference",
    "render_rigged",
    "strategy",
    "triangle_frames",
]
