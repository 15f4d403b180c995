"""What video driving takes and gives: :class:`DriveOptions` and :class:`DriveResult` (the motion,
the fit, the landmarks and the one-line summary and per-frame report of a run).

Kept apart from :mod:`headstudio.animate.drive` (the fitting itself) so the options and the result
read on one page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from flame_core.fitting import FitResult
from flame_core.motion import MotionSequence

from .face_track import FaceTrack

__all__ = ["DriveOptions", "DriveResult", "JawCurve"]


class JawCurve(Protocol):
    """What the drive needs of a jaw calibration
    (:class:`headstudio.animate.drive_calibration.JawCalibration`)."""

    def apply(self, jaw_open: torch.Tensor) -> torch.Tensor:
        """The jaw opening to drive for a fitted one (``[T]``, rad, relative to the neutral)."""
        ...

    def summary(self) -> str:
        """One line for the run's summary."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for the report."""
        ...


@dataclass(frozen=True)
class DriveOptions:
    """How a video is turned into a motion.

    Attributes:
        neutral: ``"auto"`` (the video's least active frames), ``"none"`` (absolute parameters)
            or the path of a calibration image of the actor's resting face.
        neutral_fraction: share of the frames taken as the least active ones with ``"auto"``.
        min_cutoff / beta / d_cutoff: the one-euro filter on the landmarks (Hz; beta per face
            height per second); ``min_cutoff = inf`` turns the filter off.
        smoothing: weight of the fitter's second-difference penalty over time (0: none).
        jaw_first: fit the jaw before the expression (see the module docstring).
        expression_prior: L2 weight on the expression coefficients.
        num_expression: expression components fitted.
        steps / lbfgs_steps: optimiser iterations per fitting stage.
        landmarker: FaceLandmarker model path (see :func:`resolve_landmarker`).
        calibrate: pass the fitted jaw opening (relative to the neutral; absolute with
            ``neutral="none"``) through the avatar's jaw calibration
            (:mod:`headstudio.animate.drive_calibration`) where the caller gives one (``headstudio
            drive`` and the round trip do; a fit of a bare head has no avatar to calibrate on).
    """

    neutral: str | Path = "auto"
    neutral_fraction: float = 0.2
    min_cutoff: float = 1.0
    beta: float = 40.0
    d_cutoff: float = 2.0
    smoothing: float = 0.0
    jaw_first: bool = True
    expression_prior: float = 1e-3
    num_expression: int = 50
    steps: int = 150
    lbfgs_steps: int = 50
    eye_coupling: float = 0.0
    region_weights: dict[str, float] | None = None
    pair_weights: dict[str, float] | None = None
    landmarker: str | Path | None = None
    calibrate: bool = True


@dataclass
class DriveResult:
    """The fitted motion with what produced it.

    Attributes:
        motion: ``flame_core.MotionSequence`` at the video's frame rate, relative to the neutral.
        fit: the ``flame_core.FitResult`` (shape, camera, absolute parameters).
        landmarks: ``[T, 478, 2]`` pixel landmarks after filling lost frames and filtering.
        found: ``[T]`` bool, frames where MediaPipe found a face.
        image_size: ``(width, height)`` of the video.
        error_px: ``[T]`` mean distance in pixels between the fitted and the detected landmarks.
        neutral: the subtracted resting parameters (``expression [E]``, ``jaw_pose [3]``,
            ``eye_pose [6]``); empty with ``neutral="none"``.
        neutral_frames: the video frames the auto neutral came from (empty otherwise).
        track: MediaPipe's raw reading (:class:`headstudio.animate.face_track.FaceTrack`).
        calibration: the jaw calibration applied to the motion (``None``: none).
    """

    motion: MotionSequence
    fit: FitResult
    landmarks: np.ndarray
    found: np.ndarray
    image_size: tuple[int, int]
    error_px: np.ndarray = field(default_factory=lambda: np.zeros(0))
    neutral: dict[str, torch.Tensor] = field(default_factory=dict)
    neutral_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    track: FaceTrack | None = None
    calibration: JawCurve | None = None

    @property
    def frames_with_face(self) -> int:
        """Frames where MediaPipe found a face."""
        return int(self.found.sum())

    @property
    def lost_frames(self) -> int:
        """Frames without a face, filled by interpolation."""
        return int((~self.found).sum())

    def summary(self) -> str:
        """One line for the user: frames with a face, the lost ones, the reprojection error."""
        T = len(self.found)
        err = self.error_px
        lost = np.flatnonzero(~self.found)
        text = f"face found in {self.frames_with_face}/{T} frames"
        if len(lost):
            text += f" ({self.lost_frames} lost at frame{'s' if len(lost) > 1 else ''} {_frame_ranges(lost)}"
            text += ", filled by interpolation)"
        worst = int(np.argmax(err))
        text += (
            f"; landmark reprojection error mean {float(err.mean()):.2f} px, "
            f"max {float(err[worst]):.2f} px at frame {worst}"
        )
        if len(self.neutral_frames):
            text += f"; neutral from {len(self.neutral_frames)} least active frames"
        if self.calibration is not None:
            text += f"; {self.calibration.summary()}"
        return text

    def report(self) -> dict[str, Any]:
        """Per-frame record of the run (JSON-ready): for each frame whether MediaPipe found a face
        and the landmark reprojection error in pixels; the lost and neutral frames; the neutral."""
        return {
            "frames": len(self.found),
            "fps": float(self.motion.fps),
            "image_size": list(self.image_size),
            "frames_with_face": self.frames_with_face,
            "lost_frames": np.flatnonzero(~self.found).tolist(),
            "found": self.found.astype(bool).tolist(),
            "error_px": [round(float(e), 4) for e in self.error_px],
            "error_px_mean": float(self.error_px.mean()),
            "neutral_frames": self.neutral_frames.tolist(),
            "neutral": {k: v.detach().cpu().tolist() for k, v in self.neutral.items()},
            "jaw_calibration": None if self.calibration is None else self.calibration.to_dict(),
        }


def _frame_ranges(frames: np.ndarray, limit: int = 6) -> str:
    """``[3, 4, 5, 9]`` -> ``"3-5, 9"`` (at most ``limit`` runs, then ``...``)."""
    runs: list[list[int]] = []
    for f in frames.tolist():
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit])
    return text + (", ..." if len(runs) > limit else "")
