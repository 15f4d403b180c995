"""A procedurally textured "teacher" avatar, the offline stand-in for a generated one.

``headstudio demo`` renders it over random views and expressions to get target images with known
cameras and FLAME parameters, then fits a fresh avatar to them with the image guidance. The
texture is derived deterministically from the neutral mesh and its MediaPipe landmark embedding:

* skin: a warm tone varying smoothly over the head (low-frequency noise from ``seed``), rosier
  cheeks, a slightly darker neck, with soft light baked in from the upper front (skin and hair);
* hair: dark brown on the top and back of the head, above a hairline that runs from the top of
  the forehead (landmark 10) down to the ears at the back, painted on the scalp and, on top of
  it, a hair volume standing up to 1.5 cm off the scalp (:mod:`headstudio.demo.teacher_hair`),
  so that side and back views show hair in the silhouette;
* lips: red inside the outer lip contour, darkening where they roll into the mouth; eyebrows:
  dark brown along the brow landmarks;
* eyes: the eyeballs (the mesh components carrying the iris landmarks 468–477) are white with a
  blue-grey iris and a black pupil around the iris centre;
* mouth interior (when the head has one): a dark red-brown cavity, white teeth, a pink tongue.
"""

from __future__ import annotations

import numpy as np
import torch
from flame_core import FlameModel
from flame_core.procedural_mesh import smoothstep
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..avatar import Avatar, rgb_to_sh
from ..config import InitConfig
from ..errors import HeadStudioError
from .teacher_hair import hair_gaussians, hair_weight

__all__ = ["build_teacher_avatar", "teacher_colors", "TEACHER_COLORS"]

#: Base colours (linear 0..1 RGB) of the teacher's regions.
TEACHER_COLORS = {
    "skin": (0.86, 0.66, 0.54),
    "cheek": (0.90, 0.58, 0.52),
    "neck": (0.78, 0.58, 0.47),
    "hair": (0.20, 0.13, 0.08),
    "lips": (0.72, 0.16, 0.20),
    "brow": (0.16, 0.10, 0.06),
    "sclera": (0.93, 0.92, 0.88),
    "iris": (0.25, 0.42, 0.55),
    "pupil": (0.03, 0.03, 0.03),
    "cavity": (0.20, 0.05, 0.06),
    "upper_teeth": (0.93, 0.91, 0.84),
    "lower_teeth": (0.93, 0.91, 0.84),
    "tongue": (0.72, 0.32, 0.34),
}
#: MediaPipe ids of the outer lip contour, in order around the mouth.
LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
#: MediaPipe ids of the upper inner-lip contour, corner to corner.
LIPS_INNER_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
#: MediaPipe brow contours (lower and upper edge of each eyebrow), in order along the brow.
BROW_CHAINS = (
    [46, 53, 52, 65, 55],
    [70, 63, 105, 66, 107],
    [276, 283, 282, 295, 285],
    [300, 293, 334, 296, 336],
)
BROWS = [i for chain in BROW_CHAINS for i in chain]
IRIS_CENTRES = (468, 473)
CHEEKS = (50, 280)
FOREHEAD_TOP, EARS = 10, (234, 454)
IRIS_RADIUS = 0.0058
#: Baked light: direction (unit, head frame) and the darkest shade (facing away from it).
LIGHT_DIR = np.array([0.25, 0.55, 0.8]) / np.linalg.norm([0.25, 0.55, 0.8])
SHADE_MIN = 0.7
PUPIL_RADIUS = 0.0024


def _inside_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd test of 2D points ``[N, 2]`` against a closed polygon ``[M, 2]``."""
    x, y = pts[:, 0:1], pts[:, 1:2]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (crosses & (x < xs)).sum(1) % 2 == 1


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance ``[N]`` from points ``[N, 3]`` to the nearest of the segments ``a[k] b[k]``."""
    ab = b - a  # [K, 3]
    t = ((p[:, None] - a[None]) * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-18)[None]
    q = a[None] + np.clip(t, 0.0, 1.0)[..., None] * ab[None]  # [N, K, 3]
    return np.linalg.norm(p[:, None] - q, axis=-1).min(axis=1)


def _components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """Connected-component label of every face ``[F]`` (faces sharing a vertex are connected)."""
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices, num_vertices))
    _, labels = connected_components(graph, directed=False)
    return labels[faces[:, 0]]


