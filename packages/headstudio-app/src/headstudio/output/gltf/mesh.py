"""The head's triangle mesh for engines: UV atlas, baked colour texture, skin weights, morphs.

* :func:`head_mesh`: the neutral mesh at the avatar's shape (every triangle of the head model:
  skin, mouth cavity, eyeballs where the head has them), unwrapped by ``xatlas`` (vertices on UV
  seams are split; ``vmap`` maps each glTF vertex to its head vertex), vertex normals, and the
  head's linear-blend weights as four joints per vertex (FLAME's weights have at most four
  non-zero entries per vertex on the procedural head; larger ones are kept and renormalised).
* :func:`bake_texture`: a colour texture from the Gaussians. Each texel's surface point gathers
  the 16 nearest Gaussians (neutral pose, world space) weighted by ``opacity · exp(-½ dᵀΣ⁻¹d)``
  with ``Σ`` the Gaussian's covariance, and takes their view-independent colour
  (``0.5 + C0·f_dc``); texels no Gaussian reaches take the nearest Gaussian's colour, and a few
  dilation passes fill the atlas' gutters so bilinear filtering does not bleed background in.
* :func:`morph_deltas`: per-vertex position offsets of FLAME parameter sets (the ARKit shapes, or
  expression components) at the neutral pose.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from flame_core import FlameParams
from scipy.spatial import cKDTree

from ...avatar import SH_C0, Avatar
from ...avatar_types import batch_size
from ...errors import HeadStudioError

__all__ = ["HeadMesh", "head_mesh", "bake_texture", "morph_deltas", "JOINT_NAMES"]

log = logging.getLogger(__name__)

#: glTF names of the head's joints, in FLAME's order: FLAME's root (``global_orient``, at the
#: base of the neck), its neck joint (``neck_pose``: turns the head), the jaw, the left and the
#: right eye (the subject's).
JOINT_NAMES = ("neck", "head", "jaw", "eye_L", "eye_R")


@dataclass
class HeadMesh:
    """The unwrapped neutral mesh (``V'`` glTF vertices, ``V`` head vertices).

    Attributes:
        positions: ``[V', 3]`` float32 at the neutral pose and the avatar's shape.
        normals: ``[V', 3]`` float32 unit vertex normals.
        uvs: ``[V', 2]`` float32 atlas coordinates (glTF: origin top-left).
        indices: ``[F, 3]`` uint32 triangles into the glTF vertices.
        vmap: ``[V']`` int64 head vertex of each glTF vertex.
        joints: ``[V', 4]`` uint8 joint indices; weights: ``[V', 4]`` float32 (rows sum to 1).
        joint_positions: ``[J, 3]`` float32 the neutral joints.
        parents: ``[J]`` parent joint (-1 for the root).
        dropped_weight: the largest skinning weight left out by keeping four per vertex.
    """

    positions: np.ndarray
    normals: np.ndarray
    uvs: np.ndarray
    indices: np.ndarray
    vmap: np.ndarray
    joints: np.ndarray
    weights: np.ndarray
    joint_positions: np.ndarray
    parents: list[int]
    dropped_weight: float


def _vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-20, n / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
    return n


def head_mesh(avatar: Avatar) -> HeadMesh:
    """Unwrap and skin the avatar's neutral mesh (module docstring)."""
    try:
        import xatlas
    except ImportError:
        raise HeadStudioError(
            "the glb mesh export needs the 'xatlas' package (UV unwrapping); `pip install xatlas`."
        ) from None
    head = avatar.head
    with torch.no_grad():
        out = head(shape=avatar.shape.detach())
    v = out.vertices[0].detach().cpu().double().numpy()
    joints = out.joints[0].detach().cpu().numpy().astype(np.float32)
    f = head.faces.detach().cpu().numpy().astype(np.uint32)
    vmap, idx, uvs = xatlas.parametrize(v.astype(np.float32), f)
    vmap = vmap.astype(np.int64)
    normals = _vertex_normals(v, f.astype(np.int64))
    W = head.lbs_weights_t.detach().cpu().double().numpy().T  # [V, J]
    order = np.argsort(-W, axis=1)[:, :4]
    top = np.take_along_axis(W, order, 1)
    dropped = float(np.sort(W, axis=1)[:, :-4].max()) if W.shape[1] > 4 else 0.0
    top = top / np.maximum(top.sum(1, keepdims=True), 1e-12)
    top[top < 1e-6] = 0.0
    top = top / top.sum(1, keepdims=True)
    jidx = np.where(top > 0, order, 0).astype(np.uint8)
    return HeadMesh(
        positions=v[vmap].astype(np.float32),
        normals=normals[vmap].astype(np.float32),
        uvs=uvs.astype(np.float32),
        indices=idx.astype(np.uint32),
        vmap=vmap,
        joints=jidx[vmap],
        weights=top[vmap].astype(np.float32),
        joint_positions=joints,
        parents=[int(p) for p in head.parents],
        dropped_weight=dropped,
    )


def morph_deltas(avatar: Avatar, params: FlameParams, vmap: np.ndarray) -> np.ndarray:
    """Offsets ``[K, V', 3]`` float32 of K FLAME parameter sets (``[K, ·]`` tensors: expression,
    jaw_pose, eye_pose) from the neutral mesh, at the avatar's shape, in glTF vertex order."""
    with torch.no_grad():
        neutral = avatar.pose()[0]
        K = batch_size(params)
        out = np.empty((K, len(vmap), 3), np.float32)
        for s in range(0, K, 16):
            verts = avatar.pose(params.map(lambda v, s=s: v[s : s + 16]))
            out[s : s + 16] = (verts - neutral).cpu().numpy()[:, vmap]
    return out


def _texel_points(mesh: HeadMesh, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise the atlas: ``(texel rows [T], cols [T], 3D points [T, 3])`` of covered texels."""
    uv = mesh.uvs.astype(np.float64) * size - 0.5  # texel centres at integer + 0.5
    rows, cols, pts = [], [], []
    P = mesh.positions.astype(np.float64)
    for tri in mesh.indices.astype(np.int64):
        a, b, c = uv[tri]
        x0, x1 = int(np.floor(min(a[0], b[0], c[0]))), int(np.ceil(max(a[0], b[0], c[0])))
        y0, y1 = int(np.floor(min(a[1], b[1], c[1]))), int(np.ceil(max(a[1], b[1], c[1])))
        xs, ys = np.meshgrid(
            np.arange(max(x0, 0), min(x1, size - 1) + 1), np.arange(max(y0, 0), min(y1, size - 1) + 1)
        )
        q = np.c_[xs.ravel(), ys.ravel()].astype(np.float64)
        e0, e1, d = b - a, c - a, q - a
        den = e0[0] * e1[1] - e0[1] * e1[0]
        if abs(den) < 1e-12:
            continue
        w1 = (d[:, 0] * e1[1] - d[:, 1] * e1[0]) / den
        w2 = (e0[0] * d[:, 1] - e0[1] * d[:, 0]) / den
        w0 = 1 - w1 - w2
        tol = -0.75 / max(np.sqrt(abs(den)), 1.0)  # a little conservative: covers edge texels
        inside = (w0 >= tol) & (w1 >= tol) & (w2 >= tol)
        if not inside.any():
            continue
        bw = np.clip(np.c_[w0, w1, w2][inside], 0, None)
        bw /= bw.sum(1, keepdims=True)
        rows.append(q[inside, 1].astype(np.int64))
        cols.append(q[inside, 0].astype(np.int64))
        pts.append(bw @ P[tri])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(pts)


def bake_texture(avatar: Avatar, mesh: HeadMesh, size: int = 1024, k: int = 16) -> np.ndarray:
    """The colour texture ``[size, size, 3]`` uint8 (module docstring)."""
    with torch.no_grad():
        g = avatar.world_gaussians()
    means = g["means"].detach().cpu().double().numpy()
    q = g["quats"].detach().cpu().double().numpy()
    s = g["scales"].detach().cpu().double().numpy()
    o = g["opacities"].detach().cpu().double().numpy()
    rgb = np.clip(0.5 + SH_C0 * g["sh"][:, 0].detach().cpu().double().numpy(), 0, 1)
    w, x, y, z = q.T
    R = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], 1)  # fmt: skip
    inv_s2 = 1.0 / np.maximum(s, 1e-8) ** 2
    rows, cols, pts = _texel_points(mesh, size)
    tree = cKDTree(means)
    k = min(k, len(means))
    _, nn = tree.query(pts, k=k)
    nn = nn.reshape(len(pts), k)
    d = pts[:, None, :] - means[nn]  # [T, k, 3]
    local = np.einsum("tkji,tkj->tki", R[nn], d)  # Rᵀ d
    maha = (local**2 * inv_s2[nn]).sum(-1)
    wt = o[nn] * np.exp(-0.5 * np.minimum(maha, 50.0))
    tot = wt.sum(1, keepdims=True)
    col = (wt[..., None] * rgb[nn]).sum(1) / np.maximum(tot, 1e-12)
    col = np.where(tot > 1e-4, col, rgb[nn[:, 0]])
    img = np.zeros((size, size, 3), np.float64)
    acc = np.zeros((size, size), np.float64)
    np.add.at(img, (rows, cols), col)
    np.add.at(acc, (rows, cols), 1.0)
    filled = acc > 0
    img[filled] /= acc[filled, None]
    for _ in range(8):  # dilate into the gutters
        if filled.all():
            break
        grow = np.zeros_like(img)
        cnt = np.zeros_like(acc)
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            sh_f = np.roll(filled, (dy, dx), (0, 1))
            grow += np.roll(img, (dy, dx), (0, 1)) * sh_f[..., None]
            cnt += sh_f
        new = (~filled) & (cnt > 0)
        img[new] = grow[new] / cnt[new, None]
        filled |= new
    log.info("baked a %dx%d texture from %d Gaussians (%d texels covered)", size, size, len(means), len(pts))
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def texture_png(img: np.ndarray) -> bytes:
    """PNG bytes of an ``[H, W, 3]`` uint8 image."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=False)
    return buf.getvalue()
