"""Ray–triangle hits that do not depend on rounding: a ray through an edge or a vertex still hits.

Meshes are built from symmetric pieces (a UV-sphere eyeball has a vertex on its forward axis,
meridians at right angles), so the rays :mod:`flame_core.derived_landmarks` casts often pass
*exactly* through a vertex shared by a fan of triangles, or along an edge shared by two. In exact
arithmetic the hit is on the boundary of each of them (a barycentric coordinate is 0); in floating
point it is ±1e-16 outside, and which sign comes out depends on how the dot products were summed:
FMA contraction, the SIMD width numpy's dispatch picked for this CPU (SSE, AVX2, AVX-512), the
BLAS kernel. A strict ``u >= 0`` then makes the same model hit on one machine and miss on another.

So every hit test here:

1. accepts a point up to :data:`HIT_TOL` outside a triangle, in barycentric units, i.e. relative
   to the triangle's own size (rounding is ~1e-15 of it; 1e-9 is a nanometre on a millimetre
   triangle, nothing a landmark can tell apart);
2. keeps, per ray, the nearest hits within that tolerance of the nearest (a fan of triangles at a
   vertex all hit at the same distance, up to rounding);
3. among those, keeps the ones the point is deepest inside, again up to :data:`HIT_TOL`, and takes
   the lowest triangle index of what is left: a choice no ulp can flip, and one that moves no
   landmark (all the tied triangles hold the same point);
4. returns barycentrics clamped onto the triangle (and renormalised) only where a coordinate came
   out negative, so a hit in a triangle's interior is returned bit for bit as before.

A generic ray (one that crosses a single triangle's interior) gets exactly the result of the plain
Möller–Trumbore test.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HIT_TOL", "ray_cast", "frontal_hits"]

#: Slack of the hit tests, relative to the triangle's size (barycentric units) or to the distance.
HIT_TOL = 1e-9
#: A ray closer than this to the triangle's plane (|cos| of the angle between ray and normal) is
#: parallel to it: the hit would be ill-conditioned, and a neighbouring triangle holds it anyway.
_PARALLEL_COS = 1e-12
_MIN_T = 1e-9  # hits nearer the origin than this (metres) are the origin's own surface


def _longest_edge(tris: np.ndarray) -> np.ndarray:
    """``[F]`` longest edge of each triangle ``tris [F, 3, 3 or 2]``."""
    e = tris[:, [1, 2, 0]] - tris
    return np.sqrt((e**2).sum(-1)).max(1)


def _clamp_bary(b: np.ndarray) -> np.ndarray:
    """Barycentrics ``b [N, 3]`` clamped onto the triangle, only in rows with a negative entry."""
    neg = (b < 0).any(1)
    if not neg.any():
        return b
    c = np.maximum(b[neg], 0.0)
    out = b.copy()
    out[neg] = c / c.sum(1, keepdims=True)
    return out


def ray_cast(
    origins: np.ndarray, dirs: np.ndarray, tris: np.ndarray, chunk: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of rays ``origins/dirs [R, 3]`` on triangles ``tris [F, 3, 3]`` (Möller–Trumbore,
    with the tolerant tie-breaking of the module docstring).

    Returns:
        ``(tri [R]`` index into ``tris`` or -1, ``t [R]`` distance along ``dirs`` (inf on a miss),
        ``bary [R, 3])`` (weights of the triangle's three corners, each in [0, 1]).
    """
    a, e1, e2 = tris[:, 0], tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    n_len = np.linalg.norm(np.cross(e1, e2), axis=1)  # [F] twice the area
    size = _longest_edge(tris)  # [F]
    nondegenerate = n_len > _PARALLEL_COS * size**2
    R = len(origins)
    out_f, out_t, out_b = np.full(R, -1), np.full(R, np.inf), np.zeros((R, 3))
    for s in range(0, R, chunk):
        o, d = origins[s : s + chunk, None], dirs[s : s + chunk, None]  # [r, 1, 3]
        p = np.cross(d, e2)  # [r, F, 3]
        det = (e1 * p).sum(-1)  # = -d·(e1 × e2)
        # Relative to |d| |e1 × e2|: the test does not change with the mesh's units.
        ok = nondegenerate & (np.abs(det) > _PARALLEL_COS * np.linalg.norm(d, axis=-1) * n_len)
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        sv = o - a
        u = (sv * p).sum(-1) * inv
        q = np.cross(sv, e1)
        v = (d * q).sum(-1) * inv
        t = (e2 * q).sum(-1) * inv
        w = 1 - u - v
        depth = np.minimum(np.minimum(u, v), w)  # > 0 inside, 0 on an edge (barycentric units)
        ok &= (depth >= -HIT_TOL) & (t > _MIN_T)
        t = np.where(ok, t, np.inf)
        t_min = t.min(1, keepdims=True)  # [r, 1]
        hit = np.isfinite(t_min[:, 0])
        # Hits as near as the nearest, up to rounding: a fan at a vertex, a pair at an edge.
        tie = ok & (t <= t_min + HIT_TOL * np.maximum(np.where(hit[:, None], t_min, 0.0), size))
        deepest = np.where(tie, depth, -np.inf).max(1, keepdims=True)
        tie &= depth >= deepest - HIT_TOL
        k = tie.argmax(1)  # the lowest index among the ties
        rows = np.arange(len(k))
        out_f[s : s + chunk] = np.where(hit, k, -1)
        out_t[s : s + chunk] = np.where(hit, t[rows, k], np.inf)
        bary = np.stack([w[rows, k], u[rows, k], v[rows, k]], -1)
        out_b[s : s + chunk] = np.where(hit[:, None], _clamp_bary(np.where(hit[:, None], bary, 0.0)), 0.0)
    return out_f, out_t, out_b


