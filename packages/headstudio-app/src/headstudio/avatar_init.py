"""Uniform super-resolution initialisation of the rigged Gaussians (docs/METHOD.md, "Initialisation").

K points are sampled uniformly on every triangle of the neutral mesh (zero expression and pose).
Their world scale is the root of the mean squared distance to their k nearest neighbours (the
paper's "square root of the mean distance", computed as the authors' code does with 3DGS's
``distCUDA2``, which returns squared distances). The world values are then mapped to the local
frame of their triangle by inverting ``μ' = √S·R·μ + T`` and ``s' = √S·s``:
``μ = Rᵀ(μ' − T)/√S`` and ``log s = log(s'/√S)``. Rotations start at the identity.
"""

from __future__ import annotations

import numpy as np
import rigged_gaussians as rg
import torch
from scipy.spatial import cKDTree

from .errors import HeadStudioError

__all__ = ["sample_on_triangles", "knn_scales", "uniform_superresolution_init"]


def sample_on_triangles(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    points_per_face: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``points_per_face`` uniform random points on every triangle.

    Args:
        vertices: ``[V, 3]``.
        faces: ``[F, 3]`` long.
        points_per_face: K.
        generator: CPU generator for reproducibility.

    Returns:
        ``(points [F*K, 3], face_ids [F*K] long (K consecutive per face), bary [F*K, 3])``.
    """
    F = faces.shape[0]
    K = int(points_per_face)
    r1 = torch.rand(F * K, generator=generator, dtype=torch.float64)
    r2 = torch.rand(F * K, generator=generator, dtype=torch.float64)
    s = r1.sqrt()  # uniform density on the triangle (Osada et al. 2002)
    bary = torch.stack([1 - s, s * (1 - r2), s * r2], dim=-1)
    face_ids = torch.arange(F).repeat_interleave(K)
    tri = vertices.detach().double().cpu()[faces.long().cpu()[face_ids]]  # [N, 3, 3]
    points = (bary[:, :, None] * tri).sum(1)
    return points.to(vertices.dtype), face_ids, bary.to(vertices.dtype)


def knn_scales(points: torch.Tensor, k: int = 3, floor: float = 1e-7) -> torch.Tensor:
    """Root of the mean squared distance of each point to its ``k`` nearest other points.

    Args:
        points: ``[N, 3]`` (N > k).
        k: neighbours.
        floor: lower bound of the mean squared distance (duplicated points), as in 3DGS.

    Returns:
        ``[N]`` scales, same dtype as ``points``.
    """
    p = points.detach().double().cpu().numpy()
    if p.shape[0] <= k:
        raise HeadStudioError(f"knn_scales: need more than k = {k} points, got {p.shape[0]}.")
    dist, _ = cKDTree(p).query(p, k=k + 1)  # the first neighbour is the point itself
    d2 = np.maximum((dist[:, 1:] ** 2).mean(axis=1), floor)
    return torch.from_numpy(np.sqrt(d2)).to(points.dtype)


def uniform_superresolution_init(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    points_per_face: int = 10,
    knn: int = 3,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Local Gaussian parameters of the uniform super-resolution init.

    Args:
        vertices: ``[V, 3]`` the neutral mesh (zero expression and pose; the current shape).
        faces: ``[F, 3]`` long.
        points_per_face: K Gaussians per triangle.
        knn: neighbours of the scale rule.
        generator: CPU generator for reproducibility.

    Returns:
        ``dict(means [N,3], quats [N,4] (identity, wxyz), log_scales [N,3], face_ids [N] long)``
        with ``N = K·F`` (K consecutive Gaussians per face), float32 on the CPU, in the LOCAL
        frames of their triangles.

    Raises:
        HeadStudioError: bad shapes or ``points_per_face`` / ``knn`` below 1.
    """
    if vertices.dim() == 3 and vertices.shape[0] == 1:
        vertices = vertices[0]
    if vertices.dim() != 2 or vertices.shape[-1] != 3:
        raise HeadStudioError(f"init: vertices must be [V, 3], got {list(vertices.shape)}.")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise HeadStudioError(f"init: faces must be [F, 3], got {list(faces.shape)}.")
    if points_per_face < 1 or knn < 1:
        raise HeadStudioError(f"init: points_per_face and knn must be >= 1, got {points_per_face} and {knn}.")
    verts = vertices.detach().double().cpu()
    faces = faces.long().cpu()
    points, face_ids, _ = sample_on_triangles(verts, faces, points_per_face, generator)
    world_scale = knn_scales(points, knn)  # [N]
    # float64 frames (the PyTorch backend computes in the inputs' dtype)
    cent, rot, sqrt_area = rg.triangle_frames(verts[None], faces, backend="torch")
    T, R, sa = cent[0][face_ids], rot[0][face_ids], sqrt_area[0][face_ids]  # [N,3], [N,3,3], [N]
    means = (R.transpose(-1, -2) @ (points - T)[..., None])[..., 0] / sa[:, None]
    log_scales = torch.log(world_scale / sa)[:, None].expand(-1, 3)
    n = points.shape[0]
    quats = torch.zeros(n, 4, dtype=torch.float32)
    quats[:, 0] = 1.0
    return {
        "means": means.float().contiguous(),
        "quats": quats,
        "log_scales": log_scales.float().contiguous(),
        "face_ids": face_ids,
    }
