"""Pure-PyTorch reference of every rigged_gaussians operation (the oracle).

It has the render stages of the native backends, with the same names and contracts
(:mod:`rigged_gaussians._glue`): :func:`triangle_frames`, :func:`deform`, :func:`projection`,
:func:`isect_tiles` and :func:`rasterize_to_pixels`. It is reached through the public functions
with ``backend="torch"`` (``rigged_gaussians.rasterize(..., backend="torch")``), which run these
stages through the same pipeline as the native backends (:mod:`rigged_gaussians._pipeline`), so
the render signature is written once, in :mod:`rigged_gaussians.api`.
Forward values follow the kernels operation by operation (the shared math in
``csrc/include/rg/*.h``) and gsplat's conventions: OpenCV cameras, ``viewmats`` world->camera,
wxyz quaternions, pixel centres at +0.5, ``eps2d`` added to the 2D covariance, per-axis radius
``ceil(3.33 sigma)`` (opacity-aware with ``tight_tiles``), tiles with a per-tile depth sort,
``alpha = min(0.999, o exp(-sigma))`` with ``sigma < 0`` or ``alpha < 1/255`` skipped, and a pixel
stops before the Gaussian that would bring its transmittance to ``<= 1e-4``. Gradients come from
autograd; culled Gaussians get exactly zero gradient (as the kernels, which skip them).

Works in float32 and float64 on any device; meant for tests (tens to a few hundred Gaussians at
up to ~128^2 pixels), not for training: the blending is dense (every tile padded to the longest
tile's list, all at once).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rigged_gaussians._reference_tiles import ALPHA_MIN, isect_tiles, rasterize_to_pixels
from rigged_gaussians._types import Deformed, Gaussians, Projected, TriangleFrames
from rigged_gaussians.settings import RasterSettings

__all__ = [
    "deform",
    "isect_tiles",
    "project",
    "projection",
    "quat_to_rotmat",
    "rasterize_to_pixels",
    "rotmat_to_quat",
    "sh_basis",
    "spherical_harmonics",
    "triangle_frames",
]

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


def _opacity_extent(opacities: Tensor) -> Tensor:
    """``min(3.33, sqrt(2 ln(o / (1/255))))`` (NaN opacities keep 3.33; ``project`` culls them)."""
    e = torch.sqrt(2.0 * torch.log(opacities / ALPHA_MIN))
    return torch.fmin(torch.full_like(e, RADIUS_EXTEND), e)


def project(
    means: Tensor,
    rotmats: Tensor,
    scales: Tensor,
    opacities: Tensor | None,
    viewmats: Tensor,
    Ks: Tensor,
    settings: RasterSettings,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Project world Gaussians ``means [C,N,3]``, ``rotmats [C,N,3,3]``, ``scales [C,N,3]``.

    ``opacities [C,N]`` (or ``None``: plain ``3.33 sigma`` radii), ``viewmats [C,4,4]``
    world->camera, ``Ks [C,3,3]``. Returns ``radii [C,N,2]`` int32, ``means2d [C,N,2]``,
    ``depths [C,N]`` and ``conics [C,N,3]`` (upper triangle of the inverse 2D covariance). A
    Gaussian is culled (radii 0, means2d and conics 0, zero gradient) when its depth is outside
    ``[near_plane, far_plane]`` (or NaN), the 2D covariance is not positive definite, both
    ``3.33 sigma`` radii are ``<= radius_clip``, its box is entirely off-screen, anything is
    non-finite (the opacity included), or (``tight_tiles``) its opacity is below 1/255. With
    ``tight_tiles`` the radii are opacity-aware, ``max(1, ceil(min(3.33, sqrt(2 ln(255 o)))
    sigma))`` (gsplat's CUDA rule). ``depths`` is the camera z for every Gaussian
    (differentiable only where kept).
    """
    st = settings
    Rc = viewmats[:, None, :3, :3]
    tc = viewmats[:, None, :3, 3]

    def core(m: Tensor, R: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        pc = (Rc @ m[..., None])[..., 0] + tc
        M = R * s[..., None, :]
        cov = M @ M.transpose(-1, -2)
        covc = Rc @ cov @ Rc.transpose(-1, -2)
        m2d, cov2d = _persp_cov2d(pc, covc, Ks, st.width, st.height)
        ca = cov2d[..., 0, 0] + st.eps2d
        cb = cov2d[..., 0, 1]
        cc = cov2d[..., 1, 1] + st.eps2d
        return pc, m2d, ca, cb, cc

    with torch.no_grad():
        pc, m2d, ca, cb, cc = core(means, rotmats, scales)
        z = pc[..., 2]
        det = ca * cc - cb * cb
        inv = 1.0 / det
        sx, sy = torch.sqrt(ca), torch.sqrt(cc)
        rx3, ry3 = torch.ceil(RADIUS_EXTEND * sx), torch.ceil(RADIUS_EXTEND * sy)
        rx, ry = rx3, ry3
        valid = (z >= st.near_plane) & (z <= st.far_plane) & (det > 0)
        valid &= ~((rx3 <= st.radius_clip) & (ry3 <= st.radius_clip))
        if opacities is not None:  # a non-finite opacity is culled (as every backend)
            valid &= torch.isfinite(opacities.detach())
        if st.tight_tiles and opacities is not None:
            o = opacities.detach()
            valid &= ~(o < ALPHA_MIN)
            ext = _opacity_extent(o)
            tight = ext != RADIUS_EXTEND
            rx = torch.where(tight, torch.clamp(torch.ceil(ext * sx), min=1.0), rx3)
            ry = torch.where(tight, torch.clamp(torch.ceil(ext * sy), min=1.0), ry3)
        mx, my = m2d[..., 0], m2d[..., 1]
        offscreen = (mx + rx <= 0) | (mx - rx >= st.width) | (my + ry <= 0) | (my - ry >= st.height)
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


def _per_camera(t: Tensor, C: int, dims: int) -> Tensor:
    """Broadcast a per-Gaussian tensor with ``dims`` dims (no camera axis) to ``[C, ...]``."""
    return t.expand(C, *t.shape) if t.dim() == dims else t


def _world(g: Gaussians, C: int) -> tuple[Tensor, Tensor, Tensor]:
    """World means ``[C,N,3]``, rotation matrices ``[C,N,3,3]`` and linear scales ``[C,N,3]``
    of ``g``: as given, or formed from the frames as the fused kernels do (``mu' = sqrt(S) R_f mu
    + T``, ``R_f R(q/|q|)``, ``sqrt(S) exp(log_s)``; camera ``c`` sees pose ``c // (C // B)``)."""
    if g.frames is None:
        q = _per_camera(g.quats, C, 2)
        return _per_camera(g.means, C, 2), quat_to_rotmat(quat_normalize(q)), _per_camera(g.scales, C, 2)
    assert g.face_ids is not None, "rigged Gaussians need face_ids"
    fr, fid = g.frames, g.face_ids.long()
    Rf = fr.rotations[:, fid]  # [B,N,3,3]
    sa = fr.sqrt_areas[:, fid][..., None]  # [B,N,1]
    wm = fr.centroids[:, fid] + sa * (Rf @ g.means[None, :, :, None])[..., 0]
    wR = Rf @ quat_to_rotmat(quat_normalize(g.quats))[None]
    ws = sa * torch.exp(g.scales)[None]
    per_pose = C // fr.sqrt_areas.shape[0]
    return tuple(t.repeat_interleave(per_pose, dim=0) for t in (wm, wR, ws))  # type: ignore[return-value]


def projection(g: Gaussians, viewmats: Tensor, Ks: Tensor, settings: RasterSettings) -> Projected:
    """The ``projection`` stage: ``g`` (world, or rigged to ``g.frames``) seen by ``C`` cameras.

    Returns :class:`Projected` (:func:`project`'s outputs and the colours: SH evaluated from the
    camera centre, 0 with zero gradient for culled Gaussians, or the input colours per camera).
    """
    C = viewmats.shape[0]
    means, R, s = _world(g, C)
    opac = _per_camera(g.opacities, C, 1)
    radii, means2d, depths, conics = project(means, R, s, opac, viewmats, Ks, settings)
    if settings.sh_degree is not None:
        sh = _per_camera(g.colors, C, 3)
        campos = -(viewmats[:, :3, :3].transpose(-1, -2) @ viewmats[:, :3, 3:4])[..., 0]  # [C,3]
        dirs = means - campos[:, None, :]
        kept = (radii > 0).all(-1)[..., None]
        dirs = torch.where(kept, dirs, torch.ones_like(dirs))
        colors = torch.where(kept, spherical_harmonics(settings.sh_degree, dirs, sh), 0.0)  # as the kernels
    else:
        colors = _per_camera(g.colors, C, 2)
    return Projected(radii, means2d, depths, conics, colors)
