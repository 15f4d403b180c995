"""Pure-PyTorch reference of every rigged_gaussians operation (the oracle).

Forward values follow the CUDA/C++ kernels operation by operation (the shared math in
``csrc/include/rg/*.h``, ``csrc/cpu/*.cpp``, ``csrc/cuda/*.cu``) and gsplat's conventions: OpenCV
cameras, ``viewmats`` world->camera, wxyz quaternions, pixel centres at +0.5, ``eps2d`` added to
the 2D covariance, per-axis radius ``ceil(3.33 sigma)``, 16x16 tiles with a per-tile depth sort,
``alpha = min(0.999, o exp(-sigma))`` with ``sigma < 0`` or ``alpha < 1/255`` skipped, and a pixel
stops before the Gaussian that would bring its transmittance to ``<= 1e-4``. Gradients come from
autograd; culled Gaussians get exactly zero gradient (as the kernels, which skip them).

Works in float32 and float64 on any device; meant for tests (tens to a few hundred Gaussians at
up to ~128^2 pixels), not for training.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from rigged_gaussians._types import Deformed, RasterMeta, TriangleFrames

__all__ = [
    "deform",
    "project",
    "quat_to_rotmat",
    "rasterize",
    "rasterize_to_pixels",
    "render_rigged",
    "rotmat_to_quat",
    "sh_basis",
    "spherical_harmonics",
    "triangle_frames",
]

ALPHA_MAX = 0.999
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4
RADIUS_EXTEND = 3.33
_SH_C0 = 0.2820947917738781
_SH_C1 = 0.48860251190292


# ----------------------------------------------------------------------------- small math
def _safe_norm(x: Tensor, floor: float = 1e-24) -> Tensor:
    """``sqrt(max(x.x, floor))`` over the last axis (keeps the axis)."""
    return torch.sqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=floor))


def quat_normalize(q: Tensor) -> Tensor:
    """``q / sqrt(max(|q|^2, 1e-24))`` for wxyz quaternions ``[..., 4]``."""
    return q / _safe_norm(q)


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` of (already normalised) wxyz quaternions ``[..., 4]``."""
    w, x, y, z = q.unbind(-1)
    r = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return r.reshape(*q.shape[:-1], 3, 3)


def quat_mul(p: Tensor, q: Tensor) -> Tensor:
    """Hamilton product ``p (x) q`` of wxyz quaternions ``[..., 4]``."""
    pw, px, py, pz = p.unbind(-1)
    qw, qx, qy, qz = q.unbind(-1)
    return torch.stack(
        [
            pw * qw - px * qx - py * qy - pz * qz,
            pw * qx + px * qw + py * qz - pz * qy,
            pw * qy - px * qz + py * qw + pz * qx,
            pw * qz + px * qy - py * qx + pz * qw,
        ],
        dim=-1,
    )


