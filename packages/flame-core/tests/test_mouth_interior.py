"""The mouth interior (teeth, tongue, oral cavity) on the procedural head and a FLAME-format file."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from flame_core.landmarks import LandmarkEmbedding
from flame_core.model import FlameModel
from flame_core.mouth_interior import (
    LOWER_INNER_LIP,
    UPPER_INNER_LIP,
    append_mouth_interior,
    build_mouth_interior,
)
from flame_core.procedural import build_procedural_head
from flame_core.rotations import axis_angle_to_matrix

JAW_OPEN = torch.tensor([[0.3, 0.0, 0.0]])


@pytest.fixture(scope="module")
def proc() -> FlameModel:
    return FlameModel.procedural(num_shape=20, num_expression=20, mouth_interior=True)


@pytest.fixture(scope="module")
def flame_format(tmp_path_factory) -> FlameModel:
    """The procedural head reshaped (template stretched per axis), its expression basis mixed by a
    random orthogonal matrix, saved as a FLAME pickle with only the 105-point embedding beside it
    and loaded back through :meth:`FlameModel.from_file` with the mouth interior."""
    folder = (
        build_procedural_head()
        .disguised(seed=3, stretch=(1.08, 0.95, 1.05))
        .save(tmp_path_factory.mktemp("flame-fmt"), full_embedding=False)
    )
    return FlameModel.from_file(folder / "procedural_flame.pkl", 20, 20, mouth_interior=True)


HEADS = ["proc", "flame_format"]


def _verts(m: FlameModel, **kw) -> np.ndarray:
    with torch.no_grad():
        return m(**kw).vertices[0].double().numpy()


def _mouth_width(m: FlameModel, v: np.ndarray) -> float:
    lm = m.landmark_embedding.select([78, 308])(torch.from_numpy(v)[None], m.faces)[0].numpy()
    return float(np.linalg.norm(lm[0] - lm[1]))


def _crossings(points: np.ndarray, tris: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Number of triangles ``[T, 3, 3]`` each ray ``points [N, 3] + t·direction`` (t > 0) crosses."""
    a, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    p = np.cross(direction, e2)
    det = (e1 * p).sum(1)
    ok = np.abs(det) > 1e-14
    inv = np.where(ok, 1 / np.where(ok, det, 1), 0)
    out = np.zeros(len(points), np.int64)
    for i, o in enumerate(points):
        s = o - a
        u = (s * p).sum(1) * inv
        qv = np.cross(s, e1)
        w = (qv @ direction) * inv
        t = (qv * e2).sum(1) * inv
        out[i] = int((ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0)).sum())
    return out


