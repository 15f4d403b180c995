"""The reference's tile stages, pure PyTorch (re-exported by :mod:`rigged_gaussians.reference`).

- :func:`isect_tiles`: the tiles of each projected Gaussian (gsplat's box; with
  ``tight_tiles`` the exact ellipse/tile test of ``csrc/include/rg/isect.h``, the same double
  precision formulas), sorted by camera, tile, then depth (ties by index). Its result is the
  native stage's, entry for entry, on the same float32 inputs.
- :func:`rasterize_to_pixels`: dense blending. Every non-empty tile's list is padded to the
  longest one and all tiles are blended at once as ``[tiles, pixels, list]`` tensors; colours
  are summed front to back (a cumulative sum: the kernels' order). A pair the tight test drops
  has ``alpha`` exactly 0 here too, so the result is the same bit for bit with or without it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rigged_gaussians._types import Intersections
from rigged_gaussians.settings import RasterSettings

__all__ = ["ALPHA_MAX", "ALPHA_MIN", "TRANSMITTANCE_MIN", "isect_tiles", "rasterize_to_pixels"]

ALPHA_MAX = 0.999
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4
_ALPHA_MIN_F32 = float(torch.tensor(ALPHA_MIN, dtype=torch.float32))  # the kernels' 1.f / 255.f
_CONIC_MARGIN = 1e-5  # rg::kConicMargin
_LEVEL_MARGIN = 1e-4  # rg::kLevelMargin


def _boxes(m: Tensor, r: Tensor, st: RasterSettings) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """gsplat's tile box ``[floor((m - r)/ts), ceil((m + r)/ts))`` per axis, clamped to the grid
    (``m [K,2]`` in its own dtype, as ``rg::tile_rect`` in float32)."""
    ts = float(st.tile_size)
    rf = r.to(m.dtype)

    def edge(v: Tensor, hi: int) -> Tensor:
        return torch.clamp(v, 0, hi).long()

    x0 = edge(torch.floor((m[:, 0] - rf[:, 0]) / ts), st.tile_w)
    y0 = edge(torch.floor((m[:, 1] - rf[:, 1]) / ts), st.tile_h)
    x1 = edge(torch.ceil((m[:, 0] + rf[:, 0]) / ts), st.tile_w)
    y1 = edge(torch.ceil((m[:, 1] + rf[:, 1]) / ts), st.tile_h)
    return x0, y0, x1, y1


def _ellipse_u(v: Tensor, side: float, B: Tensor, inv_a: Tensor, s: Tensor, A: Tensor, det: Tensor) -> Tensor:
    """``rg::isect_row``'s boundary ``u`` at height ``v`` (right or left branch)."""
    root = torch.sqrt(torch.clamp(s * A - det * v * v, min=0.0))  # rg::ellipse_root
    return (-B * v + side * root) * inv_a