def rotmat_to_quat(R: Tensor) -> Tensor:
    """wxyz quaternions ``[..., 4]`` of rotation matrices ``[..., 3, 3]`` (Shepperd's method).

    Branch as the kernels: the trace branch when ``tr > 0``, else the largest diagonal entry;
    ``r = sqrt(max(1 + sum_i s_i R_ii, 1e-12))``, the big component ``r/2`` and the three others
    ``(signed sum of two off-diagonal entries) / (2 r)``.
    """
    m = R.reshape(*R.shape[:-2], 9)
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = m.unbind(-1)

    def rr(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        return torch.sqrt(torch.clamp(1 + a + b + c, min=1e-12))

    r_w = rr(r00, r11, r22)
    q_w = torch.stack(
        [0.5 * r_w, (r21 - r12) / (2 * r_w), (r02 - r20) / (2 * r_w), (r10 - r01) / (2 * r_w)], -1
    )
    r_x = rr(r00, -r11, -r22)
    q_x = torch.stack(
        [(r21 - r12) / (2 * r_x), 0.5 * r_x, (r01 + r10) / (2 * r_x), (r02 + r20) / (2 * r_x)], -1
    )
    r_y = rr(-r00, r11, -r22)
    q_y = torch.stack(
        [(r02 - r20) / (2 * r_y), (r01 + r10) / (2 * r_y), 0.5 * r_y, (r12 + r21) / (2 * r_y)], -1
    )
    r_z = rr(-r00, -r11, r22)
    q_z = torch.stack(
        [(r10 - r01) / (2 * r_z), (r02 + r20) / (2 * r_z), (r12 + r21) / (2 * r_z), 0.5 * r_z], -1
    )
    tr = r00 + r11 + r22
    use_w = (tr > 0)[..., None]
    use_x = ((r00 > r11) & (r00 > r22))[..., None]
    use_y = (r11 > r22)[..., None]
    return torch.where(use_w, q_w, torch.where(use_x, q_x, torch.where(use_y, q_y, q_z)))


# ----------------------------------------------------------------------------- frames / deform
def triangle_frames(vertices: Tensor, faces: Tensor) -> TriangleFrames:
    """Triangle frames of ``vertices [B,V,3]`` and ``faces [F,3]`` (any integer dtype).

    ``T = (v0+v1+v2)/3``; ``e = v1-v0``, ``c = e x (v2-v0)``; ``t = e/|e|``, ``n = c/|c|``,
    ``b = t x n``; ``R = [t | n | b]`` (columns); ``sqrt_area = sqrt(max(|c|/2, 1e-12))``; norms
    are ``sqrt(max(x.x, 1e-24))``. Returns ``TriangleFrames(centroids [B,F,3], rotations
    [B,F,3,3], sqrt_areas [B,F])``, differentiable w.r.t. ``vertices``.
    """
    f = faces.long()
    v0, v1, v2 = vertices[:, f[:, 0]], vertices[:, f[:, 1]], vertices[:, f[:, 2]]
    centroids = (1.0 / 3.0) * (v0 + v1 + v2)
    e = v1 - v0
    e2 = v2 - v0
    c = torch.linalg.cross(e, e2, dim=-1)
    t = e / _safe_norm(e)
    nc = _safe_norm(c)
    n = c / nc
    b = torch.linalg.cross(t, n, dim=-1)
    rotations = torch.stack([t, n, b], dim=-1)
    sqrt_areas = torch.sqrt(torch.clamp(0.5 * nc[..., 0], min=1e-12))
    return TriangleFrames(centroids, rotations, sqrt_areas)


def deform(
    means: Tensor, quats: Tensor, log_scales: Tensor, face_ids: Tensor, frames: TriangleFrames
) -> Deformed:
    """Deform local Gaussians ``[N,.]`` bound to triangles ``face_ids [N]`` by ``B`` poses' frames.

    ``mu' = sqrt(S) R mu + T``, ``q' = quat(R) (x) q`` (``q`` not normalised here),
    ``s' = sqrt(S) exp(log_s)``. Returns ``Deformed(means [B,N,3], quats [B,N,4], scales
    [B,N,3])``, differentiable w.r.t. the local parameters and the frames.
    """
    fid = face_ids.long()
    R = frames.rotations[:, fid]  # [B,N,3,3]
    T = frames.centroids[:, fid]  # [B,N,3]
    sa = frames.sqrt_areas[:, fid][..., None]  # [B,N,1]
    out_means = T + sa * (R @ means[None, :, :, None])[..., 0]
    out_quats = quat_mul(rotmat_to_quat(R), quats[None].expand(R.shape[0], -1, -1))
    out_scales = sa * torch.exp(log_scales)[None]
    return Deformed(out_means, out_quats, out_scales)


# ----------------------------------------------------------------------------- spherical harmonics
def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis (gsplat's constants and signs) of unit directions ``[..., 3]``.

    Returns ``[..., (degree+1)^2]`` for ``degree`` in 0..3.
    """
    if degree not in (0, 1, 2, 3):
        raise ValueError(f"sh_degree must be 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, _SH_C0)]
    if degree >= 1:
        out += [-_SH_C1 * y, _SH_C1 * z, -_SH_C1 * x]
    if degree >= 2:
        z2 = z * z
        fc1 = x * x - y * y
        fs1 = 2 * x * y
        out += [
            0.5462742152960395 * fs1,
            -1.092548430592079 * z * y,
            0.9461746957575601 * z2 - 0.3153915652525201,
            -1.092548430592079 * z * x,
            0.5462742152960395 * fc1,
        ]
    if degree >= 3:
        t0 = -2.285228997322329 * z2 + 0.4570457994644658
        t1 = 1.445305721320277 * z
        fc2 = x * fc1 - y * fs1
        fs2 = x * fs1 + y * fc1
        out += [
            -0.5900435899266435 * fs2,
            t1 * fs1,
            t0 * y,
            z * (1.865881662950577 * z2 - 1.119528997770346),
            t0 * x,
            t1 * fc1,
            -0.5900435899266435 * fc2,
        ]
    return torch.stack(out, dim=-1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Colours ``max(sum_k c_k Y_k(d/|d|) + 0.5, 0)`` from ``dirs [..., 3]`` and ``coeffs [..., K, 3]``.

    Only the first ``(degree+1)^2`` of the ``K`` coefficients are used.
    """
    nb = (degree + 1) ** 2
    d = dirs / _safe_norm(dirs)
    Y = sh_basis(degree, d)  # [..., nb]
    v = (Y[..., :, None] * coeffs[..., :nb, :]).sum(-2)
    return torch.relu(v + 0.5)


# ----------------------------------------------------------------------------- projection
def _persp_cov2d(pc: Tensor, covc: Tensor, Ks: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """EWA projection of camera-space means ``[C,N,3]`` / covariances ``[C,N,3,3]``.

    Returns ``means2d [C,N,2]`` and ``cov2d [C,N,2,2]`` (before ``eps2d``), with gsplat's clamp
    of ``t.x/t.z`` to ``1.3 tan(fov/2)`` beyond the principal point in the Jacobian.
    """
    fx, fy = Ks[:, 0, 0][:, None], Ks[:, 1, 1][:, None]
    cx, cy = Ks[:, 0, 2][:, None], Ks[:, 1, 2][:, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_xp = (width - cx) / fx + 0.3 * tan_fovx
    lim_xn = cx / fx + 0.3 * tan_fovx
    lim_yp = (height - cy) / fy + 0.3 * tan_fovy
    lim_yn = cy / fy + 0.3 * tan_fovy
    x, y, z = pc.unbind(-1)
    rz = 1.0 / z
    rz2 = rz * rz
    tx = z * torch.minimum(lim_xp, torch.maximum(-lim_xn, x * rz))
    ty = z * torch.minimum(lim_yp, torch.maximum(-lim_yn, y * rz))
    zero = torch.zeros_like(z)
    J = torch.stack([fx * rz, zero, -fx * tx * rz2, zero, fy * rz, -fy * ty * rz2], dim=-1).reshape(
        *z.shape, 2, 3
    )
    cov2d = J @ covc @ J.transpose(-1, -2)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)
    return means2d, cov2d


def project(
    means: Tensor,
    rotmats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Project world Gaussians ``means [C,N,3]``, ``rotmats [C,N,3,3]``, ``scales [C,N,3]``.

    ``viewmats [C,4,4]`` world->camera, ``Ks [C,3,3]``. Returns ``radii [C,N,2]`` int32,
    ``means2d [C,N,2]``, ``depths [C,N]`` and ``conics [C,N,3]`` (upper triangle of the inverse
    2D covariance). A Gaussian is culled (radii 0, means2d and conics 0, zero gradient) when its
    depth is outside ``[near_plane, far_plane]`` (or NaN), the 2D covariance is not positive
    definite, both radii are ``<= radius_clip``, its box is entirely off-screen or anything is
    non-finite. ``depths`` is the camera z for every Gaussian (differentiable only where kept).
    """
    Rc = viewmats[:, None, :3, :3]
    tc = viewmats[:, None, :3, 3]

    def core(m: Tensor, R: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        pc = (Rc @ m[..., None])[..., 0] + tc
        M = R * s[..., None, :]
        cov = M @ M.transpose(-1, -2)
        covc = Rc @ cov @ Rc.transpose(-1, -2)
        m2d, cov2d = _persp_cov2d(pc, covc, Ks, width, height)
        ca = cov2d[..., 0, 0] + eps2d
        cb = cov2d[..., 0, 1]
        cc = cov2d[..., 1, 1] + eps2d
        return pc, m2d, ca, cb, cc

    with torch.no_grad():
        pc, m2d, ca, cb, cc = core(means, rotmats, scales)
        z = pc[..., 2]
        det = ca * cc - cb * cb
        inv = 1.0 / det
        rx = torch.ceil(RADIUS_EXTEND * torch.sqrt(ca))
        ry = torch.ceil(RADIUS_EXTEND * torch.sqrt(cc))
        valid = (z >= near_plane) & (z <= far_plane) & (det > 0)
        valid &= ~((rx <= radius_clip) & (ry <= radius_clip))
        mx, my = m2d[..., 0], m2d[..., 1]
        offscreen = (mx + rx <= 0) | (mx - rx >= width) | (my + ry <= 0) | (my - ry >= height)
        valid &= ~offscreen
        valid &= torch.isfinite(mx) & torch.isfinite(my) & torch.isfinite(inv)
        valid &= torch.isfinite(rx) & torch.isfinite(ry)
        radii = torch.stack([rx, ry], dim=-1).clamp(max=2**30)  # no int32 wrap-around
        radii = torch.where(valid[..., None], radii, torch.zeros_like(radii)).to(torch.int32)
        z_raw = z

    # Recompute with culled Gaussians replaced by a harmless one, so their gradient is exactly 0
    # and no inf/NaN of a culled Gaussian can leak into the backward pass.
    safe_rot = torch.eye(3, dtype=means.dtype, device=means.device)
    safe_scale = torch.full((3,), 1e-3, dtype=means.dtype, device=means.device)
    # a point at z = 1 in front of every camera: mean = R^T (e3 - t)
    e3 = torch.tensor([0.0, 0.0, 1.0], dtype=means.dtype, device=means.device)
    safe_mean = (viewmats[:, :3, :3].transpose(-1, -2) @ (e3 - viewmats[:, :3, 3])[..., None])[..., 0]
    v = valid[..., None]
    m_s = torch.where(v, means, safe_mean[:, None, :].expand_as(means))
    R_s = torch.where(v[..., None], rotmats, safe_rot.expand_as(rotmats))
    s_s = torch.where(v, scales, safe_scale.expand_as(scales))
    pc, m2d, ca, cb, cc = core(m_s, R_s, s_s)
    det = ca * cc - cb * cb
    inv = 1.0 / det
    conics = torch.stack([cc * inv, -cb * inv, ca * inv], dim=-1)
    zeros = torch.zeros((), dtype=means.dtype, device=means.device)
    means2d = torch.where(v, m2d, zeros)
    conics = torch.where(v, conics, zeros)
    depths = torch.where(valid, pc[..., 2], z_raw)
    return radii, means2d, depths, conics


# ----------------------------------------------------------------------------- tiles + pixels
class _AbsGradTap(torch.autograd.Function):
    """Identity on per-(pixel, Gaussian) offsets whose backward adds ``|grad|`` per Gaussian."""

    @staticmethod
    def forward(ctx: Any, d: Tensor, ids: Tensor, absgrad: Tensor) -> Tensor:
        ctx.save_for_backward(ids)
        ctx.absgrad = absgrad
        return d.view_as(d)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple:
        (ids,) = ctx.saved_tensors
        # g: [T,P,G,2]; per-pixel absolute values summed over the pixels of each (tile, Gaussian)
        a = g.abs().sum(1).reshape(-1, 2)
        ctx.absgrad.view(-1, 2).index_add_(0, ids.reshape(-1), a.to(ctx.absgrad.dtype))
        return g, None, None


def isect_tiles(
    radii: Tensor, means2d: Tensor, depths: Tensor, tile_size: int, tile_w: int, tile_h: int
) -> tuple[Tensor, Tensor]:
    """Tile intersections, sorted by (camera, tile, depth).

    Tile range of a kept Gaussian: ``[floor((m - r)/ts), ceil((m + r)/ts))`` clamped to the
    grid, per axis (as ``isect.cu``). Returns ``tile_ids [M]`` (``c * tile_h * tile_w + tile``)
    and ``flatten_ids [M]`` (``c * N + n``), both int64, counted in int64 (no overflow).
    """
    C, N = depths.shape
    dev = depths.device
    keep = (radii > 0).any(-1)
    cidx, nidx = keep.nonzero(as_tuple=True)
    m = means2d.detach()[cidx, nidx]
    r = radii[cidx, nidx].to(m.dtype)
    ts = float(tile_size)
    x0 = torch.clamp(torch.floor((m[:, 0] - r[:, 0]) / ts), 0, tile_w).long()
    y0 = torch.clamp(torch.floor((m[:, 1] - r[:, 1]) / ts), 0, tile_h).long()
    x1 = torch.clamp(torch.ceil((m[:, 0] + r[:, 0]) / ts), 0, tile_w).long()
    y1 = torch.clamp(torch.ceil((m[:, 1] + r[:, 1]) / ts), 0, tile_h).long()
    w = x1 - x0
    counts = w * (y1 - y0)
    total = int(counts.sum().item()) if counts.numel() else 0
    if total == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        return empty, empty
    src = torch.repeat_interleave(torch.arange(counts.numel(), device=dev), counts)
    starts = torch.cumsum(counts, 0) - counts
    k = torch.arange(total, device=dev) - starts[src]
    tx = x0[src] + k % w[src]
    ty = y0[src] + torch.div(k, w[src], rounding_mode="floor")
    tile_ids = cidx[src] * (tile_w * tile_h) + ty * tile_w + tx
    flat = (cidx * N + nidx)[src]
    d = depths.detach()[cidx, nidx][src]
    order = torch.argsort(d, stable=True)
    order = order[torch.argsort(tile_ids[order], stable=True)]
    return tile_ids[order], flat[order]


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    features: Tensor,
    opacities: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    tile_size: int = 16,
    backgrounds: Tensor | None = None,
    absgrad: Tensor | None = None,
    chunk_elements: int = 1 << 22,
) -> tuple[Tensor, Tensor]:
    """Alpha-blend projected Gaussians ``[C,N,.]`` front to back, tile by tile.

    ``features [C,N,D]``, ``opacities [C,N]`` activated, ``backgrounds [C,D]``. Per pixel, the
    Gaussians of its tile in depth order: ``alpha = min(0.999, o exp(-sigma))`` with
    ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy`` (``dx = mean - pixel centre``), skipped when
    ``sigma < 0`` or ``alpha < 1/255``; the pixel stops before the Gaussian that would bring
    ``T <= 1e-4``. Returns ``features [C,H,W,D]`` (plus ``T * background``) and ``alphas
    [C,H,W,1] = 1 - T``. ``absgrad [C,N,2]`` (optional) receives the summed absolute per-pixel
    gradients of ``means2d`` during backward.
    """
    C, N, D = features.shape
    dev, dt = features.device, features.dtype
    tile_w = math.ceil(width / tile_size)
    tile_h = math.ceil(height / tile_size)
    n_tiles = tile_w * tile_h
    P = tile_size * tile_size
    tile_ids, flat = isect_tiles(radii, means2d, depths, tile_size, tile_w, tile_h)

    bg = backgrounds if backgrounds is not None else torch.zeros(C, D, dtype=dt, device=dev)
    # every tile starts as background with T = 1; tiles with Gaussians are overwritten
    base_feat = bg[:, None, None, :].expand(C, n_tiles, P, D).reshape(C * n_tiles, P, D)
    base_T = torch.ones(C * n_tiles, P, dtype=dt, device=dev)
    if tile_ids.numel() == 0:
        out_feat, out_T = base_feat, base_T
    else:
        counts = torch.bincount(tile_ids, minlength=C * n_tiles)
        offsets = torch.cumsum(counts, 0) - counts
        pos = torch.arange(tile_ids.numel(), device=dev) - offsets[tile_ids]
        active = (counts > 0).nonzero(as_tuple=True)[0]
        G = int(counts.max().item())
        table = torch.full((C * n_tiles, G), -1, dtype=torch.long, device=dev)
        table[tile_ids, pos] = flat
        m2 = means2d.reshape(C * N, 2)
        con = conics.reshape(C * N, 3)
        op = opacities.reshape(C * N)
        ft = features.reshape(C * N, D)
        iy, ix = torch.meshgrid(
            torch.arange(tile_size, device=dev), torch.arange(tile_size, device=dev), indexing="ij"
        )
        iy, ix = iy.reshape(-1), ix.reshape(-1)
        # tiles in order of their Gaussian count, in chunks of about chunk_elements [T,P,G]
        # entries, each padded only to its own largest count
        active = active[torch.argsort(counts[active], stable=True)]
        act_counts = counts[active].tolist()
        chunks: list[tuple[int, int, int]] = []
        start = 0
        while start < len(act_counts):
            end = start + 1
            while end < len(act_counts) and (end + 1 - start) * P * act_counts[end] <= chunk_elements:
                end += 1
            chunks.append((start, end, act_counts[end - 1]))
            start = end
        feats_out, T_out = [], []
        for s, e, Gc in chunks:
            tl = active[s:e]
            cam = torch.div(tl, n_tiles, rounding_mode="floor")
            tile = tl % n_tiles
            ty = torch.div(tile, tile_w, rounding_mode="floor")
            tx = tile % tile_w
            px = (tx[:, None] * tile_size + ix[None]).to(dt) + 0.5  # [T,P]
            py = (ty[:, None] * tile_size + iy[None]).to(dt) + 0.5
            ids = table[tl, :Gc]  # [T,G]
            real = ids >= 0
            ids_s = ids.clamp(min=0)

            def gather(x: Tensor, ids_s: Tensor = ids_s, real: Tensor = real) -> Tensor:
                # padding slots read Gaussian 0 and are zeroed (no NaN of a culled one leaks)
                g = x[ids_s]
                mask = real.reshape(*real.shape, *([1] * (g.dim() - 2)))
                return torch.where(mask, g, torch.zeros((), dtype=g.dtype, device=g.device))

            pix = torch.stack([px, py], dim=-1)  # [T,P,2]
            d = gather(m2)[:, None, :, :] - pix[:, :, None, :]  # [T,P,G,2]
            if absgrad is not None:
                d = _AbsGradTap.apply(d, ids_s, absgrad)
            dx, dy = d[..., 0], d[..., 1]
            cg = gather(con)[:, None]  # [T,1,G,3]
            sigma = 0.5 * (cg[..., 0] * dx * dx + cg[..., 2] * dy * dy) + cg[..., 1] * dx * dy
            alpha = torch.clamp(gather(op)[:, None, :] * torch.exp(-sigma), max=ALPHA_MAX)
            skip = (sigma < 0) | (alpha < ALPHA_MIN) | ~real[:, None, :]
            alpha = torch.where(skip, torch.zeros((), dtype=dt, device=dev), alpha)
            with torch.no_grad():
                contrib = torch.cumprod(1 - alpha, dim=-1) > TRANSMITTANCE_MIN
            alpha = torch.where(contrib, alpha, torch.zeros((), dtype=dt, device=dev))
            T_incl = torch.cumprod(1 - alpha, dim=-1)
            T_excl = torch.cat([torch.ones_like(T_incl[..., :1]), T_incl[..., :-1]], dim=-1)
            wgt = alpha * T_excl  # [T,P,G]
            T_fin = T_incl[..., -1]  # [T,P]
            acc = torch.einsum("tpg,tgd->tpd", wgt, gather(ft))
            feats_out.append(acc + T_fin[..., None] * bg[cam][:, None, :])
            T_out.append(T_fin)
        out_feat = base_feat.index_copy(0, active, torch.cat(feats_out))
        out_T = base_T.index_copy(0, active, torch.cat(T_out))

    def to_image(x: Tensor) -> Tensor:
        k = x.shape[-1]
        x = x.reshape(C, tile_h, tile_w, tile_size, tile_size, k).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(C, tile_h * tile_size, tile_w * tile_size, k)[:, :height, :width]

    render = to_image(out_feat)
    alphas = 1 - to_image(out_T[..., None])
    return render, alphas


# ----------------------------------------------------------------------------- public ops
def _per_camera(t: Tensor, C: int, dims: int) -> Tensor:
    """Broadcast a per-Gaussian tensor with ``dims`` dims (no camera axis) to ``[C, ...]``."""
    return t.expand(C, *t.shape) if t.dim() == dims else t


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    tile_size: int = 16,
    absgrad: Tensor | None = None,
) -> tuple[Tensor, Tensor, RasterMeta]:
    """Render world-space Gaussians (gsplat's ``rasterization`` conventions), pure PyTorch.

    ``means [N,3]|[C,N,3]``, ``quats [N,4]|[C,N,4]`` wxyz (normalised here), ``scales
    [N,3]|[C,N,3]`` linear, ``opacities [N]|[C,N]`` activated, ``colors [N,D]|[C,N,D]`` used as
    given, or SH coefficients ``[N,K,3]|[C,N,K,3]`` when ``sh_degree`` is set (colour
    ``max(SH + 0.5, 0)``, view direction from the camera centre). ``viewmats [C,4,4]``
    world->camera (OpenCV), ``Ks [C,3,3]``, ``backgrounds [C,D]``.

    Returns ``rgb [C,H,W,D]``, ``alpha [C,H,W,1]`` and :class:`RasterMeta` (expected depth,
    radii, means2d, depths, visible). No argument checks: use ``rigged_gaussians.rasterize``.
    """
    C = viewmats.shape[0]
    m = _per_camera(means, C, 2)
    q = _per_camera(quats, C, 2)
    s = _per_camera(scales, C, 2)
    R = quat_to_rotmat(quat_normalize(q))
    return _render_world(
        m, R, s, opacities, colors, viewmats, Ks, width, height, sh_degree, backgrounds,
        near_plane, far_plane, eps2d, radius_clip, tile_size, absgrad,
    )  # fmt: skip


def _render_world(
    means: Tensor,
    rotmats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None,
    backgrounds: Tensor | None,
    near_plane: float,
    far_plane: float,
    eps2d: float,
    radius_clip: float,
    tile_size: int,
    absgrad: Tensor | None,
) -> tuple[Tensor, Tensor, RasterMeta]:
    """Project ``[C,N,.]`` world Gaussians (rotation matrices) and rasterize them."""
    C, N = means.shape[:2]
    radii, means2d, depths, conics = project(
        means, rotmats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d, radius_clip
    )
    if sh_degree is not None:
        sh = _per_camera(colors, C, 3)
        campos = -(viewmats[:, :3, :3].transpose(-1, -2) @ viewmats[:, :3, 3:4])[..., 0]  # [C,3]
        dirs = means - campos[:, None, :]
        # culled Gaussians (possibly non-finite) get a harmless direction and zero gradient
        dirs = torch.where((radii > 0).all(-1)[..., None], dirs, torch.ones_like(dirs))
        cols = spherical_harmonics(sh_degree, dirs, sh)
    else:
        cols = _per_camera(colors, C, 2)
    opac = _per_camera(opacities, C, 1)
    feats = torch.cat([cols, depths[..., None]], dim=-1)
    bg = None
    if backgrounds is not None:
        bg = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
    render, alpha = rasterize_to_pixels(
        means2d, conics, feats, opac, radii, depths, width, height, tile_size, bg, absgrad
    )
    rgb = render[..., :-1]
    depth = render[..., -1:] / alpha.clamp(min=1e-10)
    visible = (radii > 0).all(dim=-1)
    meta = RasterMeta(depth, radii, means2d, depths, visible, int(width), int(height))
    return rgb, alpha, meta


def render_rigged(
    vertices: Tensor,
    faces: Tensor,
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    face_ids: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    tile_size: int = 16,
    absgrad: Tensor | None = None,
) -> tuple[Tensor, Tensor, RasterMeta]:
    """Render local Gaussians bound to the triangles of ``vertices [B,V,3]`` / ``faces [F,3]``.

    Local ``means [N,3]``, ``quats [N,4]``, ``log_scales [N,3]``, activated ``opacities [N]``,
    ``colors [N,3]`` or SH ``[N,K,3]``, ``face_ids [N]``; cameras ``viewmats [B,C,4,4]``, ``Ks
    [B,C,3,3]``, ``backgrounds [B,C,3]``. World Gaussians are formed as the fused kernels do:
    ``mu' = sqrt(S) R_f mu + T``, rotation ``R_f R(q/|q|)``, scale ``sqrt(S) exp(log_s)``.

    Returns ``rgb [B,C,H,W,3]``, ``alpha [B,C,H,W,1]`` and :class:`RasterMeta` whose per-camera
    entries are flattened over ``B*C`` (camera ``b*C + c``) and ``depth`` is ``[B,C,H,W,1]``.
    """
    B, Cp = viewmats.shape[:2]
    fr = triangle_frames(vertices, faces)
    fid = face_ids.long()
    Rf = fr.rotations[:, fid]  # [B,N,3,3]
    sa = fr.sqrt_areas[:, fid][..., None]  # [B,N,1]
    wm = fr.centroids[:, fid] + sa * (Rf @ means[None, :, :, None])[..., 0]
    wR = Rf @ quat_to_rotmat(quat_normalize(quats))[None]
    ws = sa * torch.exp(log_scales)[None]

    def per_cam(t: Tensor) -> Tensor:
        return t[:, None].expand(B, Cp, *t.shape[1:]).reshape(B * Cp, *t.shape[1:])

    bg = backgrounds.reshape(B * Cp, -1) if backgrounds is not None else None
    rgb, alpha, meta = _render_world(
        per_cam(wm), per_cam(wR), per_cam(ws), opacities, colors, viewmats.reshape(B * Cp, 4, 4),
        Ks.reshape(B * Cp, 3, 3), width, height, sh_degree, bg, near_plane, far_plane, eps2d,
        radius_clip, tile_size, absgrad,
    )  # fmt: skip
    H, W = height, width
    meta.depth = meta.depth.reshape(B, Cp, H, W, 1)
    return rgb.reshape(B, Cp, H, W, -1), alpha.reshape(B, Cp, H, W, 1), meta