def _inside_head(m: FlameModel, v: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether ``points`` lie inside the head's skin with its mouth opening capped flat (flesh or
    mouth air, not outside the face): even-odd rule, majority of three ray directions."""
    mi = m.mouth_interior
    base = m.faces[: mi.num_base_faces].numpy()
    loop = mi.opening
    c = v[loop].mean(0)
    cap = np.stack([np.broadcast_to(c, (len(loop), 3)), v[loop], v[np.roll(loop, -1)]], 1)
    tris = np.concatenate([v[base], cap])
    dirs = [np.array(x) / np.linalg.norm(x) for x in ([0.05, 0.1, 1.0], [1.0, 0.13, 0.07], [0.11, -1.0, 0.2])]
    votes = sum(_crossings(points, tris, dvec) % 2 for dvec in dirs)
    return votes >= 2


@pytest.mark.parametrize("name", HEADS)
def test_appends_without_touching_the_head(name, request):
    m = request.getfixturevalue(name)
    mi = m.mouth_interior
    plain = (
        FlameModel.procedural(20, 20, mouth_interior=False)
        if name == "proc"
        else FlameModel.from_file(m.source, 20, 20)
    )
    F0, V0 = plain.num_faces, plain.num_vertices
    assert (m.num_base_faces, mi.num_base_faces, mi.num_base_vertices) == (F0, F0, V0)
    assert m.num_faces > F0 and m.num_vertices > V0
    torch.testing.assert_close(m.faces[:F0], plain.faces)
    assert m.identity_hash() != plain.identity_hash()
    for part in ("cavity", "upper_teeth", "lower_teeth", "tongue"):
        assert len(mi.part_faces(part)) >= 20, part
    np.testing.assert_allclose(mi.weights.sum(1), 1.0, atol=1e-9)
    assert (mi.weights >= -1e-12).all()
    g = torch.Generator().manual_seed(1)
    kw = dict(
        shape=torch.randn(1, 20, generator=g),
        expression=torch.randn(1, 20, generator=g),
        jaw_pose=JAW_OPEN,
        eye_pose=0.2 * torch.randn(1, 6, generator=g),
    )
    a, b = m(**kw), plain(**kw)
    torch.testing.assert_close(a.vertices[0, :V0], b.vertices[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(a.joints, b.joints, atol=1e-6, rtol=0)
    # landmarks (and so control maps drawn from them) are unchanged
    torch.testing.assert_close(
        m.landmark_embedding(a.vertices, m.faces),
        plain.landmark_embedding(b.vertices, plain.faces),
        atol=1e-6,
        rtol=0,
    )


@pytest.mark.parametrize("name", HEADS)
def test_cavity_closes_the_mouth_opening(name, request):
    m = request.getfixturevalue(name)
    mi = m.mouth_interior
    f = m.faces.numpy()
    surf = np.concatenate([f[: mi.num_base_faces], f[mi.part_faces("cavity")]])
    und = Counter(
        tuple(sorted((int(a), int(b)))) for t in surf for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))
    )
    assert set(und.values()) == {2}, "skin + cavity must be closed (every edge in two faces)"
    directed = Counter((int(a), int(b)) for t in surf for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])))
    assert max(directed.values()) == 1, "the cavity must be oriented like the skin"
    # the rim is the opening: between the inner-lip landmarks
    v = _verts(m)
    lm = m.landmark_embedding.select([13, 14, 78, 308])(torch.from_numpy(v)[None], m.faces)[0].numpy()
    rim = v[mi.opening]
    assert rim[:, 0].min() >= lm[2, 0] - 0.004 and rim[:, 0].max() <= lm[3, 0] + 0.004
    assert np.linalg.norm(rim.mean(0)[:2] - lm[:2].mean(0)[:2]) < 0.006


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("jaw", [0.0, 0.3])
def test_interior_stays_inside_the_head(name, jaw, request):
    m = request.getfixturevalue(name)
    g = torch.Generator().manual_seed(5)
    for kw in (
        {},
        {"shape": 1.5 * torch.randn(1, 20, generator=g), "expression": 1.5 * torch.randn(1, 20, generator=g)},
    ):
        v = _verts(m, jaw_pose=torch.tensor([[jaw, 0.0, 0.0]]), **kw)
        new = v[m.mouth_interior.num_base_vertices :]
        inside = _inside_head(m, v, new)
        assert inside.all(), f"{(~inside).sum()} interior vertices outside the face (jaw {jaw}, {sorted(kw)})"
        lips = m.landmark_embedding.select(list(UPPER_INNER_LIP + LOWER_INNER_LIP))(
            torch.from_numpy(v)[None], m.faces
        )
        assert new[:, 2].max() < lips[0, :, 2].max().item(), "an interior vertex is in front of the lips"
    # the oracle itself: the same points moved in front of the face (1 cm before the nose tip) are out
    ahead = new.copy()
    ahead[:, 2] = v[:, 2].max() + 0.01
    assert not _inside_head(m, v, ahead).any()


@pytest.mark.parametrize("name", HEADS)
def test_nothing_tears_when_the_jaw_opens(name, request):
    m = request.getfixturevalue(name)
    mi = m.mouth_interior
    faces = m.faces.numpy()
    f = faces[mi.num_base_faces :]
    v0, v1 = _verts(m), _verts(m, jaw_pose=JAW_OPEN)

    def edges(v, f):
        return np.linalg.norm(v[f[:, [1, 2, 0]]] - v[f], axis=-1)

    e0, e1 = edges(v0, f), edges(v1, f)
    # the lips' own triangles around the opening stretch at the corners as the jaw opens; the
    # interior, attached there, may stretch as far but no further
    base = faces[: mi.num_base_faces]
    lips = base[np.isin(base, mi.opening).any(1)]
    lips_max = edges(v1, lips).max()
    W = _mouth_width(m, v0)
    assert e1.max() <= 1.05 * lips_max, (e1.max(), lips_max)
    assert e1.max() < 0.7 * W, (e0.max(), e1.max(), W)
    # away from the rim (edges between new vertices) the cavity stretches far less
    new = (f >= mi.num_base_vertices) & (f[:, [1, 2, 0]] >= mi.num_base_vertices)
    assert e1[new].max() < 0.5 * W and e1[new].max() < 2.0 * e0.max(), (e1[new].max(), e0.max(), W)
    # the opening really opens and the cavity follows it: the rim's height grows with the jaw
    assert np.ptp(v1[mi.opening, 1]) > np.ptp(v0[mi.opening, 1]) + 0.005


@pytest.mark.parametrize("name", HEADS)
def test_teeth_rigid_with_head_and_jaw(name, request):
    m = request.getfixturevalue(name)
    mi = m.mouth_interior
    up = mi.part_vertices("upper_teeth")
    low = np.concatenate([mi.part_vertices("lower_teeth"), mi.part_vertices("tongue")])
    shape = torch.randn(1, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        rest = m(shape=shape)
        v0, J0 = rest.vertices[0].double().numpy(), rest.joints[0].double().numpy()
        v_jaw = m(shape=shape, jaw_pose=JAW_OPEN).vertices[0].double().numpy()
        pose = dict(
            global_orient=torch.tensor([[0.1, 0.4, -0.2]]), neck_pose=torch.tensor([[0.2, -0.3, 0.1]])
        )
        v_head = m(shape=shape, jaw_pose=JAW_OPEN, **pose).vertices[0].double().numpy()
    # a jaw motion leaves the upper teeth and moves the lower teeth and tongue rigidly about the jaw
    np.testing.assert_allclose(v_jaw[up], v0[up], atol=1e-6)
    R = axis_angle_to_matrix(JAW_OPEN.double())[0].numpy()
    np.testing.assert_allclose(v_jaw[low], (v0[low] - J0[2]) @ R.T + J0[2], atol=2e-6)
    assert np.linalg.norm(v_jaw[low] - v0[low], axis=1).min() > 0.003
    # a head motion moves both rigidly: pairwise distances kept
    for ids in (up, low):
        d0 = np.linalg.norm(v_jaw[ids, None] - v_jaw[None, ids], axis=-1)
        d1 = np.linalg.norm(v_head[ids, None] - v_head[None, ids], axis=-1)
        np.testing.assert_allclose(d1, d0, atol=2e-6)


def test_closed_mouth_and_missing_lips_are_refused(proc):
    ph = build_procedural_head()
    d = ph.model_dict
    emb = ph.embedding
    keep = [int(i) for i in emb.landmark_indices.tolist() if i not in (13, 14)]
    with pytest.raises(ValueError, match="lacks the inner-lip landmarks .*13"):
        build_mouth_interior(d, emb.select(keep))
    # the opening closed by a fan: no boundary loop at the lips
    loop = proc.mouth_interior.opening
    c = len(d["v_template"])
    closed = dict(d)
    closed["v_template"] = np.concatenate([d["v_template"], d["v_template"][loop].mean(0, keepdims=True)])
    fan = np.stack([np.full(len(loop), c), np.roll(loop, -1), loop], 1)
    closed["f"] = np.concatenate([d["f"], fan])
    for k in ("shapedirs", "posedirs", "weights"):
        closed[k] = np.concatenate([d[k], d[k][loop[:1]]])
    with pytest.raises(ValueError, match="no mouth opening"):
        build_mouth_interior(closed, LandmarkEmbedding(emb.face_idx, emb.bary_coords, emb.landmark_indices))
    with pytest.raises(ValueError, match="build it from this model"):
        append_mouth_interior(closed, proc.mouth_interior)
