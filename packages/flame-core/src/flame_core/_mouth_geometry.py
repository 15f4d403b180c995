"""Mesh-building helpers of :mod:`flame_core.mouth_interior` (split out of it): boundary loops,
arc-length resampling, zipping two chains into triangles, the teeth band, the tongue ellipsoid and
outward-facing winding. Plain numpy; vertex arrays ``[n, 3]``, faces ``[m, 3]``."""

from __future__ import annotations

import numpy as np

__all__: list[str] = []


def _boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """The mesh's boundary loops, each an ordered ``[n]`` vertex array."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, 1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    border = e[cnt[inv.ravel()] == 1]  # directed as in their one face
    nxt: dict[int, int] = {}
    for a, b in border:
        nxt[int(a)] = int(b)
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if v == start and len(loop) >= 3:
            loops.append(np.asarray(loop))
    return loops


def _arc_fraction(points: np.ndarray) -> np.ndarray:
    """Cumulative arc length along a polyline ``[n, 3]``, from 0 to 1: ``[n]``."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.r_[0.0, np.cumsum(seg)]
    return cum / max(float(cum[-1]), 1e-12)


def _resample(chain_x: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For non-decreasing ``chain_x [n]``: segment ``(i, i+1, t)`` holding each of ``xs [m]``."""
    i = np.clip(np.searchsorted(chain_x, xs, side="right") - 1, 0, len(chain_x) - 2)
    t = np.clip((xs - chain_x[i]) / np.maximum(chain_x[i + 1] - chain_x[i], 1e-12), 0.0, 1.0)
    return i, i + 1, t


def _zip(a: np.ndarray, ua: np.ndarray, b: np.ndarray, ub: np.ndarray) -> list[list[int]]:
    """Triangle strip between polylines ``a`` and ``b`` (vertex ids, parameters ``ua``/``ub`` in [0, 1]).

    Triangles run ``a[i] -> b[j] -> ...`` so a strip from an upper rim to a row below it has the
    same winding as the grid built after it.
    """
    i = j = 0
    tris = []
    while i < len(a) - 1 or j < len(b) - 1:
        adv_a = j == len(b) - 1 or (i < len(a) - 1 and ua[i + 1] <= ub[j + 1])
        if adv_a:
            tris.append([int(a[i]), int(b[j]), int(a[i + 1])])
            i += 1
        else:
            tris.append([int(a[i]), int(b[j]), int(b[j + 1])])
            j += 1
    return tris


def _band(arch: np.ndarray, normal: np.ndarray, up: np.ndarray, y0: float, y1: float, thick: float):
    """A closed band (teeth) along ``arch [n, 3]`` (inward normals ``[n, 3]``) between heights
    ``y0 < y1`` along ``up``: ``(vertices [4n, 3], faces)``; sections are front-bottom, front-top,
    back-top, back-bottom."""
    n = len(arch)
    sec = np.stack(
        [arch + y0 * up, arch + y1 * up, arch + y1 * up + thick * normal, arch + y0 * up + thick * normal], 1
    )
    verts = sec.reshape(-1, 3)
    faces = []
    for i in range(n - 1):
        for k in range(4):
            a, b = 4 * i + k, 4 * i + (k + 1) % 4
            c, d = a + 4, b + 4
            faces += [[a, b, d], [a, d, c]]
    for base, flip in ((0, True), (4 * (n - 1), False)):
        q = [base, base + 1, base + 2, base + 3]
        tri = [[q[0], q[1], q[2]], [q[0], q[2], q[3]]]
        faces += [t[::-1] for t in tri] if flip else tri
    return verts, np.asarray(faces, np.int64)


def _ellipsoid(center: np.ndarray, axes: np.ndarray, frame: np.ndarray, n_lat: int = 6, n_lon: int = 12):
    """A closed ellipsoid ``(vertices, faces)``; ``axes`` along the rows of ``frame [3, 3]``."""
    th = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    ph = 2 * np.pi * np.arange(n_lon) / n_lon
    tt, pp = np.meshgrid(th, ph, indexing="ij")
    unit = np.stack([np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)], -1).reshape(-1, 3)
    unit = np.concatenate([[[0, 0, 1.0]], unit, [[0, 0, -1.0]]])
    verts = center + (unit * axes) @ frame
    faces = []
    nr = len(th)

    def idx(i: int, j: int) -> int:
        return 1 + i * n_lon + (j % n_lon)

    for j in range(n_lon):
        faces.append([0, idx(0, j), idx(0, j + 1)])
        faces.append([len(verts) - 1, idx(nr - 1, j + 1), idx(nr - 1, j)])
        for i in range(nr - 1):
            faces += [
                [idx(i, j), idx(i + 1, j), idx(i + 1, j + 1)],
                [idx(i, j), idx(i + 1, j + 1), idx(i, j + 1)],
            ]
    return verts, np.asarray(faces, np.int64)


def _outward(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """``f`` flipped if the closed surface it forms has negative signed volume."""
    vol = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum()
    return f if vol > 0 else f[:, ::-1].copy()