def _landmarks(head: FlameModel, verts: torch.Tensor) -> dict[int, np.ndarray]:
    emb = head.landmark_embedding
    if emb is None:
        raise HeadStudioError(
            "the teacher avatar needs a head with a MediaPipe landmark embedding (the procedural "
            "head has one); use the procedural head or a FLAME model with its embedding."
        )
    pos = emb(verts[None], head.faces)[0].detach().double().cpu().numpy()
    ids = [int(i) for i in emb.landmark_indices.tolist()]
    return dict(zip(ids, pos))


def _ear_mid(lm: dict[int, np.ndarray]) -> np.ndarray:
    """``[3]`` the point between the two ear landmarks."""
    return 0.5 * (lm[EARS[0]] + lm[EARS[1]])


def teacher_colors(
    head: FlameModel, points: torch.Tensor, face_ids: torch.Tensor, seed: int = 0
) -> torch.Tensor:
    """Texture colours ``[N, 3]`` (0..1) of points ``[N, 3]`` on the neutral head's faces ``[N]``.

    Raises:
        HeadStudioError: the head has no landmark embedding, or lacks a landmark the texture uses.
    """
    with torch.no_grad():
        verts = head().vertices[0]
    lm = _landmarks(head, verts)
    needed = [*LIPS_OUTER, *BROWS, *IRIS_CENTRES, *CHEEKS, FOREHEAD_TOP, *EARS]
    missing = [i for i in needed if i not in lm]
    if missing:
        raise HeadStudioError(f"the head's landmark embedding lacks MediaPipe landmarks {missing[:8]}.")
    p = points.detach().double().cpu().numpy()
    fid = face_ids.detach().cpu().numpy()
    faces = head.faces.detach().cpu().numpy()
    col = {k: np.asarray(v, np.float64) for k, v in TEACHER_COLORS.items()}
    rng = np.random.default_rng(seed)

    # skin: smooth low-frequency variation (a few random plane waves, about ±4 %)
    waves = rng.normal(size=(4, 3)) * 25.0
    phases = rng.uniform(0, 2 * np.pi, 4)
    variation = 0.04 * np.sin(p @ waves.T + phases).mean(1)
    rgb = col["skin"][None] * (1 + variation[:, None])
    for c in CHEEKS:
        w = np.exp(-0.5 * (np.linalg.norm(p - lm[c], axis=1) / 0.014) ** 2)
        rgb = rgb + w[:, None] * (col["cheek"] - col["skin"])[None]
    chin_y = lm[152][1] if 152 in lm else lm[17][1] - 0.03
    neck = smoothstep((chin_y - 0.01 - p[:, 1]) / 0.03)
    rgb = rgb + neck[:, None] * (col["neck"] - col["skin"])[None]

    # hair: above a hairline from the top of the forehead (front) down to the ears (back)
    hair, _ = hair_weight(p, lm[FOREHEAD_TOP], _ear_mid(lm))
    rgb = rgb + hair[:, None] * (col["hair"] - rgb)

    # baked soft light from the upper front (half-Lambert on the neutral faces' normals), so nose,
    # brow ridge, chin and ears read in relief; the painted features below stay flat
    vn = verts.detach().double().cpu().numpy()
    tri = vn[faces[fid]]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    rgb = rgb * (SHADE_MIN + (1 - SHADE_MIN) * (0.5 + 0.5 * n @ LIGHT_DIR))[:, None]

    # lips: inside the outer lip contour (front view), on the front of the face
    poly = np.stack([lm[i][:2] for i in LIPS_OUTER])
    mouth_z = min(lm[i][2] for i in LIPS_OUTER)
    lips = _inside_polygon(p[:, :2], poly) & (p[:, 2] > mouth_z - 0.012)
    rgb[lips] = col["lips"]
    # the inner lips darken as they roll into the mouth: behind the inner-lip contour at their x
    if all(i in lm for i in LIPS_INNER_UPPER):
        contour = np.stack([lm[i] for i in LIPS_INNER_UPPER])
        contour = contour[np.argsort(contour[:, 0])]
        z_ref = np.interp(p[lips, 0], contour[:, 0], contour[:, 2])
        inner = smoothstep((z_ref - p[lips, 2]) / 0.004)
        rgb[lips] = rgb[lips] * (1 - 0.75 * inner[:, None])

    # brows: near the brow contours (distance to their segments)
    seg_a = np.stack([lm[c[k]] for c in BROW_CHAINS for k in range(len(c) - 1)])
    seg_b = np.stack([lm[c[k + 1]] for c in BROW_CHAINS for k in range(len(c) - 1)])
    d_brow = _segment_distance(p, seg_a, seg_b)
    brow = smoothstep((0.004 - d_brow) / 0.0015)
    rgb = rgb + brow[:, None] * (col["brow"] - rgb)

    # eyes: the mesh components that carry the iris landmarks
    comp = _components(faces, int(verts.shape[0]))
    emb = head.landmark_embedding
    assert emb is not None  # checked by _landmarks
    lut = {int(m): i for i, m in enumerate(emb.landmark_indices.tolist())}
    for centre_id in IRIS_CENTRES:
        eye_comp = comp[int(emb.face_idx[lut[centre_id]])]
        on_eye = comp[fid] == eye_comp
        d = np.linalg.norm(p - lm[centre_id], axis=1)
        eye_col = np.where(
            (d < PUPIL_RADIUS)[:, None],
            col["pupil"],
            np.where((d < IRIS_RADIUS)[:, None], col["iris"], col["sclera"]),
        )
        rgb[on_eye] = eye_col[on_eye]

    # mouth interior (flame_core.mouth_interior): a dark cavity, white teeth, a pink tongue
    interior = getattr(head, "mouth_interior", None)
    if interior is not None:
        for name in ("cavity", "upper_teeth", "lower_teeth", "tongue"):
            rgb[np.isin(fid, interior.part_faces(name))] = col[name]
    return torch.from_numpy(np.clip(rgb, 0.0, 1.0)).float()


