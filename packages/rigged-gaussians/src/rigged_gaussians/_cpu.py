"""Torch glue for the CPU backend of ``rigged_gaussians._C`` (the ``*_cpu`` functions).

Thin bindings of the shared glue in :mod:`rigged_gaussians._glue` to the CPU backend: every
tensor is allocated with torch, the extension receives data pointers and sizes and runs
synchronously on its own thread pool (as many threads as torch's intra-op pool unless
``RG_NUM_THREADS`` is set); results and gradients are bit-identical for any thread count
(shared gradients are summed in a fixed order, never with atomic adds: ``csrc/README.md``).
Inputs must be CPU tensors; they are computed in float32 (float64 inputs are converted, and
gradients flow back in the caller's dtype). The public wrappers in ``api.py`` validate
arguments and dispatch ``backend="cpu"`` here.

Entry points (return conventions in :mod:`rigged_gaussians._glue`):

- :func:`triangle_frames_cpu` ``(vertices [B,V,3], faces [F,3]) -> (centroids [B,F,3],
  rotations [B,F,3,3], sqrt_areas [B,F])``
- :func:`deform_cpu` ``(means [N,3], quats [N,4], log_scales [N,3], face_ids [N], centroids,
  rotations, sqrt_areas) -> (means [B,N,3], quats [B,N,4], scales [B,N,3])``
- :func:`isect_tiles_cpu` (tile intersections, sorted)
- :func:`rasterize_cpu` (world Gaussians, gsplat's ``rasterization`` conventions)
- :func:`render_rigged_cpu` (triangle frames + fused deformation/projection + rasterizer)
"""

from __future__ import annotations

from functools import partial

from rigged_gaussians import _glue

__all__ = [
    "deform_cpu",
    "isect_tiles_cpu",
    "rasterize_cpu",
    "render_rigged_cpu",
    "triangle_frames_cpu",
]

BACKEND = _glue.CPU

triangle_frames_cpu = partial(_glue.triangle_frames, BACKEND)
triangle_frames_cpu.__doc__ = _glue.triangle_frames.__doc__
deform_cpu = partial(_glue.deform, BACKEND)
deform_cpu.__doc__ = _glue.deform.__doc__
isect_tiles_cpu = partial(_glue.isect_tiles, BACKEND)
isect_tiles_cpu.__doc__ = _glue.isect_tiles.__doc__
rasterize_cpu = partial(_glue.rasterize, BACKEND)
rasterize_cpu.__doc__ = _glue.rasterize.__doc__
render_rigged_cpu = partial(_glue.render_rigged, BACKEND)
render_rigged_cpu.__doc__ = _glue.render_rigged.__doc__
