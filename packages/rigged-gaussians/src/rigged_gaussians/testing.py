"""Deterministic random scenes and rigs for tests and benchmarks (no randomness without a seed).

- :func:`cameras` ``(C, width, height)`` -> ``viewmats [C,4,4]``, ``Ks [C,3,3]`` on a small arc
  looking at the origin (OpenCV convention, world->camera).
- :func:`random_scene` -> a dict of world-space Gaussians in front of ``C`` cameras whose keys are
  the argument names of ``rasterize`` (``rg.rasterize(**scene)`` works).
- :func:`random_rig` -> a dict with a small closed mesh posed ``B`` times, local Gaussians bound
  to its triangles and ``[B,C]`` cameras whose keys are the argument names of ``render_rigged``.

Both take ``edge_cases=True`` to include the hard cases every backend must survive: Gaussians
behind the camera, straddling the near plane, far off-screen, with huge and tiny scales, and (for
rigs) zero-area triangles with Gaussians bound to them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["NO_CUDA", "cameras", "random_rig", "random_scene", "sphere_mesh"]

# why the GPU tests skip (the ``cuda`` marker; ``nox -s gpu_tests`` runs them on a GPU)
NO_CUDA = "needs an NVIDIA GPU and rigged_gaussians built with CUDA (RG_CUDA=ON)"


def cameras(
    C: int,
    width: int,
    height: int,
    dist: float = 4.0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    spread: float = 0.3,
) -> tuple[Tensor, Tensor]:
    """``C`` cameras on an arc (``spread`` radians apart) at ``dist`` from the origin.

    Returns ``viewmats [C,4,4]`` (world->camera, OpenCV: x right, y down, z forward) and ``Ks
    [C,3,3]`` with focal ``1.1 max(width, height)`` and a slightly off-centre principal point.
    """
    viewmats, Ks = [], []
    for c in range(C):
        a = spread * (c - (C - 1) / 2)
        R = torch.tensor(
            [[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0], [math.sin(a), 0.0, math.cos(a)]],
            dtype=torch.float64,
        )
        vm = torch.eye(4, dtype=torch.float64)
        vm[:3, :3] = R
        vm[:3, 3] = torch.tensor([0.05 * c, -0.02, dist], dtype=torch.float64)
        viewmats.append(vm)
        f = 1.1 * max(width, height)
        K = torch.tensor(
            [[f, 0.0, width / 2 + 0.3], [0.0, f, height / 2 - 0.7], [0.0, 0.0, 1.0]], dtype=torch.float64
        )
        Ks.append(K)
    return (
        torch.stack(viewmats).to(dtype=dtype, device=device),
        torch.stack(Ks).to(dtype=dtype, device=device),
    )


def _edge_means_scales(means: Tensor, scales: Tensor, viewmat: Tensor) -> None:
    """Overwrite the first Gaussians (in place) with edge cases for camera ``viewmat [4,4]``."""
    n = means.shape[0]
    R = viewmat[:3, :3].double()
    t = viewmat[:3, 3].double()

    def world(p_cam: list[float]) -> Tensor:
        return (R.T @ (torch.tensor(p_cam, dtype=torch.float64) - t)).to(means.dtype)

    cases = [
        (world([0.1, 0.0, -1.0]), 0.05),  # behind the camera
        (world([0.0, 0.1, 0.005]), 0.05),  # in front of the camera but before the near plane
        (world([0.0, 0.0, 0.3]), 0.5),  # straddling near: close, large
        (world([500.0, 0.0, 4.0]), 0.05),  # far off-screen right
        (world([0.0, -800.0, 4.0]), 0.05),  # far off-screen up
        (None, 1e4),  # huge scale (covers the whole image)
        (None, 1e-8),  # tiny scale (the eps2d low-pass dominates)
        (world([0.0, 0.0, 1e12]), 0.05),  # beyond the far plane
    ]
    for i, (m, s) in enumerate(cases[:n]):
        if m is not None:
            means[i] = m
        scales[i] = s


def random_scene(
    n: int,
    C: int = 1,
    width: int = 64,
    height: int = 64,
    sh_degree: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    edge_cases: bool = False,
    backgrounds: bool = False,
) -> dict[str, Any]:
    """``n`` random world-space Gaussians in front of ``C`` cameras (:func:`cameras`).

    Means uniform in ``[-0.8, 0.8]^3``, random (unnormalised) quaternions, linear scales in
    ``[0.01, 0.09]``, activated opacities in ``[0.05, 0.95]``; colours ``[n,3]`` in 0..1, or SH
    coefficients ``[n,(d+1)^2,3]`` when ``sh_degree`` is given. ``edge_cases`` replaces the first
    (up to 8) Gaussians by hard cases relative to camera 0. Returns a dict with the argument names
    of ``rasterize``: ``means quats scales opacities colors viewmats Ks width height sh_degree``
    (and ``backgrounds [C,3]`` when asked). Tensors are leaves without ``requires_grad``.
    """
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * 0.8
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.08 + 0.01
    opacities = torch.rand(n, generator=g, dtype=torch.float64) * 0.9 + 0.05
    if sh_degree is not None:
        K = (sh_degree + 1) ** 2
        colors = torch.rand(n, K, 3, generator=g, dtype=torch.float64) * 0.6 - 0.2
    else:
        colors = torch.rand(n, 3, generator=g, dtype=torch.float64)
    viewmats, Ks = cameras(C, width, height, dtype=torch.float64)
    if edge_cases:
        _edge_means_scales(means, scales, viewmats[0])
    out: dict[str, Any] = {
        "means": means,
        "quats": quats,
        "scales": scales,
        "opacities": opacities,
        "colors": colors,
        "viewmats": viewmats,
        "Ks": Ks,
    }
    if backgrounds:
        out["backgrounds"] = torch.rand(C, 3, generator=g, dtype=torch.float64)
    out = {k: v.to(dtype=dtype, device=device) for k, v in out.items()}
    out.update(width=width, height=height, sh_degree=sh_degree)
    return out


def sphere_mesh(n_lat: int = 5, n_lon: int = 8, radius: float = 0.6) -> tuple[Tensor, Tensor]:
    """A closed lat-long sphere: ``vertices [V,3]`` float64 and outward ``faces [F,3]`` int64.

    ``V = (n_lat - 1) n_lon + 2`` (two poles), ``F = 2 (n_lat - 1) n_lon``.
    """
    verts = [[0.0, radius, 0.0]]
    for i in range(1, n_lat):
        th = math.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * math.pi * j / n_lon
            verts.append(
                [
                    radius * math.sin(th) * math.cos(ph),
                    radius * math.cos(th),
                    radius * math.sin(th) * math.sin(ph),
                ]
            )
    verts.append([0.0, -radius, 0.0])
    V = len(verts)

    def ring(i: int, j: int) -> int:
        return 1 + (i - 1) * n_lon + (j % n_lon)

    faces = []
    for j in range(n_lon):
        faces.append([0, ring(1, j + 1), ring(1, j)])
        faces.append([V - 1, ring(n_lat - 1, j), ring(n_lat - 1, j + 1)])
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b = ring(i, j), ring(i, j + 1)
            c, d = ring(i + 1, j), ring(i + 1, j + 1)
            faces.append([a, b, d])
            faces.append([a, d, c])
    return torch.tensor(verts, dtype=torch.float64), torch.tensor(faces, dtype=torch.long)


def random_rig(
    n: int,
    B: int = 1,
    C: int = 1,
    width: int = 64,
    height: int = 64,
    sh_degree: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    n_lat: int = 5,
    n_lon: int = 8,
    edge_cases: bool = False,
    backgrounds: bool = False,
    dist: float = 2.0,
) -> dict[str, Any]:
    """A posed sphere mesh with ``n`` local Gaussians bound to its triangles, seen by ``[B,C]`` cameras.

    ``vertices [B,V,3]`` are :func:`sphere_mesh` plus a per-pose random offset (3% of the radius),
    a small rotation and translation; ``faces [F,3]`` int64. Local Gaussians: ``means [n,3] ~
    N(0, 0.3)`` (in units of ``sqrt(S)``), random quaternions, ``log_scales ~ log 0.3 + N(0,
    0.3)``, activated opacities, colours or SH, ``face_ids [n]`` uniform over the faces (every
    face gets at least one Gaussian when ``n >= F``). ``edge_cases`` appends two zero-area faces
    (repeated vertices) with Gaussians 0 and 1 bound to them (one each: Gaussians on one
    zero-area face share a position, hence a depth, and their blending order would be a tie) and
    gives Gaussians 2 and 3 huge/tiny log-scales. Cameras as :func:`cameras` at ``dist``.
    Returns a dict with the argument names of ``render_rigged``.
    """
    g = torch.Generator().manual_seed(seed)
    v0, faces = sphere_mesh(n_lat, n_lon)
    if edge_cases:
        extra = torch.tensor([[1, 1, 2], [0, 1, 1]], dtype=torch.long)  # zero-area faces
        faces = torch.cat([faces, extra])
    F = faces.shape[0]
    verts = []
    for _ in range(B):
        a = (torch.rand(3, generator=g, dtype=torch.float64) - 0.5) * 0.4
        cx, sx = math.cos(a[0]), math.sin(a[0])
        cy, sy = math.cos(a[1]), math.sin(a[1])
        Rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64)
        Ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
        noise = torch.randn(v0.shape, generator=g, dtype=torch.float64) * 0.018
        shift = (torch.rand(3, generator=g, dtype=torch.float64) - 0.5) * 0.1
        verts.append((v0 + noise) @ (Rx @ Ry).T + shift)
    vertices = torch.stack(verts)
    means = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    log_scales = math.log(0.3) + torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3
    opacities = torch.rand(n, generator=g, dtype=torch.float64) * 0.9 + 0.05
    if sh_degree is not None:
        K = (sh_degree + 1) ** 2
        colors = torch.rand(n, K, 3, generator=g, dtype=torch.float64) * 0.6 - 0.2
    else:
        colors = torch.rand(n, 3, generator=g, dtype=torch.float64)
    F_ok = F - 2 if edge_cases else F  # only Gaussians 0 and 1 sit on the zero-area faces
    face_ids = torch.randint(0, F_ok, (n,), generator=g)
    if n >= F_ok:
        face_ids[:F_ok] = torch.randperm(F_ok, generator=g)
    if edge_cases and n >= 4:
        face_ids[0], face_ids[1] = F - 2, F - 1
        log_scales[2] = 8.0  # huge
        log_scales[3] = -30.0  # tiny
    vm, K_ = cameras(C, width, height, dist=dist, dtype=torch.float64)
    viewmats = vm[None].expand(B, C, 4, 4).clone()
    Ks = K_[None].expand(B, C, 3, 3).clone()
    out: dict[str, Any] = {
        "vertices": vertices,
        "means": means,
        "quats": quats,
        "log_scales": log_scales,
        "opacities": opacities,
        "colors": colors,
        "viewmats": viewmats,
        "Ks": Ks,
    }
    if backgrounds:
        out["backgrounds"] = torch.rand(B, C, 3, generator=g, dtype=torch.float64)
    out = {k: v.to(dtype=dtype, device=device) for k, v in out.items()}
    out.update(
        faces=faces.to(device), face_ids=face_ids.to(device), width=width, height=height, sh_degree=sh_degree
    )
    return out