def build_teacher_avatar(
    head: FlameModel,
    seed: int = 0,
    points_per_face: int = 2,
    opacity: float = 0.95,
    scale_factor: float = 1.2,
    hair: bool = True,
) -> Avatar:
    """The textured teacher avatar on ``head`` (deterministic for a given ``seed``).

    Args:
        head: the procedural head (any head with a MediaPipe landmark embedding works).
        seed: seed of the Gaussian positions and of the skin variation.
        points_per_face: Gaussians per triangle (and scalp points per triangle of the hair).
        opacity: opacity of every Gaussian (nearly opaque: a solid surface).
        scale_factor: multiplies the kNN scales so neighbouring splats overlap without holes.
        hair: add the hair volume (:mod:`headstudio.demo.teacher_hair`) on the scalp; without
            it the hair is only painted on the skin.

    Returns:
        An :class:`Avatar` with SH degree 0 and zero shape, on the head's device: the surface
        Gaussians first (``points_per_face`` per triangle), then the hair's.
    """
    init = InitConfig(points_per_face=points_per_face, opacity=opacity, sh_degree=0)
    avatar = Avatar.initialize(
        head, init, torch.Generator().manual_seed(seed), metadata={"teacher": True, "seed": seed}
    )
    with torch.no_grad():
        world = avatar.world_gaussians()["means"]
        rgb = teacher_colors(head, world, avatar.face_ids, seed).to(avatar.sh.device)
        avatar.sh[:, 0, :] = rgb_to_sh(rgb)
        avatar.log_scales.add_(float(np.log(scale_factor)))
    if not hair:
        return avatar
    with torch.no_grad():
        verts = head().vertices[0]
    lm = _landmarks(head, verts)
    faces = head.faces.detach().cpu().numpy()
    comp = _components(faces, int(verts.shape[0]))
    skin = comp == np.bincount(comp).argmax()  # the largest component: not eyes, ears, interior
    h = hair_gaussians(
        verts, head.faces, skin, lm[FOREHEAD_TOP], _ear_mid(lm), np.asarray(TEACHER_COLORS["hair"]),
        LIGHT_DIR, SHADE_MIN, np.random.default_rng(seed + 7919), points_per_face,
    )  # fmt: skip
    dev = avatar.means.device
    n = len(h.face_ids)
    sh = torch.zeros(n, 1, 3)
    sh[:, 0] = rgb_to_sh(h.rgb)
    logit = torch.full((n,), float(np.log(opacity / (1 - opacity))))
    cat = {"means": h.means, "quats": h.quats, "log_scales": h.log_scales, "opacity_logits": logit, "sh": sh}
    params = {k: torch.cat([getattr(avatar, k).detach(), v.to(dev)]) for k, v in cat.items()}
    face_ids = torch.cat([avatar.face_ids, h.face_ids.to(dev)])
    return Avatar(
        head, params["means"], params["quats"], params["log_scales"], params["opacity_logits"],
        params["sh"], face_ids, avatar.shape.detach(), avatar.metadata,
    ).to(dev)  # fmt: skip
