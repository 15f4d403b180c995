"""The teacher's hair volume: Gaussians standing off the scalp, so that side and back views show
hair in the silhouette instead of a painted cap.

The scalp is the part of the head's skin (its largest mesh component; eyeballs, ears and the mouth
interior are separate components) above the teacher's hairline (:func:`hair_weight`). On it,
points are sampled uniformly; each carries ``HAIR_LAYERS`` Gaussians stacked along the smoothed
outward normal up to a thickness that

* rises from nothing to ``FRINGE_THICKNESS`` within ``FRINGE_WIDTH`` of the hairline (a crisp
  fringe line, so the forehead below it stays bare skin),
* then grows to ``SIDE_THICKNESS`` over the sides and ``TOP_BACK_THICKNESS`` on the crown and
  the back of the head (hair lies flat over the temples and piles up on top).

Each Gaussian is bound to the scalp triangle it was sampled on, like every other Gaussian (its
local mean lies off the triangle along the triangle's normal axis), so the hair follows the head,
neck and global pose. Colours: the teacher's hair brown, a little darker in the inner layers,
with fine streaks along the head's front-to-back direction and the teacher's baked light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rigged_gaussians as rg
import torch
from flame_core.procedural_mesh import smoothstep

from ..avatar_init import knn_scales

__all__ = [
    "HairGaussians",
    "hair_weight",
    "hair_gaussians",
    "FRINGE_THICKNESS",
    "SIDE_THICKNESS",
    "TOP_BACK_THICKNESS",
]

#: Hair thickness (metres, along the scalp normal) just behind the hairline, over the sides
#: and on the crown / back of the head.
FRINGE_THICKNESS = 0.004
SIDE_THICKNESS = 0.007
TOP_BACK_THICKNESS = 0.015
#: Distance (metres, measured as height above the hairline) over which the hair reaches
#: ``FRINGE_THICKNESS``, and then its full thickness.
FRINGE_WIDTH = 0.004
FULL_WIDTH = 0.03
#: Gaussians stacked along the normal per scalp point (fractions of the thickness below).
HAIR_LAYERS = (0.3, 0.65, 1.0)
#: Inner layers are darker (shadowed by the hair above them): multiplier of the innermost.
INNER_SHADE = 0.7


def hair_weight(
    p: np.ndarray, forehead_top: np.ndarray, ear_mid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Hair coverage ``[N]`` (0..1) of points ``p [N, 3]`` and their height above the hairline
    ``[N]`` (metres; negative below it).

    The hairline runs from 8 mm above the top of the forehead (``forehead_top [3]``, landmark 10)
    at the front down to 5 mm above the ears (``ear_mid [3]``, between landmarks 234 and 454) at
    the back, blended by how far behind the forehead a point lies.
    """
    front_y, front_z = forehead_top[1], forehead_top[2]
    ear_y, ear_z = ear_mid[1], ear_mid[2]
    back = smoothstep((front_z - p[:, 2]) / max(front_z - ear_z, 1e-6))
    hairline = front_y + 0.008 + back * (ear_y + 0.005 - front_y - 0.008)
    above = p[:, 1] - hairline
    return smoothstep(above / 0.008), above


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``[V, 3]`` of the mesh (faces as wound)."""
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class HairGaussians:
    """The hair's Gaussians in the local frames of their triangles (float32; ``face_ids`` long).

    Attributes:
        means: ``[N, 3]`` local means.
        quats: ``[N, 4]`` identity rotations (wxyz): the scales lie along the triangle's axes.
        log_scales: ``[N, 3]`` local log-scales (the second axis is the triangle's normal).
        face_ids: ``[N]`` the scalp triangle of each Gaussian.
        rgb: ``[N, 3]`` colours (0..1).
        world: ``[N, 3]`` positions at the neutral pose.
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    face_ids: torch.Tensor
    rgb: torch.Tensor
    world: torch.Tensor


def hair_gaussians(
    verts: torch.Tensor,
    faces: torch.Tensor,
    scalp: np.ndarray,
    forehead_top: np.ndarray,
    ear_mid: np.ndarray,
    hair_rgb: np.ndarray,
    light_dir: np.ndarray,
    shade_min: float,
    generator: np.random.Generator,
    points_per_face: int = 2,
) -> HairGaussians:
    """The hair volume on the scalp faces of the neutral mesh.

    Args:
        verts: ``[V, 3]`` neutral vertices.
        faces: ``[F, 3]`` faces.
        scalp: ``[F]`` bool, the faces hair may grow on (the skin component; the hairline is
            applied here, by :func:`hair_weight`).
        forehead_top, ear_mid: ``[3]`` landmarks of the hairline (:func:`hair_weight`).
        hair_rgb: ``[3]`` base hair colour; ``light_dir`` ``[3]`` unit, ``shade_min``: the
            teacher's baked light (half-Lambert from ``light_dir``, darkest ``shade_min``).
        generator: positions and streak phases.
        points_per_face: scalp points per face (each carries ``len(HAIR_LAYERS)`` Gaussians).

    Returns:
        :class:`HairGaussians` with ``N = points · len(HAIR_LAYERS)``.
    """
    v = verts.detach().double().cpu().numpy()
    f = faces.detach().long().cpu().numpy()
    vn = _vertex_normals(v, f)
    skull_centre = v[np.unique(f[scalp])].mean(0)
    # outward: flip vertex normals that point into the skull (a mesh wound the other way)
    centroids = v[f].mean(1)
    if ((vn[f].mean(1) * (centroids - skull_centre)).sum(1)[scalp] < 0).mean() > 0.5:
        vn = -vn
    cand = np.flatnonzero(scalp & (hair_weight(centroids, forehead_top, ear_mid)[1] > -0.01))
    k = int(points_per_face)
    fid = np.repeat(cand, k)
    r1, r2 = generator.random(len(fid)), generator.random(len(fid))
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    base = (bary[:, :, None] * v[f[fid]]).sum(1)
    normal = (bary[:, :, None] * vn[f[fid]]).sum(1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    weight, above = hair_weight(base, forehead_top, ear_mid)
    keep = weight > 0.5
    fid, base, normal, above = fid[keep], base[keep], normal[keep], above[keep]

    # thickness: the fringe rises within FRINGE_WIDTH of the hairline, then grows to the full
    # thickness, which is larger on the crown and at the back than over the temples
    top_y, ear_y = float(v[f[scalp]][..., 1].max()), float(ear_mid[1])
    up = smoothstep((base[:, 1] - ear_y) / max(top_y - ear_y, 1e-6))
    behind = smoothstep((ear_mid[2] - base[:, 2]) / 0.05)
    full = SIDE_THICKNESS + (TOP_BACK_THICKNESS - SIDE_THICKNESS) * np.maximum(up**2, behind)
    rise = smoothstep(above / FRINGE_WIDTH) * FRINGE_THICKNESS
    thick = rise + (full - FRINGE_THICKNESS) * smoothstep((above - FRINGE_WIDTH) / FULL_WIDTH)
    thick = np.maximum(thick, 0.0)

    # spacing of the scalp points (root mean squared distance to 3 neighbours, as the init)
    spacing = knn_scales(torch.from_numpy(base), 3).numpy()
    layers = np.asarray(HAIR_LAYERS)
    L = len(layers)
    world = (base[:, None] + (thick[:, None] * layers[None])[..., None] * normal[:, None]).reshape(-1, 3)
    fid_l = np.repeat(fid, L)
    # tangential scale: the point spacing, widened with height (the layer's surface is larger),
    # and smaller at the fringe (a crisp hairline: no splat reaches down over the forehead);
    # normal scale: half a layer's gap, so the layers fuse into one volume
    gap = thick[:, None] / L * np.ones((1, L))
    crisp = 0.6 + 0.6 * smoothstep(above / FULL_WIDTH)
    along = (spacing * crisp)[:, None] * (1 + layers[None] * thick[:, None] / 0.05)
    across = np.maximum(0.6 * gap, 0.3 * spacing[:, None])
    # colour: base brown, shaded inner layers, fine streaks running front to back, baked light
    phase = generator.uniform(0, 2 * np.pi)
    streak = 0.5 + 0.5 * np.sin(np.arctan2(base[:, 0], base[:, 1] + 0.05) * 45 + phase)
    tone = (0.9 + 0.2 * streak)[:, None] * (INNER_SHADE + (1 - INNER_SHADE) * layers[None])
    light = shade_min + (1 - shade_min) * (0.5 + 0.5 * normal @ light_dir)
    rgb = (hair_rgb[None, None] * (tone * light[:, None])[..., None]).reshape(-1, 3)

    # to the local frames of the triangles: μ = Rᵀ(μ' − T)/√S, the frame's second axis is the normal
    cent, rot, sqrt_area = rg.triangle_frames(torch.from_numpy(v)[None], torch.from_numpy(f), backend="torch")
    T, R, sa = cent[0][fid_l], rot[0][fid_l], sqrt_area[0][fid_l]  # [N, 3], [N, 3, 3], [N]
    w = torch.from_numpy(world)
    means = (R.transpose(-1, -2) @ (w - T)[..., None])[..., 0] / sa[:, None]
    scales = np.stack([along.reshape(-1), across.reshape(-1), along.reshape(-1)], axis=1)
    log_scales = torch.log(torch.from_numpy(scales) / sa[:, None])
    quats = torch.zeros(len(fid_l), 4)
    quats[:, 0] = 1.0
    return HairGaussians(
        means=means.float(),
        quats=quats,
        log_scales=log_scales.float(),
        face_ids=torch.from_numpy(fid_l).long(),
        rgb=torch.from_numpy(np.clip(rgb, 0.0, 1.0)).float(),
        world=w.float(),
    )
