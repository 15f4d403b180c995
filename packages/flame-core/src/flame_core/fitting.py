"""Fit FLAME parameters and a camera translation to 2D landmarks (single images or sequences).

Camera: OpenCV pinhole (x right, y down, z forward). FLAME's y-up, +z-facing model is seen by a
camera in front of it, i.e. camera coordinates are ``diag(1,-1,-1) @ X + t``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flame_core.landmark_head import POSE_FIELDS, LandmarkHead
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


#: Adam step size per parameter: radians and coefficients; the translation (optimised in
#: centimetres, so that its steps and L-BFGS's curvature estimates are on the same scale) takes
#: :data:`_LR_LENGTH`.
_LR = 0.02
_LR_LENGTH = 0.2
_CM = 0.01


def _optimize(
    params: list[torch.Tensor],
    loss_fn: Any,
    steps: int,
    lbfgs_steps: int,
    lengths: Sequence[torch.Tensor] = (),
) -> None:
    """``steps`` Adam iterations (the second half with a cosine decay of the step size to 2 %),
    then one L-BFGS run of ``lbfgs_steps`` iterations. Tensors in ``lengths`` (the translation)
    take the steps of :data:`_LR_LENGTH`."""
    if not params:
        return
    slow_ids = {id(p) for p in lengths}
    groups = [
        {"params": [p for p in params if id(p) not in slow_ids], "lr": _LR},
        {"params": [p for p in params if id(p) in slow_ids], "lr": _LR_LENGTH},
    ]
    opt = torch.optim.Adam([g for g in groups if g["params"]])
    base = [g["lr"] for g in opt.param_groups]
    for i in range(steps):
        u = max(0.0, (i / max(steps, 1) - 0.5) / 0.5)  # full steps for the first half, then a cosine decay
        decay = 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * u))
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * decay
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    if lbfgs_steps > 0:
        lb = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=lbfgs_steps,
            tolerance_grad=1e-10,
            tolerance_change=1e-14,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            lb.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        lb.step(closure)


def _as_weights(x: Any, n: int, name: str, default: float) -> torch.Tensor:
    """A scalar or an ``[n]`` array as float32 ``[n]`` (non-negative, finite)."""
    w = torch.full((n,), float(default)) if x is None else torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if w.ndim == 0:
        w = w.expand(n).clone()
    if w.shape != (n,) or not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError(
            f"{name} must be a non-negative finite scalar or [{n}] array; got shape {tuple(w.shape)}"
        )
    return w


def _pair_rows(
    pairs: Any, weights: Any, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``(a [K], b [K])`` of the MediaPipe id ``pairs`` among ``ids``, and their weights ``[K]``."""
    if pairs is None or len(pairs) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0)
    pr = torch.as_tensor(np.asarray(pairs)).long()
    if pr.ndim != 2 or pr.shape[1] != 2:
        raise ValueError(f"pairs must be [K, 2] landmark ids; got shape {tuple(pr.shape)}")
    row = {int(m): i for i, m in enumerate(ids.tolist())}
    missing = sorted({int(i) for i in pr.reshape(-1) if int(i) not in row})
    if missing:
        raise ValueError(f"pairs name landmark ids that are not fitted: {missing[:10]}")
    a = torch.tensor([row[int(i)] for i in pr[:, 0]])
    b = torch.tensor([row[int(i)] for i in pr[:, 1]])
    return a, b, _as_weights(weights, len(pr), "pair_weights", 1.0)