def _row_spans(
    m: Tensor,
    conics: Tensor,
    opac: Tensor,
    rows_of: Tensor,
    ty: Tensor,
    x0: Tensor,
    x1: Tensor,
    st: RasterSettings,
) -> tuple[Tensor, Tensor]:
    """``rg::isect_row`` for each (Gaussian, tile row): the tiles ``[tx0, tx1)`` of row ``ty``
    the ellipse may reach. ``rows_of`` maps rows to Gaussians; ``m``, ``conics``, ``opac`` are
    per Gaussian (float64). Rows of non-exact Gaussians keep the whole box row."""
    A0, B0, C0 = conics.unbind(-1)
    # Equal to the native lists entry for entry: the same double formulas, elementwise and
    # correctly rounded (no reduction whose order a vector width could change; the C++ build has
    # -ffp-contract=off), except log: torch's and glibc's differ by 1 ulp for ~1e-4 of inputs
    # (the same with ATEN_CPU_CAPABILITY=default, avx2, avx512). That moves a span edge by ~1e-14
    # px, which changes a tile only if the edge sits that close to a pixel-column boundary: no
    # structure puts it there (mean + sqrt(...) is generic), and either choice is conservative.
    t = torch.log(opac / _ALPHA_MIN_F32)
    s = 2.0 * (t + _LEVEL_MARGIN)
    A = A0 - _CONIC_MARGIN * (A0.abs() + B0.abs())
    C = C0 - _CONIC_MARGIN * (C0.abs() + B0.abs())
    det = A * C - B0 * B0
    finite = torch.isfinite(t) & torch.isfinite(A0) & torch.isfinite(B0) & torch.isfinite(C0)
    exact = (finite & (s > 0) & (A > 0) & (C > 0) & (det > 0))[rows_of]
    A, B, C, det, s = (v[rows_of] for v in (A, B0, C, det, s))
    mx, my = m[rows_of, 0], m[rows_of, 1]
    ur = torch.sqrt(s * C / det)
    vr = -B * ur / C
    ts = float(st.tile_size)
    vmax = torch.sqrt(s * A / det)
    tyd = ty.to(torch.float64)
    v0 = torch.maximum(tyd * ts + 0.5 - my, -vmax)
    v1 = torch.minimum(torch.clamp((tyd + 1) * ts, max=float(st.height)) - 0.5 - my, vmax)
    vl, inv_a = -vr, 1.0 / A
    edge_r, edge_l = torch.where(vr < v0, v0, v1), torch.where(vl < v0, v0, v1)
    u_hi = torch.where((vr >= v0) & (vr <= v1), ur, _ellipse_u(edge_r, 1.0, B, inv_a, s, A, det))
    u_lo = torch.where((vl >= v0) & (vl <= v1), -ur, _ellipse_u(edge_l, -1.0, B, inv_a, s, A, det))
    # pixel columns clamped to the box's (one tile of slack), tiles by integer floor division
    lo, hi = ((x0 - 1) * st.tile_size).double(), ((x1 + 1) * st.tile_size).double()
    j0 = torch.ceil(torch.minimum(torch.maximum(mx + u_lo - 0.5, lo), hi))
    j1 = torch.floor(torch.minimum(torch.maximum(mx + u_hi - 0.5, lo), hi))
    t0 = torch.div(torch.nan_to_num(j0).long(), st.tile_size, rounding_mode="floor")
    t1 = torch.div(torch.nan_to_num(j1).long(), st.tile_size, rounding_mode="floor") + 1
    empty = exact & ~((v0 <= v1) & (j0 <= j1))
    tx0 = torch.where(exact & ~empty, torch.maximum(x0, t0), x0)
    tx1 = torch.where(exact & ~empty, torch.minimum(x1, t1), torch.where(empty, x0, x1))
    return tx0, tx1


def _never_blended(opac: Tensor, conics: Tensor) -> Tensor:
    """Gaussians the tight test drops from every tile (``alpha < 1/255`` everywhere)."""
    t = torch.log(opac / _ALPHA_MIN_F32)
    finite = torch.isfinite(t) & torch.isfinite(conics).all(-1)
    below = (opac >= 0) & (opac < _ALPHA_MIN_F32)
    return (~finite & below) | (finite & ~(2.0 * (t + _LEVEL_MARGIN) > 0))