def _grid_candidates(xy: np.ndarray, tris2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(point, triangle)`` whose grid cells match: the triangles whose 2D bounding box
    may hold each point ``xy [R, 2]`` (``tris2d [F, 3, 2]``), as two ``[P]`` index arrays.

    A point inside a bounding box (comparisons, exact) always lands in one of the box's cells:
    ``floor((x - origin) / cell)`` is monotonic in ``x`` in IEEE arithmetic, whatever the CPU.
    """
    lo, hi = tris2d.min(1), tris2d.max(1)
    cell = max(float(np.median(hi - lo)) * 2.0, 1e-9)
    origin = lo.min(0)
    c0 = np.floor((lo - origin) / cell).astype(np.int64)
    c1 = np.floor((hi - origin) / cell).astype(np.int64)
    nx, ny = c1[:, 0] - c0[:, 0] + 1, c1[:, 1] - c0[:, 1] + 1
    count = nx * ny
    face = np.repeat(np.arange(len(tris2d)), count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    width = int(c1[:, 1].max()) + 2
    keys = (c0[face, 0] + k % nx[face]) * width + c0[face, 1] + k // nx[face]
    order = np.argsort(keys, kind="stable")
    keys, face = keys[order], face[order]
    rc = np.floor((xy - origin) / cell).astype(np.int64)
    inside = (rc >= 0).all(1) & (rc[:, 1] < width - 1)
    rkey = np.where(inside, rc[:, 0] * width + rc[:, 1], -1)
    start, stop = np.searchsorted(keys, rkey, "left"), np.searchsorted(keys, rkey, "right")
    n = np.where(inside, stop - start, 0)
    ray = np.repeat(np.arange(len(xy)), n)
    idx = np.repeat(start, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    return ray, face[idx]


def _group_max(values: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """``[n]`` maximum of ``values [P]`` per ``group [P]`` (−inf for an empty group)."""
    out = np.full(n, -np.inf)
    np.maximum.at(out, group, values)
    return out


def frontal_hits(xy: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Front-most hit of rays along −z through ``xy [R, 2]`` on triangles ``tris [F, 3, 3]``.

    Ties (a probe on an edge or a vertex, up to :data:`HIT_TOL`) go, after depth and how deep
    inside, to the triangle that faces the viewer most (largest normal z; so a probe on the edge
    between the frontal skin and a steep side counts as frontal skin, whichever way rounding
    went and however the faces are numbered), then to the lowest triangle index.

    Returns:
        ``(tri [R]`` index into ``tris`` or -1, ``z [R]`` of the hit, ``bary [R, 3])``.
    """
    R = len(xy)
    ray, tri = _grid_candidates(xy, tris[:, :, :2])
    out_f, out_z, out_b = np.full(R, -1), np.full(R, -np.inf), np.zeros((R, 3))
    if len(ray) == 0:
        return out_f, out_z, out_b
    size = _longest_edge(tris)  # [F]
    normal = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    nz = normal[:, 2] / np.maximum(np.linalg.norm(normal, axis=1), 1e-300)  # [F] cos of the tilt
    a, b, c = (tris[tri, i, :2] for i in range(3))
    p = xy[ray]
    den = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    # twice the projected area; relative to the triangle's size (edge-on triangles are left out)
    ok = np.abs(den) > _PARALLEL_COS * size[tri] ** 2
    den = np.where(ok, den, 1.0)
    l1 = ((p - a)[:, 0] * (c - a)[:, 1] - (p - a)[:, 1] * (c - a)[:, 0]) / den
    l2 = ((b - a)[:, 0] * (p - a)[:, 1] - (b - a)[:, 1] * (p - a)[:, 0]) / den
    lam = np.stack([1 - l1 - l2, l1, l2], 1)
    depth = lam.min(1)
    ok &= depth >= -HIT_TOL
    z = (lam * tris[tri, :, 2]).sum(1)
    ray, tri, lam, z, depth = ray[ok], tri[ok], lam[ok], z[ok], depth[ok]
    if len(ray) == 0:
        return out_f, out_z, out_b
    # per ray: the front-most up to rounding, then the deepest inside, then the most frontal
    keep = z >= _group_max(z, ray, R)[ray] - HIT_TOL * size[tri]
    keep &= depth >= _group_max(np.where(keep, depth, -np.inf), ray, R)[ray] - HIT_TOL
    keep &= nz[tri] >= _group_max(np.where(keep, nz[tri], -np.inf), ray, R)[ray] - HIT_TOL
    ray, tri, lam, z = ray[keep], tri[keep], lam[keep], z[keep]
    order = np.lexsort((tri, ray))  # per ray, the lowest triangle index first
    first = order[np.r_[True, np.diff(ray[order]) != 0]]
    out_f[ray[first]], out_z[ray[first]], out_b[ray[first]] = tri[first], z[first], _clamp_bary(lam[first])
    return out_f, out_z, out_b
