"""Ray–triangle hits that a few ulps cannot flip: rays exactly through a vertex or an edge, meshes
and rays nudged with ``np.nextafter``, the eyeballs' iris embedding on a deliberately aligned mesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flame_core.derived_landmarks import LEFT_EYE_JOINT, RIGHT_EYE_JOINT, iris_embedding
from flame_core.raycast import HIT_TOL, frontal_hits, ray_cast

# nudges: (ulps, direction); direction +1 / -1 moves every coordinate up / down, 0 a random sign each
NUDGES = [(1, +1), (1, -1), (1, 0), (3, 0), (16, +1), (16, -1), (16, 0), (64, 0)]


def _nudge(x: np.ndarray, ulps: int, direction: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` moved ``ulps`` representable doubles up, down or (0) a random way per element."""
    sign = np.full(x.shape, float(direction)) if direction else rng.choice([-1.0, 1.0], size=x.shape)
    y = np.array(x, np.float64)
    for _ in range(ulps):
        y = np.nextafter(y, sign * np.inf)
    return y


def _uv_sphere(centre, radius: float, n_lat: int = 8, n_lon: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices [V, 3], faces [F, 3])`` of a closed UV sphere with its poles on the z axis and a
    meridian every ``360 / n_lon`` degrees (one in the x–z and one in the y–z plane): rays along
    +z and in those planes pass exactly through vertices and edges. Faces point outwards."""
    th = np.pi * np.arange(1, n_lat) / n_lat
    ph = 2 * np.pi * np.arange(n_lon) / n_lon
    ring = np.stack(
        [
            np.outer(np.sin(th), np.cos(ph)),
            np.outer(np.sin(th), np.sin(ph)),
            np.outer(np.cos(th), np.ones(n_lon)),
        ],
        -1,
    ).reshape(-1, 3)
    v = np.concatenate([[[0, 0, 1.0]], ring, [[0, 0, -1.0]]]) * radius + np.asarray(centre, np.float64)
    idx = 1 + np.arange((n_lat - 1) * n_lon).reshape(n_lat - 1, n_lon)
    nxt = np.roll(idx, -1, axis=1)
    bottom = len(v) - 1
    faces = [np.stack([np.zeros(n_lon, np.int64), idx[0], nxt[0]], 1)]
    for i in range(n_lat - 2):
        faces += [np.stack([idx[i], idx[i + 1], nxt[i + 1]], 1), np.stack([idx[i], nxt[i + 1], nxt[i]], 1)]
    faces.append(np.stack([np.full(n_lon, bottom), nxt[-1], idx[-1]], 1))
    return v, np.concatenate(faces)


def _point(tris: np.ndarray, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
    return (tris[tri] * bary[:, :, None]).sum(1)


def _aligned_rays(v: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rays from ``centre`` through the +z pole (a vertex of 12 triangles), through a ring vertex,
    through the midpoint of a meridian edge and of a ring edge, and through a face's interior;
    with the points they must hit ``[5, 3]``."""
    pole, ring_v = v[0], v[1]  # ring 1, longitude 0
    meridian_mid = 0.5 * (v[1] + v[13])  # ring 1 to ring 2 along longitude 0 (the x–z plane)
    ring_mid = 0.5 * (v[13] + v[14])  # along ring 2
    interior = (v[0] + v[1] + v[2]) / 3
    targets = np.stack([pole, ring_v, meridian_mid, ring_mid, interior])
    dirs = targets - centre
    return np.tile(centre, (len(targets), 1)), dirs / np.linalg.norm(dirs, axis=1, keepdims=True), targets


