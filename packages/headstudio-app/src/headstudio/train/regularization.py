"""Mesh regularisation of the rigged Gaussians (docs/METHOD.md, "Mesh regularisation"; paper Eq. 8–10).

Per triangle, ``τ`` is the largest distance from its centroid ``T`` to its vertices and the
tolerances are ``τ_pos = τ_s = 0.5·τ``. For a Gaussian on that triangle (area ``S``, local
mean ``μ``, local scale ``s``), read as a hinge (only the part above the tolerance is penalised)
and divided by ``√S`` (paper Eq. 10: the terms are in units of the triangle's size)::

    e_pos = max(‖√S·R·μ‖₂ − τ_pos, 0) / √S            (‖√S·R·μ‖ = √S·‖μ‖, R is a rotation)
    e_s   = ‖max(√S·s − τ_s, 0)‖₂ / √S                 (elementwise max over the 3 axes)
    loss_pos   = Σ e_pos / #(e_pos > 0)                 (mean over the violators: Gaussian × pose)
    loss_scale = Σ e_s / #(e_s > 0)

Averaging over the violators only (as the public HeadStudio code does) makes the pull on a
violating Gaussian ``λ / #violators``, whatever the number of Gaussians that comply: a mean over
all ``B·N`` entries would fade as ``1/N`` while densification adds Gaussians (about 1e-6 per
violator at 100k). With no violator a term is 0.

The trainer weighs them with ``loss.lambda_pos`` and ``loss.lambda_scale`` (0.1 each:
``L_reg = λ_pos·loss_pos + λ_s·loss_scale``). The terms are dimensionless (excess in units of the
triangle's size), so the weights do not depend on the head's scale.
"""

from __future__ import annotations

import torch
from rigged_gaussians import TriangleFrames

from ..errors import HeadStudioError

__all__ = ["REGULARIZER_TERMS", "mesh_regularization", "triangle_tolerance"]

#: The loss terms :func:`mesh_regularization` returns.
REGULARIZER_TERMS = ("loss_pos", "loss_scale")


def triangle_tolerance(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``τ [B, F]``: the largest distance from each triangle's centroid to its three vertices."""
    tri = vertices[:, faces.long()]  # [B, F, 3, 3]
    centroid = tri.mean(dim=-2, keepdim=True)
    return (tri - centroid).norm(dim=-1).amax(dim=-1)


def mesh_regularization(
    means_local: torch.Tensor,
    log_scales: torch.Tensor,
    face_ids: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    frames: TriangleFrames | None = None,
) -> dict[str, torch.Tensor]:
    """The hinge mesh regularisation terms of the module docstring (unweighted).

    Args:
        means_local: ``[N, 3]`` local means μ.
        log_scales: ``[N, 3]`` local log-scales (s = exp).
        face_ids: ``[N]`` triangle of each Gaussian.
        vertices: ``[B, V, 3]`` (or ``[V, 3]``) the current posed mesh(es); each term is the
            mean over the (Gaussian, pose) pairs that exceed their tolerance.
        faces: ``[F, 3]``.
        frames: optional precomputed ``rigged_gaussians.TriangleFrames`` of ``vertices`` (only
            its ``sqrt_areas [B, F]`` is used).

    Returns:
        ``{"loss_pos": ..., "loss_scale": ...}``, unweighted scalars.
    """
    if vertices.dim() == 2:
        vertices = vertices[None]
    n = means_local.shape[0]
    if means_local.shape != (n, 3) or log_scales.shape != (n, 3) or face_ids.shape != (n,):
        raise HeadStudioError(
            "mesh_regularization: means_local and log_scales must be [N, 3] and face_ids [N]; got "
            f"{list(means_local.shape)}, {list(log_scales.shape)}, {list(face_ids.shape)}."
        )
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise HeadStudioError(f"mesh_regularization: vertices must be [B, V, 3], got {list(vertices.shape)}.")
    fid = face_ids.long()
    if frames is not None:
        sqrt_area = frames.sqrt_areas
    else:
        tri = vertices[:, faces.long()]
        cross = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])
        area = torch.sqrt((cross * cross).sum(-1).clamp_min(1e-24)) / 2
        sqrt_area = area.clamp_min(1e-12).sqrt()  # [B, F], as rigged_gaussians' frames
    tau = triangle_tolerance(vertices, faces)  # [B, F]
    sa = sqrt_area[:, fid]  # [B, N]
    tol = 0.5 * tau[:, fid]  # [B, N]
    radius = sa * means_local.norm(dim=-1)[None]  # ‖√S·R·μ‖ = √S‖μ‖
    e_pos = torch.relu(radius - tol) / sa
    world_scale = sa[..., None] * torch.exp(log_scales)[None]  # [B, N, 3]
    over = torch.relu(world_scale - tol[..., None])
    sq = (over * over).sum(-1)
    outside = sq > 0
    norm = torch.where(
        outside, torch.sqrt(torch.where(outside, sq, torch.ones_like(sq))), torch.zeros_like(sq)
    )
    e_s = norm / sa  # exactly zero (and zero gradient) inside the tolerance
    return {"loss_pos": _violator_mean(e_pos), "loss_scale": _violator_mean(e_s)}


def _violator_mean(excess: torch.Tensor) -> torch.Tensor:
    """``Σ excess / #(excess > 0)`` (0 when nothing exceeds its tolerance)."""
    return excess.sum() / (excess > 0).sum().clamp_min(1)