def isect_tiles(
    means2d: Tensor, radii: Tensor, depths: Tensor, conics: Tensor, opacities: Tensor,
    settings: RasterSettings,
) -> Intersections:  # fmt: skip
    """The ``isect_tiles`` stage: tile intersections of projected Gaussians ``[C,N,·]``.

    Each kept Gaussian (``radii > 0``) lists the tiles of its box; with ``tight_tiles`` only those
    its ellipse ``alpha >= 1/255`` (with the kernels' safety margins) reaches. Returns
    :class:`Intersections` (offsets ``[C,tile_h,tile_w]`` int32, flatten_ids ``[M]`` int32 sorted by
    camera, tile, depth, index), counted in int64.
    """
    st = settings
    C, N = depths.shape
    dev = depths.device
    n_tiles = st.tile_w * st.tile_h
    cidx, nidx = (radii > 0).any(-1).nonzero(as_tuple=True)
    m = means2d.detach()[cidx, nidx]
    x0, y0, x1, y1 = _boxes(m, radii[cidx, nidx], st)
    opac = opacities.detach()[cidx, nidx].double()
    con = conics.detach()[cidx, nidx].double()
    if st.tight_tiles:
        y1 = torch.where(_never_blended(opac, con), y0, y1)
    # one entry per (Gaussian, tile row), then per tile
    rows_of = torch.repeat_interleave(torch.arange(len(cidx), device=dev), y1 - y0)
    row_start = torch.cumsum(y1 - y0, 0) - (y1 - y0)
    ty = y0[rows_of] + torch.arange(len(rows_of), device=dev) - row_start[rows_of]
    tx0, tx1 = x0[rows_of], x1[rows_of]
    if st.tight_tiles:
        tx0, tx1 = _row_spans(m.double(), con, opac, rows_of, ty, tx0, tx1, st)
    width = torch.clamp(tx1 - tx0, min=0)
    tile_of = torch.repeat_interleave(torch.arange(len(rows_of), device=dev), width)
    start = torch.cumsum(width, 0) - width
    tx = tx0[tile_of] + torch.arange(len(tile_of), device=dev) - start[tile_of]
    g = rows_of[tile_of]
    keys = cidx[g] * n_tiles + ty[tile_of] * st.tile_w + tx
    flat = cidx[g] * N + nidx[g]
    order = torch.argsort(depths.detach()[cidx, nidx][g], stable=True)
    order = order[torch.argsort(keys[order], stable=True)]
    counts = torch.bincount(keys, minlength=C * n_tiles)
    offsets = (torch.cumsum(counts, 0) - counts).to(torch.int32).reshape(C, st.tile_h, st.tile_w)
    return Intersections(offsets, flat[order].to(torch.int32))


class _AbsGradTap(torch.autograd.Function):
    """Identity on the per-(Gaussian, pixel) offsets ``dx, dy [T,G,P]`` whose backward adds the
    absolute gradients, summed over the pixels, to ``absgrad`` per Gaussian ``ids [T,G]``."""

    @staticmethod
    def forward(ctx: Any, dx: Tensor, dy: Tensor, ids: Tensor, absgrad: Tensor) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(ids)
        ctx.absgrad = absgrad
        return dx.view_as(dx), dy.view_as(dy)

    @staticmethod
    def backward(ctx: Any, gx: Tensor, gy: Tensor) -> tuple:
        (ids,) = ctx.saved_tensors
        a = torch.stack([gx.abs().sum(-1), gy.abs().sum(-1)], dim=-1).reshape(-1, 2)
        ctx.absgrad.view(-1, 2).index_add_(0, ids.reshape(-1), a.to(ctx.absgrad.dtype))
        return gx, gy, None, None