def _scalar_moller_trumbore(o, d, tris):
    """The textbook test, one triangle at a time (the oracle for rays that cross an interior)."""
    best = (-1, np.inf, None)
    for k, (a, b, c) in enumerate(tris):
        e1, e2 = b - a, c - a
        p = np.cross(d, e2)
        det = float(e1 @ p)
        if abs(det) < 1e-20:
            continue
        s = o - a
        u = float(s @ p) / det
        q = np.cross(s, e1)
        w = float(d @ q) / det
        t = float(e2 @ q) / det
        if u >= 0 and w >= 0 and u + w <= 1 and 1e-9 < t < best[1]:
            best = (k, t, np.array([1 - u - w, u, w]))
    return best


def test_generic_rays_match_the_textbook_test():
    v, f = _uv_sphere([0.01, -0.02, 0.03], 0.012)
    tris = v[f]
    rng = np.random.default_rng(0)
    origins = rng.normal(size=(40, 3)) * 0.003 + [0.01, -0.02, 0.03]
    dirs = rng.normal(size=(40, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    tri, t, bary = ray_cast(origins, dirs, tris, chunk=7)
    for r in range(len(origins)):
        k, t_want, b_want = _scalar_moller_trumbore(origins[r], dirs[r], tris)
        assert tri[r] == k
        np.testing.assert_allclose(t[r], t_want, rtol=1e-12)
        np.testing.assert_allclose(bary[r], b_want, atol=1e-12)


def test_rays_through_vertices_and_edges_hit_whatever_the_rounding():
    centre = np.array([0.0316, 0.0263, 0.0618])  # an eye joint's neighbourhood, metres
    v, f = _uv_sphere(centre, 0.012)
    o, d, targets = _aligned_rays(v, centre)
    tri0, t0, bary0 = ray_cast(o, d, v[f])
    assert (tri0 >= 0).all()
    np.testing.assert_allclose(_point(v[f], tri0, bary0), targets, rtol=0, atol=1e-12)
    assert (bary0 >= 0).all() and np.allclose(bary0.sum(1), 1.0, atol=1e-15)
    # the pole is shared by a fan of 12, the meridian midpoint by two triangles
    assert np.isin(tri0[0], np.flatnonzero((f == 0).any(1)))
    rng = np.random.default_rng(1)
    for ulps, direction in NUDGES:
        vn = _nudge(v, ulps, direction, rng)
        on, dn = _nudge(o, ulps, -direction, rng), _nudge(d, ulps, direction, rng)
        tri, t, bary = ray_cast(on, dn, vn[f])
        assert (tri == tri0).all(), (ulps, direction, tri, tri0)  # the same triangles, not just a hit
        np.testing.assert_allclose(bary, bary0, rtol=0, atol=1e-9)
        np.testing.assert_allclose(t, t0, rtol=1e-9)
        np.testing.assert_allclose(_point(vn[f], tri, bary), targets, rtol=0, atol=1e-9 * 0.012)


def test_tolerance_does_not_invent_hits():
    """A ray 1e-6 (relative) past the edge of an open mesh misses; one in the triangle's plane
    misses; one pointing away misses."""
    tris = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]) * 0.01
    o = np.array([[0.005 + 1e-8, 0.005 + 1e-8, 0.01], [-0.01, 0.001, 0.0], [0.001, 0.001, 0.01]])
    d = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    tri, t, _ = ray_cast(o, d, tris)
    assert (tri == -1).all() and np.isinf(t).all()
    # on the hypotenuse within the tolerance: a hit, with barycentrics on the triangle
    tri, _, bary = ray_cast(np.array([[0.005 + 1e-13, 0.005, 0.01]]), d[:1], tris)
    assert tri[0] == 0 and (bary >= 0).all() and bary[0, 0] == 0.0 and bary.sum() == pytest.approx(1.0)
    assert HIT_TOL < 1e-6


