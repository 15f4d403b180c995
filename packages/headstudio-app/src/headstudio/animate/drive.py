"""Video-driven animation: video → MediaPipe face landmarks → FLAME fit → motion.

1. Frames are decoded with imageio-ffmpeg (:func:`headstudio.video.read_video_frames`).
2. MediaPipe's FaceLandmarker finds 478 landmarks and 52 blendshape scores per frame
   (:mod:`headstudio.animate.face_track`). Frames where tracking is lost are filled by linear
   interpolation of their neighbours (nearest at the ends) and counted; a video with no face at
   all is an error.
3. The landmarks are smoothed by a two-sided one-euro filter (:class:`flame_core.filters.OneEuroFilter`)
   in units of the face's height, so jitter is removed while blinks and mouth peaks are kept.
4. ``flame_core.fit_to_landmarks`` fits FLAME with the landmarks weighted by region
   (:func:`headstudio.animate.face_track.landmark_weights`: lips, eyelids, irises, brows first) and in
   two stages: head pose, identity, jaw and eyes (gaze from the iris landmarks) first, then the
   expression on the residual with the jaw held near its first-stage value, so expression
   components cannot take over the jaw's job.
5. The motion is made relative to the actor's resting face (``neutral``): with ``"auto"`` the
   median parameters of the video's least active frames (mouth closed, eyes open, brows and gaze
   at their usual place; MediaPipe's jawOpen / eyeBlink scores count too), with an image file
   the fit of that calibration photo (same identity as the video). The neutral's expression,
   jaw and gaze are subtracted, so an actor's resting frown or smile is not passed on; the
   head pose stays absolute. The identity shape fitted to the actor is never part of the motion.
6. With a jaw calibration (``calibrate``, made by
   :class:`headstudio.animate.drive_calibration.JawCalibrator` on the avatar being driven), the
   relative jaw opening goes through the avatar's calibration curve, so the driven avatar's mouth
   opens as far as MediaPipe read the video's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flame_core import FlameModel
from flame_core.filters import OneEuroFilter
from flame_core.fitting import FitResult, fit_to_landmarks
from PIL import Image, UnidentifiedImageError

from .._atomic import atomic_output
from ..errors import HeadStudioError
from ..video import read_video_frames
from .drive_types import DriveOptions, DriveResult, JawCurve
from .face_metrics import face_features
from .face_track import (
    NUM_LANDMARKS,
    FaceTrack,
    detect_face,
    detect_landmarks,
    expression_pairs,
    fill_missing,
    landmark_weights,
    resolve_landmarker,
)

#: Makes the jaw calibration for a video from MediaPipe's reading of it (``None``: uncalibrated).
Calibrate = Callable[[FaceTrack], JawCurve | None]

__all__ = [
    "NUM_LANDMARKS",
    "resolve_landmarker",
    "detect_face",
    "detect_landmarks",
    "fill_missing",
    "DriveOptions",
    "DriveResult",
    "least_active_frames",
    "fit_video",
    "fit_track",
    "video_to_motion",
]

log = logging.getLogger(__name__)

#: Typical full range of each feature (:mod:`headstudio.animate.face_metrics` units) used to add up a
#: frame's activity in :func:`least_active_frames`.
ACTIVITY_SCALES = {
    "lip_gap": 0.1,
    "mouth_w": 0.1,
    "eye_r": 0.05,  # eye openness spans ~0..0.35: a half-closed eye counts ~3
    "eye_l": 0.05,
    "brow": 0.02,
    "iris_x": 0.1,
    "iris_y": 0.1,
}
#: MediaPipe blendshapes whose scores (0..1) add to a frame's activity.
ACTIVITY_BLENDSHAPES = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight")
#: Motion fields made relative to the neutral face.
RELATIVE_FIELDS = ("expression", "jaw_pose", "eye_pose")


def least_active_frames(track: FaceTrack, landmarks: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    """Frames where the face is closest to rest: mouth closed, eyes open, brows and gaze usual.

    A frame's activity adds up, over the :mod:`headstudio.animate.face_metrics` features, its distance
    from the feature's resting value (the 5th percentile for the lip gap, the median otherwise)
    in units of :data:`ACTIVITY_SCALES`, plus MediaPipe's :data:`ACTIVITY_BLENDSHAPES` scores.

    Args:
        track: MediaPipe's reading (for the blendshape scores and which frames had a face).
        landmarks: ``[T, 478, 2]`` landmarks (lost frames filled).
        fraction: share of the frames returned (at least one; frames with a face only).

    Returns:
        Sorted frame indices ``[K]``.
    """
    feats = face_features(landmarks)
    T = len(landmarks)
    act = np.zeros(T)
    for k, scale in ACTIVITY_SCALES.items():
        f = feats[k]
        rest = np.nanpercentile(f, 5) if k == "lip_gap" else np.nanmedian(f)
        act += np.abs(f - rest) / scale
    for name in ACTIVITY_BLENDSHAPES:
        s = track.score(name)
        act += np.where(np.isfinite(s), s, 0.0)
    act = np.where(track.found & np.isfinite(act), act, np.inf)
    k = max(1, int(round(fraction * int(track.found.sum()))))
    return np.sort(np.argsort(act, kind="stable")[:k])


def _filter_landmarks(lms: np.ndarray, fps: float, opts: DriveOptions) -> np.ndarray:
    """One-euro filter of ``[T, 478, 2]`` pixels, its speed measured in face heights per second."""
    if not math.isfinite(opts.min_cutoff) or len(lms) < 3:
        return lms
    height = float(np.median(np.linalg.norm(lms[:, 152] - lms[:, 10], axis=-1)))
    flt = OneEuroFilter(opts.min_cutoff, opts.beta, opts.d_cutoff)
    T = len(lms)
    out = flt(lms.reshape(T, -1) / max(height, 1e-6), fps) * height
    return out.reshape(lms.shape).astype(np.float32)


def _head_ids(head: FlameModel) -> torch.Tensor:
    emb = getattr(head, "landmark_embedding", None)
    if emb is None:
        raise HeadStudioError(
            "the avatar's head model has no landmark embedding, so video landmarks cannot be fitted; "
            "use the procedural head or a FLAME model with its MediaPipe embedding."
        )
    ids = emb.landmark_indices.detach().cpu().long()  # [L] MediaPipe ids the head knows
    return ids[ids < NUM_LANDMARKS]


def _fit(
    head: FlameModel, lms: np.ndarray, size: tuple[int, int], opts: DriveOptions, fps: float, **kw: Any
) -> FitResult:
    ids = _head_ids(head)
    pairs, pair_w = expression_pairs(ids.numpy(), opts.pair_weights)
    try:
        return fit_to_landmarks(
            head,
            torch.from_numpy(np.ascontiguousarray(lms))[:, ids],
            size,
            landmark_ids=ids,
            weights=landmark_weights(ids.numpy(), opts.region_weights),
            pairs=pairs,
            pair_weights=pair_w,
            jaw_first=opts.jaw_first,
            expression_prior=opts.expression_prior,
            num_expression=opts.num_expression,
            smoothing=opts.smoothing,
            steps=opts.steps,
            lbfgs_steps=opts.lbfgs_steps,
            eye_coupling=opts.eye_coupling,
            fps=float(fps),
            **kw,
        )
    except ValueError as err:
        raise HeadStudioError(f"could not fit FLAME to the face landmarks: {err}") from err


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise HeadStudioError(
            f"«neutral» '{path}' is not a readable image ({type(err).__name__}); give a PNG or JPEG "
            "photo of the actor's resting face, or «neutral» auto."
        ) from err


def _neutral_from_image(
    head: FlameModel, path: Path, video_fit: FitResult, opts: DriveOptions
) -> dict[str, torch.Tensor]:
    """Fit the calibration photo with the video's identity; its expression, jaw and gaze."""
    img = _read_image(path)
    track = detect_face([img], None, opts.landmarker)
    if not track.found[0]:
        raise HeadStudioError(
            f"no face was found in the «neutral» image '{path}'; use a well-lit frontal photo of the "
            "actor's resting face, or «neutral» auto."
        )
    h, w = img.shape[:2]
    fit = _fit(head, track.landmarks, (w, h), opts, 30.0, init={"shape": video_fit.shape}, fit_shape=False)
    return {k: fit.params[k][0] for k in RELATIVE_FIELDS}


