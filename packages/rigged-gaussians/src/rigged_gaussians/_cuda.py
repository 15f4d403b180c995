"""Torch glue for the CUDA backend of ``rigged_gaussians._C`` (the ``*_cuda`` functions).

Thin bindings of the shared glue in :mod:`rigged_gaussians._glue` to the CUDA backend: every
tensor (outputs and scratch) is allocated with torch, the extension receives data pointers,
sizes and ``torch.cuda.current_stream().cuda_stream`` (kernels run on torch's current stream).
Inputs must be CUDA tensors; they are computed in float32 (float64 inputs are converted, and
gradients flow back in the caller's dtype). The public wrappers in ``api.py`` validate arguments
and dispatch ``backend="cuda"`` here.

Entry points (return conventions in :mod:`rigged_gaussians._glue`):

- :func:`triangle_frames_cuda` ``(vertices [B,V,3], faces [F,3]) -> (centroids [B,F,3],
  rotations [B,F,3,3], sqrt_areas [B,F])``
- :func:`deform_cuda` ``(means [N,3], quats [N,4], log_scales [N,3], face_ids [N], centroids,
  rotations, sqrt_areas) -> (means [B,N,3], quats [B,N,4], scales [B,N,3])``
- :func:`isect_tiles_cuda` (tile intersections, sorted)
- :func:`rasterize_cuda` (world Gaussians, gsplat's ``rasterization`` conventions)
- :func:`render_rigged_cuda` (triangle frames + fused deformation/projection + rasterizer)
"""

from __future__ import annotations

from functools import partial

from rigged_gaussians import _glue

__all__ = [
    "deform_cuda",
    "isect_tiles_cuda",
    "rasterize_cuda",
    "render_rigged_cuda",
    "triangle_frames_cuda",
]

BACKEND = _glue.CUDA

triangle_frames_cuda = partial(_glue.triangle_frames, BACKEND)
triangle_frames_cuda.__doc__ = _glue.triangle_frames.__doc__
deform_cuda = partial(_glue.deform, BACKEND)
deform_cuda.__doc__ = _glue.deform.__doc__
isect_tiles_cuda = partial(_glue.isect_tiles, BACKEND)
isect_tiles_cuda.__doc__ = _glue.isect_tiles.__doc__
rasterize_cuda = partial(_glue.rasterize, BACKEND)
rasterize_cuda.__doc__ = _glue.rasterize.__doc__
render_rigged_cuda = partial(_glue.render_rigged, BACKEND)
render_rigged_cuda.__doc__ = _glue.render_rigged.__doc__