def fit_to_landmarks(
    model: torch.nn.Module,
    landmarks_px: torch.Tensor | np.ndarray,
    image_size: tuple[int, int],
    landmark_ids: torch.Tensor | np.ndarray | None = None,
    focal: float | None = None,
    steps: int = 150,
    lbfgs_steps: int = 100,
    smoothing: float = 0.0,
    fit_shape: bool = True,
    init: dict[str, torch.Tensor] | None = None,
    num_shape: int = 50,
    num_expression: int = 50,
    shape_prior: float = 1e-3,
    expression_prior: float | torch.Tensor | np.ndarray = 1e-3,
    neck_prior: float = 1.0,
    fps: float = 30.0,
    *,
    weights: torch.Tensor | np.ndarray | None = None,
    jaw_first: bool = False,
    jaw_anchor: float = 10.0,
    eye_coupling: float = 0.0,
    pairs: torch.Tensor | np.ndarray | Sequence[tuple[int, int]] | None = None,
    pair_weights: torch.Tensor | np.ndarray | float = 1.0,
) -> FitResult:
    """Recover shape/expression/jaw/neck/eyes/global pose and translation from 2D landmarks.

    The loss is the landmarks' weighted mean squared pixel error (scaled by the image size) plus
    priors: L2 on shape and expression, the neck, the jaw's sideways rotations, a soft range for
    the jaw opening (-0.05..0.6 rad) and the eyes (±0.6 rad), and optionally a second-difference
    penalty over time and a pull between the two eyes' rotations.

    Args:
        model: a FlameModel (``model(**kw).vertices [T,V,3]``, ``model.faces``,
            ``model.landmark_embedding``); a ``FlameModel`` is evaluated at the landmarks'
            vertices only (:class:`flame_core.landmark_head.LandmarkHead`).
        landmarks_px: ``[T, L, 2]`` pixel coordinates (OpenCV: x right, y down).
        image_size: ``(W, H)`` in pixels.
        landmark_ids: ``[L]`` MediaPipe ids of the rows (default ``0..L-1``).
        focal: focal length in pixels (default ``1.2 * max(W, H)``, fixed).
        steps / lbfgs_steps: Adam iterations, then L-BFGS iterations (0 disables), per stage.
        smoothing: weight of the second-difference penalty over time (sequences).
        fit_shape: also fit the shared identity ``[1, num_shape]`` (``False``: keep ``init``'s).
        init: optional starting values for any of the ``[T,·]`` fields or ``shape``.
        num_shape / num_expression: components fitted (the leading ones).
        shape_prior: L2 weight on the shape coefficients.
        expression_prior: L2 weight on the expression coefficients, a scalar or one per
            component ``[num_expression]``.
        neck_prior: L2 weight on the neck rotation (the global rotation is free).
        fps: frame rate of the returned motion.
        weights: ``[L]`` per-landmark weights (default 1): how much each landmark's error counts.
        jaw_first: fit in two stages: first the head pose, identity, jaw and eyes with the
            expression held at its initial value (zero), so the jaw explains as much of the
            mouth's opening as it can; then everything, with the jaw pulled towards its first-stage
            value by ``jaw_anchor`` (so expression components fit the residual instead of
            replacing the jaw).
        jaw_anchor: weight of that pull (per rad²); ``inf`` keeps the first-stage jaw fixed.
        eye_coupling: weight of ``|eye_left - eye_right|²`` (the eyes look the same way).
        pairs: ``[K, 2]`` MediaPipe id pairs (e.g. upper and lower eyelid) whose pixel
            difference vectors are fitted as well: the distance between opposing landmarks is
            what an expression changes, and a difference does not depend on where the detector
            puts the face as a whole. Both ids must be among ``landmark_ids``.
        pair_weights: weight of each pair ``[K]`` (or one for all), on the same scale as
            ``weights`` (the pair term is the weighted mean over pairs, added to the landmark
            term's weighted mean).
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
    w_lm = _as_weights(weights, L, "weights", 1.0)
    pa, pb, w_pair = _pair_rows(pairs, pair_weights, ids)
    if float(w_lm.sum()) <= 0:
        raise ValueError("weights are all zero; at least one landmark must count")
    head = LandmarkHead(model, emb.select(ids))
    num_shape = min(num_shape, int(getattr(model, "num_shape", num_shape)))
    num_expression = min(num_expression, int(getattr(model, "num_expression", num_expression)))
    w_expr = _as_weights(expression_prior, num_expression, "expression_prior", 0.0)
    W, H = image_size
    f = float(focal) if focal is not None else 1.2 * float(max(W, H))
    dt = torch.float32

    # initial translation from the landmark spread: the face is ~0.14 m wide
    # (over the landmarks that count: weight 0 means "do not trust")
    trusted = lm[:, w_lm > 0]
    span = (trusted[..., 0].amax(1) - trusted[..., 0].amin(1)).clamp_min(1.0)
    tz = f * 0.14 / span
    ctr = trusted.mean(1) - torch.tensor([W / 2.0, H / 2.0])
    t0 = torch.stack([ctr[:, 0] * tz / f, ctr[:, 1] * tz / f, tz], 1)
    P = {
        "global_orient": torch.zeros(T, 3, dtype=dt),
        "neck_pose": torch.zeros(T, 3, dtype=dt),
        "jaw_pose": torch.zeros(T, 3, dtype=dt),
        "eye_pose": torch.zeros(T, 6, dtype=dt),
        "expression": torch.zeros(T, num_expression, dtype=dt),
        "translation": t0.to(dt) / _CM,
    }
    shape = torch.zeros(1, num_shape, dtype=dt)
    for k, v in (init or {}).items():
        if k == "shape":
            shape = torch.as_tensor(v, dtype=dt).reshape(1, -1)[:, :num_shape].clone()
        elif k in P:
            P[k] = torch.as_tensor(v, dtype=dt).reshape(T, -1)[:, : P[k].shape[1]].clone()
            if k == "translation":
                P[k] = P[k] / _CM
    for v in (*P.values(), shape):
        v.requires_grad_()
    scale = float(max(W, H))
    w_norm = w_lm / w_lm.sum()
    jaw_target: torch.Tensor | None = None

    def frame_pixels() -> torch.Tensor:
        pts = head(shape.expand(T, -1), P["expression"], *(P[k] for k in POSE_FIELDS))
        px = project(pts, P["translation"] * _CM, f, image_size)
        return px

    def frame_errors() -> torch.Tensor:
        return ((frame_pixels() - lm) ** 2).sum(-1)  # [T, L]

    def loss_fn() -> torch.Tensor:
        px = frame_pixels()
        err = ((px - lm) ** 2).sum(-1)
        data = (err * w_norm).sum(1).mean()
        if len(pa):
            d_err = (((px[:, pa] - px[:, pb]) - (lm[:, pa] - lm[:, pb])) ** 2).sum(-1)  # [T, K]
            data = data + (d_err * w_pair).sum(1).mean() / float(w_lm.sum())
        loss = data / scale**2 * 1e4
        loss = loss + shape_prior * (shape**2).sum() + ((P["expression"] ** 2) * w_expr).sum(1).mean()
        jaw = P["jaw_pose"]
        loss = loss + 10 * (torch.relu(-jaw[:, 0] - 0.05) ** 2 + torch.relu(jaw[:, 0] - 0.6) ** 2).mean()
        loss = (
            loss + 1e-2 * (jaw[:, 1:] ** 2).sum(1).mean() + neck_prior * (P["neck_pose"] ** 2).sum(1).mean()
        )
        eye = P["eye_pose"]
        loss = loss + 10 * (torch.relu(eye.abs() - 0.6) ** 2).sum(1).mean()
        if eye_coupling > 0:
            loss = loss + eye_coupling * ((eye[:, :3] - eye[:, 3:]) ** 2).sum(1).mean()
        if jaw_target is not None and math.isfinite(jaw_anchor):
            loss = loss + jaw_anchor * ((jaw - jaw_target) ** 2).sum(1).mean()
        if smoothing > 0 and T > 2:
            for k in (*POSE_FIELDS, "expression", "translation"):
                d2 = P[k][2:] - 2 * P[k][1:-1] + P[k][:-2]
                # per rad² (rotations, coefficients) x 100, per m² x 1000 (translation, here in cm)
                loss = loss + smoothing * (d2**2).sum(1).mean() * (100.0 if k != "translation" else 0.1)
        return loss

    free = [P[k] for k in ("global_orient", "neck_pose", "eye_pose", "translation")]
    free += [shape] if fit_shape else []
    if jaw_first:
        _optimize([*free, P["jaw_pose"]], loss_fn, steps, lbfgs_steps, lengths=[P["translation"]])
        jaw_target = P["jaw_pose"].detach().clone()
        if not math.isfinite(jaw_anchor):
            free = free + [P["expression"]]
        else:
            free = free + [P["expression"], P["jaw_pose"]]
    else:
        free = free + [P["expression"], P["jaw_pose"]]
    _optimize(free, loss_fn, steps, lbfgs_steps, lengths=[P["translation"]])
    with torch.no_grad():
        err = frame_errors().sqrt().mean(1)
    out = {k: v.detach() for k, v in P.items()}
    out["translation"] = out["translation"] * _CM
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