def test_frontal_probes_on_vertices_and_edges_are_stable():
    v, f = _uv_sphere([0.0, 0.0, 0.0], 0.1, n_lat=10, n_lon=16)
    front = f[(v[f][:, :, 2] > -1e-12).all(1)]  # the front half, seen along -z
    probes = np.concatenate([v[:60, :2], 0.5 * (v[f[:40, 0], :2] + v[f[:40, 1], :2])])
    tri0, z0, bary0 = frontal_hits(probes, v[front])
    assert (tri0 >= 0).all() and (bary0 >= 0).all()
    rng = np.random.default_rng(2)
    for ulps, direction in NUDGES:
        vn = _nudge(v, ulps, direction, rng)
        tri, z, bary = frontal_hits(_nudge(probes, ulps, -direction, rng), vn[front])
        assert (tri == tri0).all(), (ulps, direction)
        np.testing.assert_allclose(bary, bary0, rtol=0, atol=1e-9)
        np.testing.assert_allclose(z, z0, rtol=0, atol=1e-9 * 0.1)
    # the face numbering changes the triangle chosen among ties, never the point or its tilt
    perm = rng.permutation(len(front))
    tri, z, bary = frontal_hits(probes, v[front[perm]])
    np.testing.assert_allclose(_point(v[front[perm]], tri, bary), _point(v[front], tri0, bary0), atol=1e-15)
    n = np.cross(v[front][:, 1] - v[front][:, 0], v[front][:, 2] - v[front][:, 0])
    nz = n[:, 2] / np.linalg.norm(n, axis=1)
    np.testing.assert_allclose(nz[perm][tri], nz[tri0], atol=1e-12)


def _two_eyed_model(rng: np.random.Generator | None = None, ulps: int = 0, direction: int = 0):
    """Two UV-sphere eyeballs skinned to FLAME's eye joints, poles on the forward axis (+z), and a
    one-triangle 'head' for the other joints: ``(vertices, faces, weights [V, 5], J_regressor)``."""
    parts, faces, joint = [], [], []
    for j, x in ((LEFT_EYE_JOINT, 0.0316), (RIGHT_EYE_JOINT, -0.0316)):
        ev, ef = _uv_sphere([x, 0.0263, 0.0618], 0.012)
        faces.append(ef + sum(len(p) for p in parts))
        parts.append(ev)
        joint += [j] * len(ev)
    parts.append(np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.0, 0.01, 0.0]]))
    faces.append(np.array([[0, 1, 2]]) + sum(len(p) for p in parts[:-1]))
    joint += [0] * 3
    v, f, joint = np.concatenate(parts), np.concatenate(faces), np.asarray(joint)
    if ulps:
        v = _nudge(v, ulps, direction, rng)
    weights = np.eye(5)[joint]
    regressor = np.zeros((5, len(v)))
    for j in range(5):
        members = np.flatnonzero(joint == j) if j in (0, LEFT_EYE_JOINT, RIGHT_EYE_JOINT) else [len(v) - 1]
        regressor[j, members] = 1.0 / len(members)
    return v, f, weights, regressor


def test_iris_embedding_on_an_aligned_eyeball_survives_ulp_nudges():
    v, f, w, jr = _two_eyed_model()
    emb0 = iris_embedding(v, f, w, jr)
    pts0 = emb0(torch.as_tensor(v)[None], torch.as_tensor(f))[0].numpy()
    # each pupil is the pole vertex of its eyeball, exactly in front of the centre
    centres = (jr @ v)[[RIGHT_EYE_JOINT, LEFT_EYE_JOINT]]
    np.testing.assert_allclose(pts0[[0, 5]], centres + [0, 0, 0.012], atol=1e-15)
    rng = np.random.default_rng(3)
    for ulps, direction in NUDGES:
        vn, fn, wn, jrn = _two_eyed_model(rng, ulps, direction)
        emb = iris_embedding(vn, fn, wn, jrn)
        assert torch.equal(emb.face_idx, emb0.face_idx), (ulps, direction)
        torch.testing.assert_close(emb.bary_coords, emb0.bary_coords, atol=1e-9, rtol=0)
        pts = emb(torch.as_tensor(vn)[None], torch.as_tensor(fn))[0].numpy()
        np.testing.assert_allclose(pts, pts0, rtol=0, atol=1e-9 * 0.012)
