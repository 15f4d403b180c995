"""A mouth interior for any FLAME-format head: upper and lower teeth, a tongue and an oral cavity.

FLAME's mesh (and the procedural head, built the same way) ends at the inner lips: behind them is
a hole into the head. :func:`build_mouth_interior` closes that hole with an oral cavity and puts
teeth and a tongue inside, as extra vertices and triangles that :func:`append_mouth_interior`
appends to the model's arrays. The original vertices and faces keep their indices, so landmark
embeddings and everything else indexed by the original faces are unchanged; Gaussians bind to the
new triangles like to any other.

Built from the model itself, with no FLAME vertex index: the inner-lip contour comes from the
landmark embedding (MediaPipe ids :data:`UPPER_INNER_LIP` and :data:`LOWER_INNER_LIP`), the
mouth opening is the mesh's boundary loop nearest to it, and the joints come from the regressor
and the kinematic tree. FLAME's conventions are assumed: metres, y up, the face looks along +z.

Parts (sizes are fractions of the opening's width ``W``, the distance between its corners):

* **cavity**: a closed pouch from the opening's upper edge up to the palate, back to the
  pharynx, down to the floor and forward to the lower edge, closed at the sides by two caps.
  Its rim *is* the opening's boundary loop (shared vertices), so lips and cavity never part.
  Skinning weights blend from the head joint (the jaw's parent) at the palate to the jaw joint at
  the floor, with the rows next to the rim taking half of the lip weights; shape and expression
  offsets blend those of the upper and lower lip edge at the same place along the edge (equal arc
  length), so the cavity follows the lips; the rows next to the rim also take the lips' pose
  correctives.
* **upper teeth**: a closed band along an elliptic dental arch (half-width 0.40 W, 75° either
  side), 0.08 W behind the opening's front, from 0.06 W below the lip line up to the gum; skinned
  rigidly to the head joint.
* **lower teeth**: the same band from 0.05 W to 0.24 W below the lip line, inside the upper arch
  (overjet and overbite, as in a closed human bite); rigid to the jaw joint.
* **tongue**: a flattened ellipsoid on the cavity's floor, rigid to the jaw joint.

Teeth and tongue take the mean shape/expression offset of the upper (teeth) or lower (lower teeth,
tongue) lip rim, a pure translation per coefficient, so they stay behind the lips when the lips
move and keep their own form; they have no pose-corrective offsets (rigid).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from flame_core._mouth_geometry import (
    _arc_fraction,
    _band,
    _boundary_loops,
    _ellipsoid,
    _outward,
    _resample,
    _zip,
)
from flame_core.landmarks import LandmarkEmbedding

log = logging.getLogger(__name__)

__all__ = [
    "MouthInterior",
    "build_mouth_interior",
    "append_mouth_interior",
    "UPPER_INNER_LIP",
    "LOWER_INNER_LIP",
    "PART_NAMES",
]

#: MediaPipe's inner-lip contours, from the subject's right corner (78) to the left corner (308).
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
#: Face labels of :attr:`MouthInterior.face_part`.
CAVITY, UPPER_TEETH, LOWER_TEETH, TONGUE = 0, 1, 2, 3
PART_NAMES = ("cavity", "upper_teeth", "lower_teeth", "tongue")
JAW_JOINT = 2

# cavity rows between the upper rim (row 0) and the lower rim: (fraction of the lower lip's
# attributes, height offset / H, depth offset / D); H and D scale with the opening's width.
_ROWS = np.array(
    [
        (0.0, 0.30, 0.10),
        (0.0, 0.75, 0.28),
        (0.05, 1.00, 0.55),
        (0.25, 0.80, 0.85),
        (0.45, 0.30, 1.00),
        (0.55, -0.30, 1.00),
        (0.75, -0.80, 0.85),
        (0.95, -1.00, 0.55),
        (1.0, -0.75, 0.28),
        (1.0, -0.30, 0.10),
    ]
)
_CAV_H, _CAV_D = 0.30, 0.80  # cavity half-height and depth / W
_COLUMNS = 14  # cavity columns across the mouth
_ARCH = 12  # teeth sections along the arch
_TOOTH_DEPTH = 0.07  # thickness of the teeth band / W


@dataclass
class MouthInterior:
    """Extra geometry for a model with ``V`` vertices and ``F`` faces (``M`` new vertices, ``G`` new faces).

    Attributes:
        vertices: ``[M, 3]`` rest positions of the new vertices (indices ``V .. V+M-1``).
        faces: ``[G, 3]`` int64 into the extended vertex list (may use original vertices: the rim).
        face_part: ``[G]`` int64 labels (:data:`PART_NAMES`).
        shapedirs: ``[M, 3, L]`` shape and expression offsets (the model's ``L`` components).
        posedirs: ``[M, 3, P]`` pose-corrective offsets.
        weights: ``[M, J]`` skinning weights (rows sum to 1).
        num_base_vertices / num_base_faces: ``V`` and ``F`` of the model it was built for.
        opening: ``[n]`` the mouth opening's boundary loop (original vertex ids, in order), the
            cavity's rim.
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_part: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    weights: np.ndarray
    num_base_vertices: int
    num_base_faces: int
    opening: np.ndarray

    def part_faces(self, name: str) -> np.ndarray:
        """Indices ``[g]`` of this part's faces in the extended face list (``F + local index``)."""
        return self.num_base_faces + np.flatnonzero(self.face_part == PART_NAMES.index(name))

    def part_vertices(self, name: str) -> np.ndarray:
        """Indices of the NEW vertices used by this part (into the extended vertex list)."""
        f = self.faces[self.face_part == PART_NAMES.index(name)].ravel()
        return np.unique(f[f >= self.num_base_vertices])


class _Attrs:
    """Per-point attributes as rows: position, shape/expression offsets, pose correctives, weights."""

    def __init__(self, pos: np.ndarray, sd: np.ndarray, pd: np.ndarray, w: np.ndarray) -> None:
        self.pos, self.sd, self.pd, self.w = pos, sd, pd, w

    @staticmethod
    def of_vertices(d: dict[str, np.ndarray], ids: np.ndarray) -> _Attrs:
        return _Attrs(d["v_template"][ids], d["shapedirs"][ids], d["posedirs"][ids], d["weights"][ids])

    def lerp(self, i: np.ndarray, j: np.ndarray, t: np.ndarray) -> _Attrs:
        """Rows ``(1-t)·self[i] + t·self[j]``."""

        def m(a: np.ndarray) -> np.ndarray:
            tt = t.reshape((-1,) + (1,) * (a.ndim - 1))
            return (1 - tt) * a[i] + tt * a[j]

        return _Attrs(m(self.pos), m(self.sd), m(self.pd), m(self.w))


def _inner_lips(d: dict[str, np.ndarray], emb: LandmarkEmbedding) -> tuple[np.ndarray, np.ndarray]:
    """Rest positions ``[11, 3]`` of the upper and lower inner-lip contours."""
    have = set(emb.landmark_indices.tolist())
    missing = [i for i in (*UPPER_INNER_LIP, *LOWER_INNER_LIP) if i not in have]
    if missing:
        raise ValueError(
            f"the landmark embedding lacks the inner-lip landmarks {sorted(set(missing))[:6]}; the mouth "
            "interior needs MediaPipe's inner-lip contour (FLAME's 105-point embedding has it)"
        )
    v, f = d["v_template"], np.asarray(d["f"])

    def pos(ids: tuple[int, ...]) -> np.ndarray:
        e = emb.select(list(ids))
        fi, bc = e.face_idx.numpy(), e.bary_coords.numpy().astype(np.float64)
        return (v[f[fi]] * bc[..., None]).sum(1)

    return pos(UPPER_INNER_LIP), pos(LOWER_INNER_LIP)


def build_mouth_interior(model_dict: dict[str, np.ndarray], embedding: LandmarkEmbedding) -> MouthInterior:
    """Build the mouth interior of a model (:func:`flame_core.io.load_flame_pickle`'s layout).

    Args:
        model_dict: the model's arrays (``v_template [V,3]``, ``f [F,3]``, ``shapedirs [V,3,L]``,
            ``posedirs [V,3,P]``, ``weights [V,J]``, ``J_regressor [J,V]``, ``kintree_table``).
        embedding: its MediaPipe landmark embedding (needs the inner-lip contour).

    Raises:
        ValueError: the embedding lacks the inner lips, or the mesh has no mouth opening there.
    """
    d = model_dict
    v, f = np.asarray(d["v_template"], np.float64), np.asarray(d["f"], np.int64)
    V, F = len(v), len(f)
    up_lm, lo_lm = _inner_lips(d, embedding)
    # mouth frame: x from the right corner to the left, z the model's forward axis, y up
    ex = up_lm[-1] - up_lm[0]
    W = float(np.linalg.norm(ex))
    ex /= W
    ez = np.array([0.0, 0.0, 1.0]) - ex[2] * ex
    ez /= np.linalg.norm(ez)
    ey = np.cross(ez, ex)
    frame = np.stack([ex, ey, ez])
    centre = np.concatenate([up_lm, lo_lm]).mean(0)

    loops = _boundary_loops(f)
    best, best_d = None, np.inf
    for lp in loops:
        dist = float(np.linalg.norm(v[lp].mean(0) - centre))
        if dist < best_d and np.linalg.norm(v[lp] - centre, axis=1).max() < 0.8 * W:
            best, best_d = lp, dist
    if best is None or best_d > 0.3 * W:
        raise ValueError(
            "the head mesh has no mouth opening (no boundary loop of the mesh at the inner-lip "
            "landmarks); the mouth interior closes a FLAME-style opening between the lips"
        )
    loop = best
    lv = (v[loop] - centre) @ frame.T  # loop in the mouth frame
    # the corners: the opening's extremes across the mouth (the landmarks 78/308 may sit a little
    # inside them, on the lips' surface)
    cr, cl = int(np.argmin(lv[:, 0])), int(np.argmax(lv[:, 0]))
    if cr == cl:
        raise ValueError("the mouth opening's corners coincide; the inner-lip landmarks are degenerate")
    n = len(loop)
    ch1 = [(cr + k) % n for k in range((cl - cr) % n + 1)]
    ch2 = [(cl + k) % n for k in range((cr - cl) % n + 1)][::-1]  # also from cr to cl
    if lv[ch1, 1].mean() < lv[ch2, 1].mean():
        ch1, ch2 = ch2, ch1
    upper, lower = loop[ch1], loop[ch2]  # vertex ids, right corner -> left corner
    oc = v[loop].mean(0)  # opening centre
    base = _Attrs.of_vertices(d, np.arange(V))

    # columns across the mouth at equal arc-length fractions of both lip edges (cosine spacing:
    # denser at the corners); arc length keeps the parameter monotonic however the edges curl
    s = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, _COLUMNS + 1))
    uu, lu = _arc_fraction(v[upper]), _arc_fraction(v[lower])
    iu, ju, tu = _resample(uu, s)
    il, jl, tl = _resample(lu, s)
    up_at = base.lerp(upper[iu], upper[ju], tu)
    lo_at = base.lerp(lower[il], lower[jl], tl)
    prof = 0.35 + 0.65 * np.sqrt(np.clip(1 - (2 * s - 1) ** 2, 0, 1))  # [C] deepest at the centre
    H, D = _CAV_H * W, _CAV_D * W

    kint = np.asarray(d["kintree_table"], np.int64)
    J = d["weights"].shape[1]
    if J <= JAW_JOINT:
        raise ValueError(f"the model has {J} joints; the mouth interior needs FLAME's jaw joint (joint 2)")
    head_joint = int(kint[0, JAW_JOINT])
    w_head, w_jaw = np.zeros(J), np.zeros(J)
    w_head[head_joint], w_jaw[JAW_JOINT] = 1.0, 1.0

    new_pos, new_sd, new_pd, new_w = [], [], [], []

    def add(pos: np.ndarray, sd: np.ndarray, pd: np.ndarray, w: np.ndarray) -> np.ndarray:
        start = V + sum(len(p) for p in new_pos)
        new_pos.append(pos)
        new_sd.append(sd)
        new_pd.append(pd)
        new_w.append(w)
        return start + np.arange(len(pos))

    # ---- cavity rows
    rows = []
    nrow = len(_ROWS)
    for r, (lo_frac, yo, zo) in enumerate(_ROWS):
        t = np.full(len(s), lo_frac)
        tt = t[:, None]
        pos = (1 - tt) * up_at.pos + tt * lo_at.pos
        rel = (pos - oc) @ frame.T
        # wider deep behind the lips (the cheeks' inside), not next to the corners
        rel[:, 0] = rel[:, 0] * (1 + 0.25 * max(0.0, zo - 0.3) / 0.7)
        rel[:, 1] += yo * H * prof
        rel[:, 2] -= zo * D * prof
        pos = oc + rel @ frame
        sd = (1 - tt[..., None]) * up_at.sd + tt[..., None] * lo_at.sd
        pd = (1 - tt[..., None]) * up_at.pd + tt[..., None] * lo_at.pd
        rim_w = (1 - tt) * up_at.w + tt * lo_at.w
        jaw_share = np.clip((r - 1.5) / (nrow - 4), 0.0, 1.0)
        rigid = (1 - jaw_share) * w_head + jaw_share * w_jaw
        near_rim = 0.5 if r in (0, nrow - 1) else 0.0  # the rows next to a rim take half its weights
        w = near_rim * rim_w + (1 - near_rim) * rigid[None]
        pd = pd * (1.0 if near_rim else 0.0)
        rows.append(add(pos, sd, pd, w))
    rows = np.stack(rows)  # [R, C+1]
    cav: list[list[int]] = []
    cav += _zip(upper, uu, rows[0], s)
    for r in range(nrow - 1):
        for c in range(_COLUMNS):
            a, b, cc, dd = rows[r, c], rows[r, c + 1], rows[r + 1, c], rows[r + 1, c + 1]
            cav += [[int(a), int(cc), int(b)], [int(b), int(cc), int(dd)]]
    cav += [t[::-1] for t in _zip(lower, lu, rows[-1], s)]
    # side caps: the corner column's section (rim corner + every row) fanned from its centroid
    for side, col in ((0, 0), (1, _COLUMNS)):
        corners = [int(upper[-side]), int(lower[-side])]
        ring = (
            [corners[0]] + [int(x) for x in rows[:, col]] + ([corners[1]] if corners[1] != corners[0] else [])
        )
        ids = np.asarray(ring)
        pos_all = np.concatenate([v] + new_pos)
        sd_all = np.concatenate([d["shapedirs"]] + new_sd)
        pd_all = np.concatenate([d["posedirs"]] + new_pd)
        w_all = np.concatenate([d["weights"]] + new_w)
        ctr = add(
            pos_all[ids].mean(0, keepdims=True),
            sd_all[ids].mean(0, keepdims=True),
            pd_all[ids].mean(0, keepdims=True),
            w_all[ids].mean(0, keepdims=True),
        )[0]
        for k in range(len(ids)):
            a, b = int(ids[k]), int(ids[(k + 1) % len(ids)])
            cav.append([int(ctr), b, a] if side == 0 else [int(ctr), a, b])
    cav_f = np.asarray(cav, np.int64)
    # orient the cavity against the lips: the shared rim edges must run opposite ways
    base_dir = {(int(a), int(b)) for t in f for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}
    clash = sum((int(t[k]), int(t[(k + 1) % 3])) in base_dir for t in cav_f for k in range(3))
    if clash:
        cav_f = cav_f[:, ::-1].copy()

    # ---- teeth: bands along an elliptic arch behind the opening
    sd_up = up_at.sd.mean(0, keepdims=True)
    sd_lo = lo_at.sd.mean(0, keepdims=True)
    P = d["posedirs"].shape[-1]
    y_line = float(((up_at.pos.mean(0) + lo_at.pos.mean(0)) / 2 - oc) @ ey)
    z_front = float(((np.concatenate([up_at.pos, lo_at.pos]) - oc) @ ez).min())
    parts_faces = [(cav_f, CAVITY)]
    for name, ax_f, back, y0, y1, w_rigid, sd_rigid in (
        ("upper", 0.40, 0.08, -0.06, 0.18, w_head, sd_up),
        ("lower", 0.37, 0.16, -0.24, -0.05, w_jaw, sd_lo),
    ):
        phi = np.linspace(-np.deg2rad(75), np.deg2rad(75), _ARCH)
        ax, az = ax_f * W, 0.50 * W
        zf = z_front - back * W
        arch = np.stack([ax * np.sin(phi), np.full_like(phi, y_line), zf - az * (1 - np.cos(phi))], 1)
        nrm = -np.stack([np.sin(phi) / ax, np.zeros_like(phi), np.cos(phi) / az], 1)
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        arch_w = oc + arch @ frame
        nrm_w = nrm @ frame
        tv, tf = _band(arch_w, nrm_w, ey, y0 * W, y1 * W, _TOOTH_DEPTH * W)
        tf = _outward(tv, tf)
        ids = add(
            tv,
            np.repeat(sd_rigid, len(tv), 0),
            np.zeros((len(tv), 3, P)),
            np.repeat(w_rigid[None], len(tv), 0),
        )
        parts_faces.append((ids[tf], UPPER_TEETH if name == "upper" else LOWER_TEETH))
    # ---- tongue: a flattened ellipsoid on the floor, behind the lower teeth
    tc = oc + (y_line - 0.17 * W) * ey + (z_front - 0.52 * W) * ez
    tv, tf = _ellipsoid(tc, np.array([0.22 * W, 0.25 * W, 0.065 * W]), np.stack([ex, ez, ey]))
    tf = _outward(tv, tf)
    ids = add(tv, np.repeat(sd_lo, len(tv), 0), np.zeros((len(tv), 3, P)), np.repeat(w_jaw[None], len(tv), 0))
    parts_faces.append((ids[tf], TONGUE))

    faces = np.concatenate([pf for pf, _ in parts_faces])
    face_part = np.concatenate([np.full(len(pf), k, np.int64) for pf, k in parts_faces])
    out = MouthInterior(
        vertices=np.concatenate(new_pos),
        faces=faces,
        face_part=face_part,
        shapedirs=np.concatenate(new_sd),
        posedirs=np.concatenate(new_pd),
        weights=np.concatenate(new_w),
        num_base_vertices=V,
        num_base_faces=F,
        opening=np.asarray(loop, np.int64),
    )
    log.debug(
        "mouth interior: %d vertices, %d faces (opening of %d vertices, %.1f mm wide)",
        len(out.vertices),
        len(faces),
        n,
        1000 * W,
    )
    return out


