"""Fit FLAME parameters and a camera translation to 2D landmarks (single images or sequences).

Camera: OpenCV pinhole (x right, y down, z forward). FLAME's y-up, +z-facing model is seen by a
camera in front of it, i.e. camera coordinates are ``diag(1,-1,-1) @ X + t``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flame_core.motion import MotionSequence

log = logging.getLogger(__name__)

__all__ = ["FitResult", "fit_to_landmarks", "project"]

_FLIP = torch.tensor([1.0, -1.0, -1.0])


@dataclass
class FitResult:
    """Result of :func:`fit_to_landmarks`.

    Attributes:
        motion: a ``flame_core.motion.MotionSequence`` at ``fps``. Its ``translation`` is the
            head's displacement from frame 0 in FLAME coordinates (``flip * (t_k - t_0)``), so
            the motion can drive a head seen by a fixed camera; the camera itself is below.
        shape: ``[1, S]`` shared identity coefficients.
        focal: focal length in pixels; principal point is the image centre.
        translation: ``[T, 3]`` model-to-camera translation (OpenCV camera coordinates).
        error_px: ``[T]`` mean landmark error in pixels.
        params: dict of all fitted ``[T,·]`` tensors (``translation`` there is the camera one).
    """

    motion: MotionSequence
    shape: torch.Tensor
    focal: float
    translation: torch.Tensor
    error_px: torch.Tensor
    params: dict[str, torch.Tensor]
    image_size: tuple[int, int] = (0, 0)

    @property
    def camera(self) -> dict[str, Any]:
        """Camera as ``{"focal", "principal_point" (cx, cy), "translation" [T,3], "flip" [3]}``:
        ``x_cam = flip * X + translation`` (OpenCV axes)."""
        w, h = self.image_size
        return {
            "focal": self.focal,
            "principal_point": (w / 2.0, h / 2.0),
            "translation": self.translation,
            "flip": _FLIP.clone(),
        }


def project(
    points: torch.Tensor, translation: torch.Tensor, focal: float, image_size: tuple[int, int]
) -> torch.Tensor:
    """Project FLAME-space ``points [T,L,3]`` with camera translation ``[T,3]`` to pixels ``[T,L,2]``."""
    pc = points * _FLIP.to(points) + translation[:, None]
    z = pc[..., 2:].clamp_min(1e-4)
    w, h = image_size
    c = torch.tensor([w / 2.0, h / 2.0], dtype=points.dtype)
    return focal * pc[..., :2] / z + c


def _default_ids(L: int, emb_ids: torch.Tensor) -> torch.Tensor:
    if L in (478, 468) or L <= len(emb_ids):
        return torch.arange(L)
    raise ValueError(f"{L} landmarks but the embedding has {len(emb_ids)}; pass landmark_ids")


def fit_to_landmarks(
    model: torch.nn.Module,
    landmarks_px: torch.Tensor | np.ndarray,
    image_size: tuple[int, int],
    landmark_ids: torch.Tensor | np.ndarray | None = None,
    focal: float | None = None,
    steps: int = 150,
    lbfgs_steps: int = 25,
    smoothing: float = 0.0,
    fit_shape: bool = True,
    init: dict[str, torch.Tensor] | None = None,
    num_shape: int = 50,
    num_expression: int = 50,
    shape_prior: float = 1e-3,
    expression_prior: float = 1e-3,
    neck_prior: float = 1.0,
    fps: float = 30.0,
) -> FitResult:
    """Recover shape/expression/jaw/neck/eyes/global pose and translation from 2D landmarks.

    Args:
        model: a FlameModel (``model(**kw).vertices [T,V,3]``, ``model.faces``,
            ``model.landmark_embedding``).
        landmarks_px: ``[T, L, 2]`` pixel coordinates (OpenCV: x right, y down).
        image_size: ``(W, H)`` in pixels.
        landmark_ids: ``[L]`` MediaPipe ids of the rows (default ``0..L-1``).
        focal: focal length in pixels (default ``1.2 * max(W, H)``, fixed).
        steps / lbfgs_steps: Adam iterations, then L-BFGS iterations (0 disables).
        smoothing: weight of the second-difference penalty over time (sequences).
        fit_shape: also fit the shared identity ``[1, num_shape]``.
        init: optional starting values for any of the ``[T,·]`` fields or ``shape``.
    """
    lm = torch.as_tensor(np.asarray(landmarks_px), dtype=torch.float32)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[-1] != 2 or lm.shape[0] == 0:
        raise ValueError(f"landmarks_px must be [T, L, 2]; got {tuple(lm.shape)}")
    if not torch.isfinite(lm).all():
        raise ValueError("landmarks_px contains NaN or inf; drop or interpolate those frames first")
    emb = getattr(model, "landmark_embedding", None)
    if emb is None:
        raise ValueError("model has no landmark_embedding; load one (LandmarkEmbedding.load) and pass it")
    T, L, _ = lm.shape
    ids = (
        _default_ids(L, emb.landmark_indices)
        if landmark_ids is None
        else torch.as_tensor(np.asarray(landmark_ids)).long()
    )
    if len(ids) != L:
        raise ValueError(f"landmark_ids has {len(ids)} entries but landmarks_px has L={L}")
    emb = emb.select(ids)
    faces = model.faces
    W, H = image_size
    f = float(focal) if focal is not None else 1.2 * float(max(W, H))
    dt = torch.float32

    # initial translation from the landmark spread: the face is ~0.14 m wide
    span = (lm[..., 0].amax(1) - lm[..., 0].amin(1)).clamp_min(1.0)
    tz = f * 0.14 / span
    ctr = lm.mean(1) - torch.tensor([W / 2.0, H / 2.0])
    t0 = torch.stack([ctr[:, 0] * tz / f, ctr[:, 1] * tz / f, tz], 1)
    P = {
        "global_orient": torch.zeros(T, 3, dtype=dt),
        "neck_pose": torch.zeros(T, 3, dtype=dt),
        "jaw_pose": torch.zeros(T, 3, dtype=dt),
        "eye_pose": torch.zeros(T, 6, dtype=dt),
        "expression": torch.zeros(T, num_expression, dtype=dt),
        "translation": t0.to(dt),
    }
    shape = torch.zeros(1, num_shape, dtype=dt)
    for k, v in (init or {}).items():
        if k == "shape":
            shape = torch.as_tensor(v, dtype=dt).reshape(1, -1)[:, :num_shape].clone()
        elif k in P:
            P[k] = torch.as_tensor(v, dtype=dt).reshape(T, -1)[:, : P[k].shape[1]].clone()
    params = [p.requires_grad_() for p in P.values()]
    if fit_shape:
        params.append(shape.requires_grad_())
    scale = float(max(W, H))

    def landmarks3d() -> torch.Tensor:
        out = model(
            shape=shape.expand(T, -1),
            expression=P["expression"],
            global_orient=P["global_orient"],
            neck_pose=P["neck_pose"],
            jaw_pose=P["jaw_pose"],
            eye_pose=P["eye_pose"],
        )
        return emb(out.vertices, faces)

    def loss_fn() -> tuple[torch.Tensor, torch.Tensor]:
        px = project(landmarks3d(), P["translation"], f, image_size)
        err = ((px - lm) ** 2).sum(-1)  # [T,L]
        loss = err.mean() / scale**2 * 1e4
        loss = loss + shape_prior * (shape**2).sum() + expression_prior * (P["expression"] ** 2).sum(1).mean()
        jaw = P["jaw_pose"]
        loss = loss + 10 * (torch.relu(-jaw[:, 0] - 0.05) ** 2 + torch.relu(jaw[:, 0] - 0.6) ** 2).mean()
        loss = (
            loss + 1e-2 * (jaw[:, 1:] ** 2).sum(1).mean() + neck_prior * (P["neck_pose"] ** 2).sum(1).mean()
        )
        loss = loss + 10 * (torch.relu(P["eye_pose"].abs() - 0.6) ** 2).sum(1).mean()
        if smoothing > 0 and T > 2:
            for k in ("global_orient", "neck_pose", "jaw_pose", "eye_pose", "expression", "translation"):
                d2 = P[k][2:] - 2 * P[k][1:-1] + P[k][:-2]
                loss = loss + smoothing * (d2**2).sum(1).mean() * (100.0 if k != "translation" else 1000.0)
        return loss, err.detach().sqrt().mean(1)

    opt = torch.optim.Adam(params, lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss, _ = loss_fn()
        loss.backward()
        opt.step()
    if lbfgs_steps > 0:
        lb = torch.optim.LBFGS(params, lr=1.0, max_iter=lbfgs_steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            lb.zero_grad()
            loss, _ = loss_fn()
            loss.backward()
            return loss

        lb.step(closure)
    with torch.no_grad():
        loss, err = loss_fn()
    out = {k: v.detach() for k, v in P.items()}
    log.info("fit_to_landmarks: T=%d L=%d mean error %.3f px", T, L, float(err.mean()))
    motion = MotionSequence(
        expression=out["expression"],
        jaw_pose=out["jaw_pose"],
        neck_pose=out["neck_pose"],
        eye_pose=out["eye_pose"],
        global_orient=out["global_orient"],
        translation=(out["translation"] - out["translation"][:1]) * _FLIP,
        fps=fps,
    )
    return FitResult(motion, shape.detach(), f, out["translation"], err, out, (int(W), int(H)))
