"""Mesh regularisation of the rigged Gaussians (docs/METHOD.md, "Mesh regularisation"; paper Eq. 8–10).

Two forms, chosen by ``regularizer.form``: ``"code"`` (the default, the public HeadStudio code's
losses) and ``"paper"`` (the paper's Eq. 8–10 read as a hinge). Both share the tolerances and
the mean over the violators.

Per triangle, ``τ`` is the largest distance from its centroid ``T`` to its vertices and the
tolerances are ``τ_pos = τ_s = 0.5·τ``. For a Gaussian on that triangle (area ``S``, local
mean ``μ``, local scale ``s``), the paper form reads Eq. 8–9 as a hinge (only the part above the
tolerance is penalised) divided by ``√S`` (paper Eq. 10: the terms are in units of the
triangle's size)::

    e_pos = max(‖√S·R·μ‖₂ − τ_pos, 0) / √S            (‖√S·R·μ‖ = √S·‖μ‖, R is a rotation)
    e_s   = ‖max(√S·s − τ_s, 0)‖₂ / √S                 (elementwise max over the 3 axes)
    loss_pos   = Σ e_pos / #(e_pos > 0)                 (mean over the violators: Gaussian × pose)
    loss_scale = Σ e_s / #(e_s > 0)

The code form penalises the whole offset and the whole scale of a violator, divided by the
area, in scene units of ``u`` metres (``camera.scene_scale``; the public code's geometry is in
those units, so its weights mean the same here). With ``d = √S·‖μ‖`` and ``s'_k = √S·s_k``
(metres)::

    e_pos   = h(d / u) / (S / u²)        for d > τ_pos,  h the smooth L1 (β = 1):
                                          h(x) = x²/2 if x < 1 else x − 1/2
    e_s[k]  = (s'_k / u) / (S / u²)      for each axis k with s'_k > τ_s
    loss_pos   = Σ e_pos / #(d > τ_pos)            (mean over the violators: Gaussian × pose)
    loss_scale = Σ e_s / #(s'_k > τ_s)             (mean over the violating axes)

Its pull does not fade as a violator approaches the tolerance, and it is stronger on small
triangles (``1/S``): for a violator well past its tolerance its gradient on ``log s`` is about
``u/√S`` times the paper form's (issue 20's review: 21× to 289× over the FLAME template).

Averaging over the violators only (as the public HeadStudio code does) makes the pull on a
violating Gaussian ``λ / #violators``, whatever the number of Gaussians that comply: a mean over
all ``B·N`` entries would fade as ``1/N`` while densification adds Gaussians (about 1e-6 per
violator at 100k). With no violator a term is 0.

The trainer weighs them with ``loss.lambda_pos`` and ``loss.lambda_scale`` (0.1 each:
``L_reg = λ_pos·loss_pos + λ_s·loss_scale``; the public code's ``10 × 0.01``) and adds the
position term from step ``regularizer.pos_from`` on. The paper form's terms are dimensionless
(excess in units of the triangle's size); the code form's depend on the length unit, hence the
public code's scene unit ``u``.
"""

from __future__ import annotations

from typing import Literal

import torch
from rigged_gaussians import TriangleFrames

from ..errors import HeadStudioError

__all__ = ["REGULARIZER_FORMS", "REGULARIZER_TERMS", "mesh_regularization", "triangle_tolerance"]

#: The loss terms :func:`mesh_regularization` returns.
REGULARIZER_TERMS = ("loss_pos", "loss_scale")
#: The forms of :func:`mesh_regularization` (``regularizer.form``).
REGULARIZER_FORMS = ("paper", "code")


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
    *,
    form: Literal["paper", "code"] = "paper",
    unit: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The mesh regularisation terms of the module docstring (unweighted).

    Args:
        means_local: ``[N, 3]`` local means μ.
        log_scales: ``[N, 3]`` local log-scales (s = exp).
        face_ids: ``[N]`` triangle of each Gaussian.
        vertices: ``[B, V, 3]`` (or ``[V, 3]``) the current posed mesh(es); each term is the
            mean over the (Gaussian, pose) pairs that exceed their tolerance.
        faces: ``[F, 3]``.
        frames: optional precomputed ``rigged_gaussians.TriangleFrames`` of ``vertices`` (only
            its ``sqrt_areas [B, F]`` is used).
        form: ``"paper"`` (hinge over the tolerance, ``/√S``) or ``"code"`` (the public code:
            whole offset and scale, ``/S``, in scene units).
        unit: the code form's scene unit in the vertices' unit (metres per scene unit; the
            trainer's ``camera.scene_scale``); unused by the paper form.

    Returns:
        ``{"loss_pos": ..., "loss_scale": ...}``, unweighted scalars.
    """
    if form not in REGULARIZER_FORMS:
        raise HeadStudioError(
            f"mesh_regularization: form must be one of {', '.join(REGULARIZER_FORMS)}, got {form!r}."
        )
    if not unit > 0:
        raise HeadStudioError(f"mesh_regularization: unit must be a positive length, got {unit!r}.")
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
    world_scale = sa[..., None] * torch.exp(log_scales)[None]  # [B, N, 3]
    if form == "code":
        return _code_form(radius, world_scale, tol, sa, float(unit))
    e_pos = torch.relu(radius - tol) / sa
    over = torch.relu(world_scale - tol[..., None])
    sq = (over * over).sum(-1)
    outside = sq > 0
    norm = torch.where(
        outside, torch.sqrt(torch.where(outside, sq, torch.ones_like(sq))), torch.zeros_like(sq)
    )
    e_s = norm / sa  # exactly zero (and zero gradient) inside the tolerance
    return {"loss_pos": _violator_mean(e_pos), "loss_scale": _violator_mean(e_s)}


def _code_form(
    radius: torch.Tensor, world_scale: torch.Tensor, tol: torch.Tensor, sa: torch.Tensor, unit: float
) -> dict[str, torch.Tensor]:
    """The public code's terms (module docstring) from ``radius [B, N]``, ``world_scale [B, N, 3]``,
    ``tol [B, N]`` and ``sa = √S [B, N]``, all in the vertices' unit; ``unit`` per scene unit."""
    area = (sa * sa) / (unit * unit)  # [B, N], scene units²
    x = radius / unit
    smooth_l1 = torch.where(x < 1.0, 0.5 * x * x, x - 0.5)
    pos_out = radius > tol
    e_pos = torch.where(pos_out, smooth_l1 / area, torch.zeros_like(x))
    scale_out = world_scale > tol[..., None]
    e_s = torch.where(scale_out, (world_scale / unit) / area[..., None], torch.zeros_like(world_scale))
    return {
        "loss_pos": e_pos.sum() / pos_out.sum().clamp_min(1),
        "loss_scale": e_s.sum() / scale_out.sum().clamp_min(1),
    }


def _violator_mean(excess: torch.Tensor) -> torch.Tensor:
    """``Σ excess / #(excess > 0)`` (0 when nothing exceeds its tolerance)."""
    return excess.sum() / (excess > 0).sum().clamp_min(1)
