"""``drive``: an avatar animated from a face video (landmarks → FLAME fit → render), optionally
with the captured face as ARKit curves in Live Link Face's CSV layout."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .._atomic import atomic_output
from ..animate.arkit import basis_for, motion_to_curves, write_live_link_csv
from ..animate.drive import DriveOptions as FitSettings
from ..animate.drive import resolve_landmarker
from ..animate.drive_calibration import drive_avatar
from ..errors import require_file
from ..output.rendering import check_size, render_motion
from .common import AvatarOptions, check_output, open_avatar

__all__ = ["DriveOptions", "DriveResult", "run", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_FIT = FitSettings()


@dataclass(frozen=True, kw_only=True)
class DriveOptions(AvatarOptions):
    """The video, the outputs and how the video is fitted.

    Attributes:
        video: the face video.
        output: the ``.mp4``.
        save_motion: also save the fitted motion (``.npz``).
        report: also save per-frame results (``.json``).
        arkit_out: also save the captured face as ARKit curves (``.csv``, Live Link Face's
            layout, at the video's frame rate), fitted through the avatar's ARKit basis.
        neutral: ``auto``, ``none`` or a photo of the actor's resting face.
        filter: the one-euro filter on the landmarks (``False``: fit the raw landmarks), with
            ``min_cutoff`` / ``beta`` / ``d_cutoff``.
        smoothing: second-difference penalty over time in the fit.
        calibrate: calibrate the fitted jaw on the avatar (:mod:`headstudio.animate.drive_calibration`:
            a short clip of the avatar opening its jaw, read by MediaPipe), so its mouth opens as
            far as the video's reads.
        landmarker: MediaPipe's ``face_landmarker.task``.
        max_frames: read at most this many frames.
        size: ``(width, height)`` of the video.
    """

    video: Path
    output: Path
    save_motion: Path | None = None
    report: Path | None = None
    arkit_out: Path | None = None
    neutral: str = "auto"
    filter: bool = True
    min_cutoff: float = _FIT.min_cutoff
    beta: float = _FIT.beta
    d_cutoff: float = _FIT.d_cutoff
    smoothing: float = 0.0
    calibrate: bool = _FIT.calibrate
    landmarker: str | None = None
    max_frames: int | None = None
    size: tuple[int, int] = (512, 512)


@dataclass(frozen=True)
class DriveResult:
    """``summary``: the fit's one-paragraph summary; ``frames``: frames rendered."""

    output: Path
    frames: int
    summary: str
    motion: Path | None = None
    report: Path | None = None
    arkit: Path | None = None


def run(options: DriveOptions) -> DriveResult:
    w, h = check_size(*options.size)
    out = check_output(options.output, (".mp4",))
    require_file(options.video, "video", VIDEO_SUFFIXES)
    if options.save_motion is not None:
        check_output(options.save_motion, (".npz",), "«save_motion»")
    if options.report is not None:
        check_output(options.report, (".json",), "«report»")
    if options.arkit_out is not None:
        check_output(options.arkit_out, (".csv",), "«arkit_out»")
    neutral = options.neutral.strip()
    if neutral.lower() not in ("auto", "none"):
        neutral = str(require_file(neutral, "«neutral» image", _IMAGE_SUFFIXES))
    resolve_landmarker(options.landmarker)
    settings = FitSettings(
        neutral=neutral, min_cutoff=options.min_cutoff if options.filter else math.inf, beta=options.beta,
        d_cutoff=options.d_cutoff, smoothing=options.smoothing, landmarker=options.landmarker,
        calibrate=options.calibrate,
    )  # fmt: skip
    avatar, _ = open_avatar(options)
    res = drive_avatar(
        avatar,
        options.video,
        settings,
        save_motion=options.save_motion,
        max_frames=options.max_frames,
        progress=options.progress,
    )
    if options.report is not None:
        with atomic_output(options.report) as tmp:
            tmp.write_text(json.dumps(res.report(), indent=1) + "\n", encoding="utf-8")
    if options.arkit_out is not None:
        # at the motion's rate: the video's
        curves = motion_to_curves(res.motion, basis_for(avatar), avatar.head, avatar.shape.detach())
        write_live_link_csv(options.arkit_out, curves)
    n = render_motion(avatar, res.motion, out, size=(w, h), progress=options.progress)
    return DriveResult(out, n, res.summary(), options.save_motion, options.report, options.arkit_out)
