"""The render pipeline, written once for every backend.

``ops`` is any object with the render stages (``triangle_frames``, ``projection``,
``isect_tiles``, ``rasterize_to_pixels``, with the contracts of :mod:`rigged_gaussians._glue`):
a :class:`rigged_gaussians._glue.NativeOps` (C++ CPU or CUDA) or the
:mod:`rigged_gaussians.reference` module (pure PyTorch).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rigged_gaussians._types import Gaussians, RasterMeta
from rigged_gaussians.settings import RasterSettings

__all__ = ["render", "render_rigged"]


def render(
    ops: Any, g: Gaussians, viewmats: Tensor, Ks: Tensor, backgrounds: Tensor | None,
    settings: RasterSettings, absgrad: Tensor | None = None,
) -> tuple[Tensor, Tensor, RasterMeta]:  # fmt: skip
    """Render ``g`` to ``C`` cameras: projection, tile intersection, blending.

    ``viewmats [C,4,4]``, ``Ks [C,3,3]``, ``backgrounds [C,D]``. Returns ``rgb [C,H,W,D]``,
    ``alpha [C,H,W,1]`` and :class:`RasterMeta` (the expected depth is rendered as one more
    channel when ``settings.depth``).
    """
    C = viewmats.shape[0]
    p = ops.projection(g, viewmats, Ks, settings)
    N = p.depths.shape[1]
    opacities = g.opacities if g.opacities.dim() == 2 else g.opacities.expand(C, N)
    isect = ops.isect_tiles(p.means2d, p.radii, p.depths, p.conics, opacities, settings)
    feats, bg = p.colors, backgrounds
    if settings.depth:
        feats = torch.cat([feats, p.depths[..., None].to(feats.dtype)], dim=-1)
        if bg is not None:
            bg = torch.cat([bg, bg.new_zeros(C, 1)], dim=-1)
    render_colors, alpha = ops.rasterize_to_pixels(
        p.means2d, p.conics, feats, opacities, bg, isect, settings, absgrad
    )
    D = p.colors.shape[-1]
    rgb = render_colors[..., :D]
    depth = render_colors[..., D:] / alpha.clamp(min=1e-10) if settings.depth else None
    visible = (p.radii > 0).all(dim=-1)
    meta = RasterMeta(depth, p.radii, p.means2d, p.depths, visible, settings.width, settings.height)
    return rgb, alpha, meta


def render_rigged(
    ops: Any, vertices: Tensor, faces: Tensor, g: Gaussians, viewmats: Tensor, Ks: Tensor,
    backgrounds: Tensor | None, settings: RasterSettings, absgrad: Tensor | None = None,
) -> tuple[Tensor, Tensor, RasterMeta]:  # fmt: skip
    """Render local Gaussians ``g`` (``g.face_ids`` set) on ``vertices [B,V,3]`` / ``faces``
    posed ``B`` times, ``C`` cameras each: ``viewmats [B,C,4,4]``, ``Ks [B,C,3,3]``,
    ``backgrounds [B,C,D]``. Returns ``rgb [B,C,H,W,D]``, ``alpha [B,C,H,W,1]`` and meta with
    per-camera entries flattened over ``B*C`` (``depth`` is ``[B,C,H,W,1]``)."""
    B, C = viewmats.shape[:2]
    frames = ops.triangle_frames(vertices, faces)
    rigged = Gaussians(g.means, g.quats, g.scales, g.opacities, g.colors, frames, g.face_ids)
    bg = backgrounds.reshape(B * C, -1) if backgrounds is not None else None
    rgb, alpha, meta = render(
        ops, rigged, viewmats.reshape(B * C, 4, 4), Ks.reshape(B * C, 3, 3), bg, settings, absgrad
    )
    H, W = settings.height, settings.width
    if meta.depth is not None:
        meta.depth = meta.depth.reshape(B, C, H, W, 1)
    return rgb.reshape(B, C, H, W, -1), alpha.reshape(B, C, H, W, 1), meta