def _resolve_neutral(neutral: str | Path) -> str | Path:
    if isinstance(neutral, str) and neutral.strip().lower() in ("auto", "none"):
        return neutral.strip().lower()
    return Path(neutral)


def fit_video(
    head: FlameModel,
    frames: Sequence[np.ndarray],
    fps: float,
    smoothing: float | None = None,
    landmarker: str | Path | None = None,
    options: DriveOptions | None = None,
    source: str = "the video",
    calibrate: Calibrate | None = None,
) -> DriveResult:
    """Landmarks of every frame → FLAME fit → motion relative to the neutral (module docstring).

    Args:
        head: the ``FlameModel`` to fit (the avatar's head).
        frames: T uint8 RGB frames ``[H, W, 3]``.
        fps: the video's frame rate; the motion gets it.
        smoothing: overrides ``options.smoothing`` (the fitter's temporal penalty) when given.
        landmarker: overrides ``options.landmarker`` when given.
        options: see :class:`DriveOptions` (default: its defaults).
        source: how error messages name the video.
        calibrate: the avatar's jaw calibration (step 6; used when ``options.calibrate``).

    Raises:
        HeadStudioError: no frames, no face in any frame, a bad neutral image, a failed fit.
    """
    opts = options or DriveOptions()
    if smoothing is not None:
        opts = dataclasses.replace(opts, smoothing=float(smoothing))
    if landmarker is not None:
        opts = dataclasses.replace(opts, landmarker=landmarker)
    neutral_kind = _resolve_neutral(opts.neutral)
    if isinstance(neutral_kind, Path) and not neutral_kind.is_file():
        raise HeadStudioError(
            f"«neutral» '{neutral_kind}' does not exist; give an image of the resting face, auto or none."
        )
    if len(frames) == 0:
        raise HeadStudioError("the video has no frames.")
    h, w = frames[0].shape[:2]
    _head_ids(head)
    track = detect_face(frames, fps, opts.landmarker)
    return fit_track(head, track, fps, (w, h), opts, source, calibrate)


