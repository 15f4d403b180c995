"""How faithful the engine export is: the glTF skin against the head's own LBS, and the baked
texture against the Gaussians.

* :func:`gltf_skinned_vertices`: evaluates a written GLB's head mesh exactly as glTF defines it
  (animation channels sampled at a frame, node TRS to world matrices, joint matrices
  ``world_j · inverseBind_j``, morph targets added in bind space, four-weight skinning), so a
  test compares the file itself, not the exporter's intermediate arrays, against
  ``avatar.pose``. The difference is what glTF cannot express: FLAME's pose-corrective
  blendshapes and its expression-dependent joint positions.
* :func:`render_textured_mesh`: a small z-buffer rasteriser (perspective-correct UVs, bilinear
  texture lookup, no lighting: the baked colour is the Gaussians' rendered colour), with OpenCV
  cameras like ``Avatar.render``, for PSNR against the Gaussian render.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from .builder import read_accessor, read_glb

__all__ = ["gltf_skinned_vertices", "render_textured_mesh", "psnr", "read_head_mesh"]


def _sample(doc: dict, binary: bytes, anim: dict, frame: int) -> dict[tuple[int, str], np.ndarray]:
    out = {}
    for ch in anim["channels"]:
        s = anim["samplers"][ch["sampler"]]
        times = read_accessor(doc, binary, s["input"])
        vals = read_accessor(doc, binary, s["output"]).astype(np.float64)
        vals = vals.reshape(len(times), -1)
        out[(ch["target"]["node"], ch["target"]["path"])] = vals[min(frame, len(times) - 1)]
    return out


def read_head_mesh(path: str | Path) -> dict[str, np.ndarray | dict]:
    """The head primitive's arrays from a GLB: ``positions, uvs, indices, texture (uint8 [H,W,3])``
    and the document (``doc``) and binary chunk (``bin``)."""
    import io

    from PIL import Image

    doc, binary = read_glb(Path(path).read_bytes())
    mesh_i = next(i for i, m in enumerate(doc["meshes"]) if m.get("name") == "head")
    prim = doc["meshes"][mesh_i]["primitives"][0]
    tex = doc["textures"][
        doc["materials"][prim["material"]]["pbrMetallicRoughness"]["baseColorTexture"]["index"]
    ]
    view = doc["bufferViews"][doc["images"][tex["source"]]["bufferView"]]
    png = binary[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
    return {
        "doc": doc,
        "bin": binary,
        "mesh_index": mesh_i,
        "positions": read_accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64),
        "uvs": read_accessor(doc, binary, prim["attributes"]["TEXCOORD_0"]).astype(np.float64),
        "indices": read_accessor(doc, binary, prim["indices"]).reshape(-1, 3).astype(np.int64),
        "texture": np.asarray(Image.open(io.BytesIO(png)).convert("RGB")),
    }


def gltf_skinned_vertices(
    path: str | Path, frame: int | None = None, weights: np.ndarray | None = None
) -> np.ndarray:
    """The head mesh's vertices ``[V', 3]`` as a glTF client poses them.

    Args:
        path: the ``.glb``.
        frame: sample the first animation at this frame (``None``: the rest pose).
        weights: morph weights ``[num_targets]`` overriding the animation's / the mesh's defaults.
    """
    m = read_head_mesh(path)
    doc, binary = m["doc"], m["bin"]
    prim = doc["meshes"][m["mesh_index"]]["primitives"][0]
    sampled = (
        _sample(doc, binary, doc["animations"][0], frame)
        if frame is not None and doc.get("animations")
        else {}
    )
    nodes = doc["nodes"]
    mesh_node = next(i for i, n in enumerate(nodes) if n.get("mesh") == m["mesh_index"])
    w = np.asarray(doc["meshes"][m["mesh_index"]].get("weights", []), np.float64)
    if (mesh_node, "weights") in sampled:
        w = sampled[(mesh_node, "weights")]
    if weights is not None:
        w = np.asarray(weights, np.float64)
    pos = m["positions"].copy()
    for k, tgt in enumerate(prim.get("targets", [])):
        if k < len(w) and w[k] != 0.0:
            pos += w[k] * read_accessor(doc, binary, tgt["POSITION"])
    parent = {c: i for i, n in enumerate(nodes) for c in n.get("children", [])}

    def local(i: int) -> np.ndarray:
        n = nodes[i]
        t = sampled.get((i, "translation"), np.asarray(n.get("translation", [0, 0, 0]), np.float64))
        q = sampled.get((i, "rotation"), np.asarray(n.get("rotation", [0, 0, 0, 1]), np.float64))
        mat = np.eye(4)
        mat[:3, :3] = Rotation.from_quat(q).as_matrix()
        mat[:3, 3] = t
        return mat

    def world(i: int) -> np.ndarray:
        return world(parent[i]) @ local(i) if i in parent else local(i)

    skin = doc["skins"][nodes[mesh_node]["skin"]]
    ibm = read_accessor(doc, binary, skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    J = np.stack([world(j) @ ibm[k] for k, j in enumerate(skin["joints"])])  # [J, 4, 4]
    joints = read_accessor(doc, binary, prim["attributes"]["JOINTS_0"]).astype(np.int64)
    wts = read_accessor(doc, binary, prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
    M = np.einsum("vk,vkij->vij", wts, J[joints])  # [V', 4, 4]
    return np.einsum("vij,vj->vi", M[:, :3, :3], pos) + M[:, :3, 3]


def render_textured_mesh(
    positions: np.ndarray,
    uvs: np.ndarray,
    indices: np.ndarray,
    texture: np.ndarray,
    viewmat: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray]:
    """The textured mesh seen by an OpenCV camera (pixel centres at +0.5, ``viewmat``
    world→camera ``[4, 4]``, ``K [3, 3]``): ``(image [H, W, 3] float in 0..1, covered [H, W] bool)``."""
    P = np.c_[positions, np.ones(len(positions))] @ viewmat.T
    z = P[:, 2]
    xy = (P[:, :3] @ K.T)[:, :2] / np.maximum(z, 1e-9)[:, None]
    zbuf = np.full((height, width), np.inf)
    uvbuf = np.zeros((height, width, 2))
    for tri in indices:
        if (z[tri] <= 1e-6).any():
            continue
        a, b, c = xy[tri]
        x0, x1 = (
            max(int(np.floor(min(a[0], b[0], c[0]))), 0),
            min(int(np.ceil(max(a[0], b[0], c[0]))), width - 1),
        )
        y0, y1 = (
            max(int(np.floor(min(a[1], b[1], c[1]))), 0),
            min(int(np.ceil(max(a[1], b[1], c[1]))), height - 1),
        )
        if x1 < x0 or y1 < y0:
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        e0, e1 = b - a, c - a
        den = e0[0] * e1[1] - e0[1] * e1[0]
        if abs(den) < 1e-12:
            continue
        dx, dy = xs - a[0], ys - a[1]
        w1 = (dx * e1[1] - dy * e1[0]) / den
        w2 = (e0[0] * dy - e0[1] * dx) / den
        w0 = 1 - w1 - w2
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        if not inside.any():
            continue
        iz = w0 / z[tri[0]] + w1 / z[tri[1]] + w2 / z[tri[2]]  # perspective-correct
        depth = 1.0 / np.maximum(iz, 1e-12)
        rows, cols = ys.astype(int), xs.astype(int)
        sel = inside & (depth < zbuf[rows, cols])
        if not sel.any():
            continue
        pw = np.stack([w0 / z[tri[0]], w1 / z[tri[1]], w2 / z[tri[2]]], -1) * depth[..., None]
        uv = pw @ uvs[tri]
        zbuf[rows[sel], cols[sel]] = depth[sel]
        uvbuf[rows[sel], cols[sel]] = uv[sel]
    img = np.empty((height, width, 3))
    img[:] = background
    hit = np.isfinite(zbuf)
    th, tw = texture.shape[:2]
    tx = np.clip(uvbuf[hit, 0] * tw - 0.5, 0, tw - 1)
    ty = np.clip(uvbuf[hit, 1] * th - 0.5, 0, th - 1)
    x0, y0 = np.floor(tx).astype(int), np.floor(ty).astype(int)
    x1, y1 = np.minimum(x0 + 1, tw - 1), np.minimum(y0 + 1, th - 1)
    fx, fy = (tx - x0)[:, None], (ty - y0)[:, None]
    t = texture.astype(np.float64) / 255.0
    img[hit] = (t[y0, x0] * (1 - fx) * (1 - fy) + t[y0, x1] * fx * (1 - fy) + t[y1, x0] * (1 - fx) * fy
                + t[y1, x1] * fx * fy)  # fmt: skip
    return img, hit


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of two images ``[H, W, 3]`` in 0..1 (over the ``[H, W]`` mask's pixels if given)."""
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = float(np.mean(d if mask is None else d[mask]))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