def append_mouth_interior(
    model_dict: dict[str, np.ndarray], interior: MouthInterior
) -> dict[str, np.ndarray]:
    """A new model dict with the interior's vertices and faces appended (originals keep their indices).

    The new vertices get zero columns in ``J_regressor`` (the joints are unchanged).

    Raises:
        ValueError: ``interior`` was built for a model of another size.
    """
    d = model_dict
    V, F = len(d["v_template"]), len(d["f"])
    if (V, F) != (interior.num_base_vertices, interior.num_base_faces):
        raise ValueError(
            f"the mouth interior was built for a model with {interior.num_base_vertices} vertices and "
            f"{interior.num_base_faces} faces; this one has {V} and {F}: build it from this model"
        )
    M = len(interior.vertices)
    out = dict(d)
    out["v_template"] = np.concatenate([d["v_template"], interior.vertices])
    out["f"] = np.concatenate([np.asarray(d["f"], np.int64), interior.faces])
    out["shapedirs"] = np.concatenate([d["shapedirs"], interior.shapedirs])
    out["posedirs"] = np.concatenate([d["posedirs"], interior.posedirs])
    out["weights"] = np.concatenate([d["weights"], interior.weights])
    out["J_regressor"] = np.concatenate([d["J_regressor"], np.zeros((len(d["J_regressor"]), M))], 1)
    return out