def fit_track(
    head: FlameModel,
    track: FaceTrack,
    fps: float,
    image_size: tuple[int, int],
    options: DriveOptions | None = None,
    source: str = "the video",
    calibrate: Calibrate | None = None,
) -> DriveResult:
    """The fit of :func:`fit_video` from MediaPipe's reading of the video (steps 2–6 of the module
    docstring).

    Args:
        head: the ``FlameModel`` to fit.
        track: :func:`headstudio.animate.face_track.detect_face`'s result for the video.
        fps: the video's frame rate.
        image_size: ``(width, height)`` of the frames.
        options: see :class:`DriveOptions`.
        source: how error messages name the video.
        calibrate: the avatar's jaw calibration (step 6; used when ``options.calibrate``).
    """
    opts = options or DriveOptions()
    neutral_kind = _resolve_neutral(opts.neutral)
    w, h = image_size
    if not track.found.any():
        raise HeadStudioError(
            f"no face was found in any of the {len(track.found)} frames of {source}; use a clip with one "
            "clearly visible, roughly frontal face."
        )
    lms = _filter_landmarks(fill_missing(track.landmarks, track.found), fps, opts)
    fit = _fit(head, lms, (w, h), opts, fps)
    params = {k: v.detach().clone() for k, v in fit.params.items()}
    neutral: dict[str, torch.Tensor] = {}
    neutral_frames = np.zeros(0, np.int64)
    if neutral_kind == "auto":
        neutral_frames = least_active_frames(track, lms, opts.neutral_fraction)
        idx = torch.as_tensor(neutral_frames)
        neutral = {k: params[k][idx].median(0).values for k in RELATIVE_FIELDS}
    elif isinstance(neutral_kind, Path):
        neutral = _neutral_from_image(head, neutral_kind, fit, opts)
    for k, v in neutral.items():
        params[k] = params[k] - v[None]
    calibration = calibrate(track) if calibrate is not None and opts.calibrate else None
    if calibration is not None:
        params["jaw_pose"][:, 0] = calibration.apply(params["jaw_pose"][:, 0])
    motion = dataclasses.replace(fit.motion, fps=float(fps), **{k: params[k] for k in RELATIVE_FIELDS})
    err = torch.as_tensor(fit.error_px).detach().double().numpy()
    res = DriveResult(
        motion=motion,
        fit=fit,
        landmarks=lms,
        found=track.found,
        image_size=(w, h),
        error_px=err,
        neutral=neutral,
        neutral_frames=neutral_frames,
        track=track,
        calibration=calibration,
    )
    log.info("%s", res.summary())
    return res


def video_to_motion(
    head: FlameModel,
    video: str | Path,
    smoothing: float | None = None,
    landmarker: str | Path | None = None,
    save_motion: str | Path | None = None,
    max_frames: int | None = None,
    options: DriveOptions | None = None,
    calibrate: Calibrate | None = None,
) -> DriveResult:
    """Read ``video`` and fit a FLAME motion to it (:func:`fit_video`, with ``calibrate``); optionally
    save it as ``.npz``."""
    if save_motion is not None and Path(save_motion).suffix.lower() != ".npz":
        raise HeadStudioError(f"«save_motion» '{save_motion}' must end in .npz.")
    frames, fps = read_video_frames(video, max_frames=max_frames)
    result = fit_video(
        head, frames, fps, smoothing=smoothing, landmarker=landmarker, options=options, source=f"'{video}'",
        calibrate=calibrate,
    )  # fmt: skip
    if save_motion is not None:
        with atomic_output(save_motion) as tmp:
            result.motion.save(tmp)
        log.info("saved the fitted motion to %s", save_motion)
    return result
