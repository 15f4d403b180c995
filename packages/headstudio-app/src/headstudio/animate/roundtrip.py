"""The drive round trip: render known motions of an avatar, drive the same avatar from those
videos, and measure with MediaPipe how much of what the face does survives.

For each motion (:data:`MOTIONS`):

1. the avatar animated with the motion is rendered to ``<name>_source.mp4``
   (:func:`headstudio.output.rendering.render_motion`);
2. :func:`headstudio.animate.drive_calibration.drive_avatar` fits a motion to that video (with the
   avatar's jaw calibration, as ``headstudio drive`` does), and the same avatar animated with it is
   rendered to ``<name>_driven.mp4``;
3. MediaPipe's FaceLandmarker measures both videos (:mod:`headstudio.animate.face_metrics`), and the
   driven features are compared with the source's (Pearson r, amplitude ratio);
4. the *ceiling*: the same features computed from the avatar's own mesh landmarks under the true
   motion (projected with the render camera) are compared with MediaPipe's reading of the source
   video. The round trip cannot be more faithful than MediaPipe's reading of the source.

A feature is scored on a motion when the motion is made to move it (:data:`MOTION_FEATURES`) and
it does move in the ground truth (its mesh standard deviation is at least
:data:`MIN_MOTION_STD`). Side effects are not scored: a blink moves the eye corners a little, so
the iris position relative to them moves too, but the motion does not move the eyes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from flame_core.motion import MotionSequence, procedural_talking_motion

from ..avatar import Avatar
from ..output.rendering import render_motion
from ..video import read_video_frames
from .drive import DriveOptions, DriveResult, detect_landmarks
from .drive_calibration import drive_avatar, mesh_landmarks_px
from .face_metrics import FEATURES, FeatureMatch, compare, face_features
from .face_track import PAIR_WEIGHTS, REGION_WEIGHTS

__all__ = [
    "MOTIONS",
    "MIN_MOTION_STD",
    "MOTION_FEATURES",
    "roundtrip_motion",
    "pre_issue_options",
    "mesh_landmarks_px",
    "RoundTrip",
    "run_roundtrip",
    "format_table",
]

log = logging.getLogger(__name__)

#: The known motions of the round trip.
MOTIONS = ("talk", "jaw", "brows", "blinks", "gaze")
#: The features each motion is made to move.
MOTION_FEATURES = {
    "talk": FEATURES,
    "jaw": ("lip_gap",),
    "brows": ("brow",),
    "blinks": ("eye_r", "eye_l"),
    "gaze": ("iris_x", "iris_y"),
}
#: Smallest ground-truth standard deviation of a feature for it to count as moving in a motion
#: (in the feature's own units: fractions of face height or eye width). Below it the feature's
#: true motion is within MediaPipe's jitter and its correlation would measure only noise.
MIN_MOTION_STD = {
    "lip_gap": 0.01,
    "mouth_w": 0.01,
    "eye_r": 0.03,
    "eye_l": 0.03,
    "brow": 0.004,
    "iris_x": 0.02,
    "iris_y": 0.02,
}


def pre_issue_options() -> DriveOptions:
    """``DriveOptions`` that fit as ``headstudio drive`` did before issue 15 (the baseline of the
    round trip): every landmark weight 1, no landmark pairs, one stage, the second-difference
    smoothing 1.0 that was the default, no filter, no neutral, no jaw calibration."""
    return DriveOptions(
        neutral="none",
        calibrate=False,
        min_cutoff=math.inf,
        smoothing=1.0,
        jaw_first=False,
        region_weights=dict.fromkeys(REGION_WEIGHTS, 1.0),
        pair_weights=dict.fromkeys(PAIR_WEIGHTS, 0.0),
    )


def _bumps(t: np.ndarray, centres: Sequence[float], width: float, heights: Sequence[float]) -> np.ndarray:
    """Sum of raised-cosine bumps of half-width ``width`` (seconds) at ``centres`` with ``heights``."""
    out = np.zeros_like(t)
    for c, h in zip(centres, heights):
        x = np.clip((t - c) / width, -1.0, 1.0)
        out += h * 0.5 * (1.0 + np.cos(np.pi * x))
    return out


def roundtrip_motion(
    name: str, num_frames: int = 90, fps: float = 30.0, num_expression: int = 100
) -> MotionSequence:
    """One of the :data:`MOTIONS` as a ``flame_core.MotionSequence`` (deterministic).

    - ``talk``: ``flame_core.procedural_talking_motion`` (jaw, mouth, blinks, brows, gaze, head).
    - ``jaw``: mouth openings of several heights (jaw 0.02–0.28 rad), nothing else.
    - ``brows``: brow raises (expression 3) and a furrow (4).
    - ``blinks``: both eyes, then the left, then the right (expressions 5, 6).
    - ``gaze``: the eyes sweep left-right, then up-down (``eye_pose``, ±0.3 / ±0.2 rad).

    The events are placed at fixed fractions of the clip, so any length shows all of them.
    """
    if name not in MOTIONS:
        raise ValueError(f"unknown round-trip motion {name!r}; use one of {', '.join(MOTIONS)}")
    T = int(num_frames)
    if T < 8:
        raise ValueError(f"num_frames = {num_frames}; a round-trip motion needs at least 8 frames")
    if name == "talk":
        return procedural_talking_motion(num_frames=T, fps=fps, num_expression=num_expression, seed=0)
    dur = T / float(fps)
    t = np.arange(T) / float(fps)
    u = t / dur  # 0..1 along the clip
    expr = np.zeros((T, num_expression))
    jaw = np.zeros((T, 3))
    eye = np.zeros((T, 6))
    if name == "jaw":
        jaw[:, 0] = 0.02 + _bumps(u, (0.15, 0.35, 0.55, 0.8), 0.08, (0.26, 0.12, 0.2, 0.08))
    elif name == "brows":
        expr[:, 3] = _bumps(u, (0.2, 0.5), 0.1, (1.0, 0.6))
        expr[:, 4] = _bumps(u, (0.8,), 0.1, (0.8,))
    elif name == "blinks":
        w = min(0.08, 3.5 / T)  # a blink lasts ~0.15 s, but at least 7 frames of short clips
        expr[:, 5] = _bumps(u, (0.2, 0.5), w, (1.0, 1.0))
        expr[:, 6] = _bumps(u, (0.2, 0.8), w, (1.0, 1.0))
    elif name == "gaze":
        yaw = 0.3 * np.sin(2 * np.pi * np.clip(u / 0.5, 0, 1)) * (u < 0.5)
        pitch = 0.2 * np.sin(2 * np.pi * np.clip((u - 0.5) / 0.5, 0, 1)) * (u >= 0.5)
        eye[:, 0] = eye[:, 3] = pitch
        eye[:, 1] = eye[:, 4] = yaw
    return MotionSequence(expression=expr, jaw_pose=jaw, eye_pose=eye, fps=fps)


@dataclass
class Driven:
    """One drive of a round trip: the fitted motion rendered and measured.

    Attributes:
        driven: ``{feature: [T]}`` from MediaPipe on the driven video.
        fitted: ``{feature: [T]}`` from the avatar's mesh under the fitted motion.
        driven_vs_source: per feature, driven video against source video (the yardstick).
        fitted_vs_source: the fitted mesh against MediaPipe's reading of the source: how
            faithfully the fit reproduces what the detector saw.
        drive: the :class:`headstudio.animate.drive.DriveResult`.
        video: the driven MP4.
        seconds: wall time of the fit (detection included).
    """

    driven: dict[str, np.ndarray]
    fitted: dict[str, np.ndarray]
    driven_vs_source: dict[str, FeatureMatch]
    fitted_vs_source: dict[str, FeatureMatch]
    drive: DriveResult = field(repr=False)
    video: Path = Path()
    seconds: float = 0.0


@dataclass
class RoundTrip:
    """One motion's round trip.

    Attributes:
        name: the motion.
        truth / source: ``{feature: [T]}`` from the mesh under the true motion and from
            MediaPipe on the source video.
        source_vs_truth: per feature, MediaPipe on the source against the mesh (the ceiling).
        moving: the features that move in this motion (scored); the others are still.
        drives: one :class:`Driven` per drive variant (by name, e.g. ``"ours"``, ``"baseline"``).
        video: the source MP4.
    """

    name: str
    truth: dict[str, np.ndarray]
    source: dict[str, np.ndarray]
    source_vs_truth: dict[str, FeatureMatch]
    moving: tuple[str, ...]
    drives: dict[str, Driven]
    video: Path = Path()

    def failures(self, variant: str, min_r: float, amp_range: tuple[float, float]) -> list[str]:
        """The moving features whose driven-vs-source match misses the bars, as ``motion/feature r amp``."""
        d = self.drives[variant].driven_vs_source
        return [
            f"{self.name}/{k}: r {d[k].r:.2f} amp {d[k].amplitude:.2f}"
            for k in self.moving
            if not d[k].meets(min_r, amp_range)
        ]


def _measure(path: Path, landmarker: str | Path | None) -> dict[str, np.ndarray]:
    frames, fps = read_video_frames(path)
    lm, _found = detect_landmarks(frames, fps, landmarker)
    return face_features(lm)


def run_roundtrip(
    avatar: Avatar,
    name: str,
    out_dir: str | Path,
    num_frames: int = 90,
    fps: float = 30.0,
    size: int = 256,
    landmarker: str | Path | None = None,
    progress: bool = False,
    variants: dict[str, DriveOptions] | None = None,
) -> RoundTrip:
    """Run the round trip of the module docstring for motion ``name``; videos go to ``out_dir``.

    Args:
        avatar: the avatar to animate and drive (its head must have a MediaPipe embedding).
        name: one of :data:`MOTIONS`.
        num_frames / fps / size: the source clip (square frames of ``size`` pixels).
        landmarker: FaceLandmarker model (see :func:`headstudio.animate.drive.resolve_landmarker`).
        progress: progress bars while rendering.
        variants: drives to run on the same source, ``{name: DriveOptions}`` (default
            ``{"ours": DriveOptions()}``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    num_expr = int(getattr(avatar.head, "num_expression", 100))
    motion = roundtrip_motion(name, num_frames, fps, num_expr)
    src = out / f"{name}_source.mp4"
    render_motion(avatar, motion, src, size=size, progress=progress)
    truth = face_features(mesh_landmarks_px(avatar, motion, (size, size)))
    source = _measure(src, landmarker)
    drives = {}
    for label, opts in (variants or {"ours": DriveOptions()}).items():
        t0 = time.perf_counter()
        res = drive_avatar(avatar, src, opts, landmarker=landmarker, progress=progress)
        seconds = time.perf_counter() - t0
        video = out / f"{name}_driven_{label}.mp4"
        render_motion(avatar, res.motion, video, size=size, progress=progress)
        fitted = face_features(mesh_landmarks_px(avatar, res.motion, (size, size)))
        driven = _measure(video, landmarker)
        drives[label] = Driven(
            driven, fitted, compare(source, driven), compare(source, fitted), res, video, seconds
        )
    return RoundTrip(
        name=name,
        truth=truth,
        source=source,
        source_vs_truth=compare(truth, source),
        moving=tuple(k for k in MOTION_FEATURES[name] if float(np.nanstd(truth[k])) >= MIN_MOTION_STD[k]),
        drives=drives,
        video=src,
    )


def format_table(results: Sequence[RoundTrip], variant: str = "ours", baseline: str | None = None) -> str:
    """Markdown table: per motion and moving feature, Pearson r / amplitude ratio of the round trip
    (driven vs source video) of ``variant`` (and of ``baseline``), of its fit (fitted mesh vs
    MediaPipe on the source) and of the ceiling (MediaPipe on the source vs the true mesh)."""
    head = "| motion | feature | round trip r | amp |"
    if baseline:
        head += f" {baseline} r | amp |"
    head += " fit r | amp | ceiling r | amp |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for rt in results:
        for k in rt.moving:
            d = rt.drives[variant]
            cells = [d.driven_vs_source[k]]
            if baseline:
                cells.append(rt.drives[baseline].driven_vs_source[k])
            cells += [d.fitted_vs_source[k], rt.source_vs_truth[k]]
            lines.append(
                f"| {rt.name} | {k} | " + " | ".join(f"{m.r:.2f} | {m.amplitude:.2f}" for m in cells) + " |"
            )
    return "\n".join(lines)
