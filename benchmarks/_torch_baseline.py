"""The pure-PyTorch timing baseline of ``bench_rasterizer.py``.

``rigged_gaussians.reference`` is the oracle: its blending is dense (every tile padded to the
longest list, all tiles at once, colours summed in a sequential cumulative sum so its results do
not depend on the padding), which makes it too slow and too large to time at 10k-50k Gaussians
and 512^2. The baseline is the tile-parallel PyTorch rasterizer the reference used before it
became the oracle, unchanged: the reference's projection and tile intersections as they were
(``tight_tiles=False``: gsplat's 3.33 sigma boxes; ``tight=True`` gives it the exact tile test
too), then tiles sorted by their list length and blended in chunks of about ``chunk_elements``
``[tile, pixel, Gaussian]`` entries, each chunk padded only to its own longest list, colours
accumulated with one ``einsum``.
"""

from __future__ import annotations

from typing import Any

import torch
from rigged_gaussians import reference
from rigged_gaussians._reference_tiles import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN
from rigged_gaussians._types import Gaussians
from rigged_gaussians.settings import RasterSettings
from torch import Tensor


def _chunks(counts: list[int], per_tile: int, budget: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of tiles (sorted by count) of at most ``budget`` padded entries."""
    out, start = [], 0
    while start < len(counts):
        end = start + 1
        while end < len(counts) and (end + 1 - start) * per_tile * counts[end] <= budget:
            end += 1
        out.append((start, end))
        start = end
    return out


def _blend_chunk(
    tiles: Tensor, ids: Tensor, real: Tensor, proj: Any, opac: Tensor, st: RasterSettings
) -> Tensor:
    """``[T,P,D+1]`` colours and transmittance of a chunk of tiles (``ids [T,G]``, ``[T,P,G]``
    tensors, einsum accumulation: the previous reference's blend)."""
    ts, n_tiles = st.tile_size, st.tile_w * st.tile_h
    C, N, D = proj.colors.shape
    iy, ix = torch.meshgrid(torch.arange(ts), torch.arange(ts), indexing="ij")
    tile = tiles % n_tiles
    pix = (
        torch.stack(
            [
                (tile % st.tile_w)[:, None] * ts + ix.reshape(1, -1),
                (tile // st.tile_w)[:, None] * ts + iy.reshape(1, -1),
            ],
            dim=-1,
        ).to(proj.means2d.dtype)
        + 0.5
    )  # [T,P,2]
    zero = proj.means2d.new_zeros(())
    mask = real[..., None]
    m2 = torch.where(mask, proj.means2d.reshape(C * N, 2)[ids], zero)
    con = torch.where(mask, proj.conics.reshape(C * N, 3)[ids], zero)[:, None]  # [T,1,G,3]
    d = m2[:, None] - pix[:, :, None]  # [T,P,G,2]
    sig = (
        0.5 * (con[..., 0] * d[..., 0] ** 2 + con[..., 2] * d[..., 1] ** 2)
        + con[..., 1] * d[..., 0] * d[..., 1]
    )
    alpha = torch.clamp(opac.reshape(C * N)[ids][:, None] * torch.exp(-sig), max=ALPHA_MAX)
    alpha = torch.where((sig < 0) | (alpha < ALPHA_MIN) | ~real[:, None], zero, alpha)
    with torch.no_grad():
        contrib = torch.cumprod(1 - alpha, dim=-1) > TRANSMITTANCE_MIN
    alpha = torch.where(contrib, alpha, zero)
    T = torch.cumprod(1 - alpha, dim=-1)
    w = alpha * torch.cat([torch.ones_like(T[..., :1]), T[..., :-1]], dim=-1)
    feats = torch.where(mask, proj.colors.reshape(C * N, D)[ids], zero)
    return torch.cat([torch.einsum("tpg,tgd->tpd", w, feats), T[..., -1:]], dim=-1)


def rasterize(chunk_elements: int = 1 << 22, tight: bool = False, **scene: Any) -> tuple[Tensor, Tensor]:
    """Render ``scene`` (``rigged_gaussians.rasterize``'s arguments, plain colours, no
    background) with the baseline: ``rgb [C,H,W,D]`` and ``alpha [C,H,W,1]``."""
    st = RasterSettings(scene["width"], scene["height"], tight_tiles=tight)
    g = Gaussians(scene["means"], scene["quats"], scene["scales"], scene["opacities"], scene["colors"])
    proj = reference.projection(g, scene["viewmats"], scene["Ks"], st)
    C, N = proj.depths.shape
    opac = g.opacities.expand(C, N)
    isect = reference.isect_tiles(proj.means2d, proj.radii, proj.depths, proj.conics, opac, st)
    starts = isect.offsets.reshape(-1).long()
    counts = torch.cat([starts[1:], starts.new_tensor([isect.n_isects])]) - starts
    tiles = (counts > 0).nonzero(as_tuple=True)[0]
    tiles = tiles[torch.argsort(counts[tiles], stable=True)]
    sorted_counts = counts[tiles].tolist()
    ts, D = st.tile_size, proj.colors.shape[-1]
    image = torch.cat(
        [
            proj.colors.new_zeros(C * st.tile_w * st.tile_h, ts * ts, D),
            proj.colors.new_ones(C * st.tile_w * st.tile_h, ts * ts, 1),
        ],
        -1,
    )
    for a, b in _chunks(sorted_counts, ts**2, chunk_elements):
        tl = tiles[a:b]
        slot = torch.arange(sorted_counts[b - 1])
        real = slot[None] < counts[tl, None]
        entry = torch.clamp(starts[tl, None] + slot[None], max=isect.n_isects - 1)
        ids = torch.where(real, isect.flatten_ids.long()[entry], 0)
        image = image.index_copy(0, tl, _blend_chunk(tl, ids, real, proj, opac, st))
    image = image.reshape(C, st.tile_h, st.tile_w, ts, ts, D + 1).permute(0, 1, 3, 2, 4, 5)
    image = image.reshape(C, st.tile_h * ts, st.tile_w * ts, D + 1)[:, : st.height, : st.width]
    return image[..., :D], 1 - image[..., D:]