def blend_tiles(
    tiles: Tensor,
    ids: Tensor,
    real: Tensor,
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    backgrounds: Tensor,
    settings: RasterSettings,
    absgrad: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Blend ``tiles [T]`` (``camera * n_tiles + tile``) whose lists are ``ids [T,G]``
    (``c * N + n`` in depth order, valid where ``real [T,G]``): returns the colours ``[T,P,D]``
    (background included) and the final transmittance ``[T,P]`` of their ``P = tile_size^2``
    pixels (those beyond the image included). Tensors are ``[T,G,P]``: every per-pixel sum runs
    over the contiguous last axis, so a Gaussian's terms do not depend on its slot."""
    st = settings
    C, N, D = colors.shape
    dev, dt = colors.device, colors.dtype
    ts, n_tiles = st.tile_size, st.tile_w * st.tile_h
    cam = torch.div(tiles, n_tiles, rounding_mode="floor")
    tile = tiles % n_tiles
    iy, ix = torch.meshgrid(torch.arange(ts, device=dev), torch.arange(ts, device=dev), indexing="ij")
    px = ((tile % st.tile_w)[:, None] * ts + ix.reshape(1, -1)).to(dt) + 0.5  # [T,P]
    py = (torch.div(tile, st.tile_w, rounding_mode="floor")[:, None] * ts + iy.reshape(1, -1)).to(dt) + 0.5
    zero = torch.zeros((), dtype=dt, device=dev)

    def gather(x: Tensor) -> Tensor:
        # [T,G,...]; padding slots read Gaussian 0 and are zeroed (no NaN of a culled one leaks)
        g = x.reshape(C * N, *x.shape[2:])[ids]
        return torch.where(real.reshape(*real.shape, *([1] * (g.dim() - 2))), g, zero)

    m = gather(means2d)
    dx = m[..., 0:1] - px[:, None, :]  # [T,G,P]
    dy = m[..., 1:2] - py[:, None, :]
    if absgrad is not None:
        dx, dy = _AbsGradTap.apply(dx, dy, ids, absgrad)
    cg = gather(conics)[..., None]  # [T,G,3,1]
    sigma = 0.5 * (cg[:, :, 0] * dx * dx + cg[:, :, 2] * dy * dy) + cg[:, :, 1] * dx * dy
    alpha = torch.clamp(gather(opacities)[..., None] * torch.exp(-sigma), max=ALPHA_MAX)
    alpha = torch.where((sigma < 0) | (alpha < ALPHA_MIN) | ~real[..., None], zero, alpha)
    with torch.no_grad():  # the pixel stops before the Gaussian that brings T to <= 1e-4
        contrib = torch.cumprod(1 - alpha, dim=1) > TRANSMITTANCE_MIN
    alpha = torch.where(contrib, alpha, zero)
    T_incl = torch.cumprod(1 - alpha, dim=1)
    T_excl = torch.cat([torch.ones_like(T_incl[:, :1]), T_incl[:, :-1]], dim=1)
    weights = alpha * T_excl  # [T,G,P]
    # summed front to back as the kernels do (a padded or dropped slot adds an exact zero)
    acc = (weights[..., None] * gather(colors)[:, :, None, :]).cumsum(dim=1)[:, -1]  # [T,P,D]
    T_final = T_incl[:, -1]
    return acc + T_final[..., None] * backgrounds[cam][:, None, :], T_final


def rasterize_to_pixels(
    means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, backgrounds: Tensor | None,
    isect: Intersections, settings: RasterSettings, absgrad: Tensor | None = None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The ``rasterize_to_pixels`` stage: each tile's Gaussians (``isect``) blended front to back.

    ``means2d [C,N,2]``, ``conics [C,N,3]``, ``colors [C,N,D]``, ``opacities [C,N]``,
    ``backgrounds [C,D]``. Per pixel: ``alpha = min(0.999, o exp(-sigma))`` with ``sigma = 0.5 (a
    dx^2 + c dy^2) + b dx dy`` (``dx = mean - pixel centre``), skipped when ``sigma < 0`` or
    ``alpha < 1/255``; the pixel stops before the Gaussian that would bring ``T <= 1e-4``. Returns
    ``colors [C,H,W,D]`` (plus ``T * background``) and ``alphas [C,H,W,1] = 1 - T``. ``absgrad
    [C,N,2]`` (optional) receives the summed absolute per-pixel gradients of ``means2d``.
    """
    st = settings
    C, N, D = colors.shape
    dev, dt = colors.device, colors.dtype
    n_tiles, P, M = st.tile_w * st.tile_h, st.tile_size**2, isect.n_isects
    bg = backgrounds if backgrounds is not None else torch.zeros(C, D, dtype=dt, device=dev)
    starts = isect.offsets.reshape(-1).long()
    counts = torch.cat([starts[1:], starts.new_tensor([M])]) - starts
    feat = bg[:, None, None, :].expand(C, n_tiles, P, D).reshape(C * n_tiles, P, D)
    T = torch.ones(C * n_tiles, P, dtype=dt, device=dev)
    tiles = (counts > 0).nonzero(as_tuple=True)[0]
    if len(tiles):
        slot = torch.arange(int(counts.max()), device=dev)
        real = slot[None] < counts[tiles, None]
        entry = torch.clamp(starts[tiles, None] + slot[None], max=M - 1)
        ids = torch.where(real, isect.flatten_ids.long()[entry], 0)
        f, t = blend_tiles(tiles, ids, real, means2d, conics, colors, opacities, bg, st, absgrad)
        feat, T = feat.index_copy(0, tiles, f), T.index_copy(0, tiles, t)

    def to_image(x: Tensor) -> Tensor:
        k, ts = x.shape[-1], st.tile_size
        x = x.reshape(C, st.tile_h, st.tile_w, ts, ts, k).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(C, st.tile_h * ts, st.tile_w * ts, k)[:, : st.height, : st.width]

    return to_image(feat), 1 - to_image(T[..., None])
