"""Fit the head to one photograph: identity, the photo's expression, jaw, gaze, head pose and the
camera's focal length, from MediaPipe's 478 landmarks.

The avatar's canonical face is neutral: only the identity (``shape``) is kept for the avatar. The
photo's expression, jaw, eye and head pose, with the camera, describe the one view the photo shows
and are used only to render that view during training.

Focal length: one photo's landmarks determine it only weakly (a wider lens seen from closer
changes the face's perspective a little), so it is chosen by the fit error over a range of
fields of view (20-60 deg across the photo's larger side, telephoto portraits to phone selfies)
with short fits, then fitted fully at the best, instead of being a free variable of the gradient fit, where it
trades off against the identity's depth.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flame_core import FlameModel, fit_to_landmarks
from flame_core.fitting import FitResult, project
from flame_core.landmark_head import POSE_FIELDS, LandmarkHead

from ..animate.face_track import NUM_LANDMARKS, expression_pairs, landmark_weights
from ..errors import HeadStudioError
from .photo_input import PhotoFace

__all__ = ["PhotoFit", "fit_photo", "fov_to_focal", "VIEW_FIELDS"]

log = logging.getLogger(__name__)

#: the fields that describe the photo's own view (not the avatar's canonical face)
VIEW_FIELDS = ("expression", "jaw_pose", "neck_pose", "eye_pose", "global_orient")
#: fields of view tried (degrees across the photo's larger side)
_FOV_GRID_DEG = (20.0, 30.0, 40.0, 50.0, 60.0)


def fov_to_focal(fov_deg: float, size: tuple[int, int]) -> float:
    """Focal length in pixels for a field of view ``fov_deg`` across the larger side of ``size``."""
    return 0.5 * max(size) / math.tan(math.radians(fov_deg) / 2.0)


@dataclass
class PhotoFit:
    """The head fitted to a photo.

    Attributes:
        shape: ``[1, S]`` identity coefficients (the avatar keeps these).
        view: the photo's ``expression [1,E]``, ``jaw_pose [1,3]``, ``neck_pose [1,3]``,
            ``eye_pose [1,6]``, ``global_orient [1,3]`` (used only to render the photo's view).
        focal: focal length in pixels (principal point at the image centre).
        translation: ``[3]`` model-to-camera translation (OpenCV camera: ``x = diag(1,-1,-1) X + t``).
        image_size: ``(W, H)`` of the photo.
        error_px: mean landmark reprojection error over the fitted landmarks, pixels.
        error_per_landmark: ``[L]`` pixel error of each fitted landmark.
        landmark_ids: ``[L]`` MediaPipe ids that were fitted (those the head's embedding has).
    """

    shape: torch.Tensor
    view: dict[str, torch.Tensor]
    focal: float
    translation: torch.Tensor
    image_size: tuple[int, int]
    error_px: float
    error_per_landmark: np.ndarray
    landmark_ids: np.ndarray

    @property
    def fov_deg(self) -> float:
        """The fitted field of view across the photo's larger side, degrees."""
        return math.degrees(2.0 * math.atan(0.5 * max(self.image_size) / self.focal))

    def viewmat(self) -> torch.Tensor:
        """``[4, 4]`` world-to-camera matrix (OpenCV axes) of the photo's camera."""
        m = torch.eye(4, dtype=torch.float32)
        m[1, 1] = -1.0
        m[2, 2] = -1.0
        m[:3, 3] = self.translation.float()
        return m

    def intrinsics(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """``[3, 3]`` pinhole matrix, for the photo at ``size`` ``(W, H)`` (default its own size;
        a resized photo scales the focal length and principal point)."""
        W, H = self.image_size
        w, h = size or (W, H)
        sx, sy = w / W, h / H
        return torch.tensor(
            [[self.focal * sx, 0.0, w / 2.0], [0.0, self.focal * sy, h / 2.0], [0.0, 0.0, 1.0]],
            dtype=torch.float32,
        )

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Project FLAME-space ``points [L, 3]`` into the photo: ``[L, 2]`` pixels."""
        return project(points[None].float(), self.translation[None].float(), self.focal, self.image_size)[0]

    def flame_kwargs(self, neutral: bool = False) -> dict[str, torch.Tensor]:
        """Keyword arguments of the head for the photo's view (``neutral``: the canonical face)."""
        kw: dict[str, torch.Tensor] = {"shape": self.shape}
        if not neutral:
            kw.update({k: v for k, v in self.view.items()})
        return kw

    def report(self) -> dict[str, Any]:
        """JSON-ready summary (what the run's log and the avatar's metadata record)."""
        return {
            "reprojection_error_px": round(self.error_px, 3),
            "focal_px": round(self.focal, 2),
            "fov_deg": round(self.fov_deg, 2),
            "image_size": list(self.image_size),
            "landmarks": int(len(self.landmark_ids)),
            "jaw_open_rad": round(float(self.view["jaw_pose"][0, 0]), 4),
        }


def _head_ids(head: FlameModel) -> np.ndarray:
    emb = getattr(head, "landmark_embedding", None)
    if emb is None:
        raise HeadStudioError(
            "the head model has no MediaPipe landmark embedding, so a photo cannot be fitted; use the "
            "procedural head or a FLAME model with its MediaPipe embedding.",
            argument="head",
        )
    ids = emb.landmark_indices.detach().cpu().long().numpy()
    return ids[ids < NUM_LANDMARKS]


def _fit_once(
    head: FlameModel,
    lm: np.ndarray,
    ids: np.ndarray,
    size: tuple[int, int],
    focal: float,
    steps: int,
    lbfgs: int,
) -> FitResult:
    pairs, pair_w = expression_pairs(ids)
    return fit_to_landmarks(
        head,
        torch.from_numpy(np.ascontiguousarray(lm[ids]))[None],
        size,
        landmark_ids=torch.from_numpy(ids),
        focal=focal,
        steps=steps,
        lbfgs_steps=lbfgs,
        fit_shape=True,
        num_shape=min(100, int(getattr(head, "num_shape", 100))),
        shape_prior=3e-3,
        weights=landmark_weights(ids),
        pairs=pairs,
        pair_weights=pair_w,
        jaw_first=True,
        eye_coupling=1.0,
    )


def fit_photo(
    head: FlameModel, face: PhotoFace, image_size: tuple[int, int], quick: bool = False
) -> PhotoFit:
    """Fit identity, the photo's expression, jaw, gaze and pose, and the focal length.

    Args:
        head: the head model (procedural or a FLAME file), with a MediaPipe landmark embedding.
        face: the face found in the photo (:func:`~headstudio.train.photo_input.choose_face`).
        image_size: the photo's ``(W, H)``.
        quick: fewer iterations (tests and the demo's quick mode).

    Raises:
        HeadStudioError: the head has no landmark embedding, or the fit fails.
    """
    ids = _head_ids(head)
    if len(ids) < 50:
        raise HeadStudioError(
            f"the head's landmark embedding covers only {len(ids)} of MediaPipe's 478 landmarks; a photo fit "
            "needs the 478-point embedding (the procedural head has it; for FLAME, the MediaPipe "
            "embedding file).",
            argument="head",
        )
    lm = np.asarray(face.landmarks, np.float32)

    def fit_at(fov: float, steps: int, lbfgs: int) -> FitResult:
        try:
            return _fit_once(head, lm, ids, image_size, fov_to_focal(fov, image_size), steps, lbfgs)
        except ValueError as e:
            raise HeadStudioError(f"could not fit the head to the photo's landmarks: {e}") from e

    # short fits over the grid choose the field of view; one full fit at the best
    grid = _FOV_GRID_DEG[1::2] if quick else _FOV_GRID_DEG
    errs = [float(fit_at(f, 40, 10).error_px.mean()) for f in grid]
    fov = grid[int(np.argmin(errs))]
    r = fit_at(fov, *((60, 20) if quick else (150, 60)))
    kw = {k: r.params[k] for k in VIEW_FIELDS}
    per = _per_landmark(head, r, ids, lm)
    fit = PhotoFit(
        shape=_pad(r.shape, head).detach(),
        view={k: v.detach().clone() for k, v in kw.items()},
        focal=float(r.focal),
        translation=r.translation[0].detach().clone(),
        image_size=(int(image_size[0]), int(image_size[1])),
        error_px=float(r.error_px.mean()),
        error_per_landmark=per,
        landmark_ids=ids,
    )
    log.info(
        "photo fit: %.2f px mean reprojection error over %d landmarks, field of view %.1f deg (of %s)",
        fit.error_px,
        len(ids),
        fit.fov_deg,
        ", ".join(f"{g:.0f}: {e:.2f} px" for g, e in zip(grid, errs)),
    )
    return fit


def _pad(shape: torch.Tensor, head: FlameModel) -> torch.Tensor:
    """``[1, s]`` fitted leading components -> ``[1, num_shape]`` of the head."""
    n = int(getattr(head, "num_shape", shape.shape[1]))
    out = torch.zeros(1, n, dtype=shape.dtype)
    out[:, : shape.shape[1]] = shape[:, :n]
    return out


def _per_landmark(head: FlameModel, r: FitResult, ids: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """``[L]`` pixel error of each fitted landmark, recomputed from the full head."""
    emb = head.landmark_embedding
    lh = LandmarkHead(head, emb.select(torch.from_numpy(ids)))
    with torch.no_grad():
        pts = lh(r.shape, r.params["expression"], *(r.params[k] for k in POSE_FIELDS))
        px = project(pts, r.translation, r.focal, r.image_size)[0].numpy()
    return np.linalg.norm(px - lm[ids], axis=1).astype(np.float32)
