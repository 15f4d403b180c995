"""``animate``: an avatar moved by a FLAME motion, by ARKit curves (a Live Link Face CSV), or
lip-synced to an audio file, to MP4."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..animate.arkit import basis_for, curves_to_motion, read_live_link_csv
from ..animate.talk import lipsync_motion
from ..errors import HeadStudioError, require_file
from ..head_motion import MOTION_SUFFIXES
from ..output.rendering import check_size, render_motion
from .common import AvatarOptions, check_output, open_avatar

__all__ = ["AnimateOptions", "AnimateResult", "run"]


@dataclass(frozen=True, kw_only=True)
class AnimateOptions(AvatarOptions):
    """``output``: the ``.mp4``; ``motion``: a motion file (``None``: the procedural one, or lip
    sync to ``audio``); ``arkit``: ARKit curves (a Live Link Face ``.csv``) played through the
    avatar's ARKit basis instead of ``motion``; ``audio``: muxed in; ``fps``: the video's rate
    (``None``: the motion's; with ``arkit`` also the curves' rate, which is otherwise read from
    their timecodes); ``size``: ``(width, height)``; ``frames``: at most this many frames."""

    output: Path
    motion: Path | None = None
    arkit: Path | None = None
    audio: Path | None = None
    fps: float | None = None
    size: tuple[int, int] = (512, 512)
    frames: int | None = None


@dataclass(frozen=True)
class AnimateResult:
    output: Path
    frames: int


def run(options: AnimateOptions) -> AnimateResult:
    """Render the animation (one line errors for bad input, before any work)."""
    w, h = check_size(*options.size)
    out = check_output(options.output, (".mp4",))
    if options.motion is not None and options.arkit is not None:
        raise HeadStudioError("«motion» and «arkit» both give the motion; give one of them.")
    if options.motion is not None:
        require_file(options.motion, "motion file", MOTION_SUFFIXES)
    curves = None
    if options.arkit is not None:
        require_file(options.arkit, "ARKit curves file", (".csv",))
        curves = read_live_link_csv(options.arkit, fps=options.fps)  # bad columns fail before any work
    if options.audio is not None:
        require_file(options.audio, "audio file")
    avatar, _ = open_avatar(options)
    motion: Any = options.motion
    if curves is not None:
        motion = curves_to_motion(curves, basis_for(avatar))
    elif options.audio is not None and options.motion is None:  # lip sync to the audio itself
        motion = lipsync_motion(avatar, options.audio, fps=options.fps or 30.0)
    n = render_motion(
        avatar, motion, out, audio=options.audio, fps=options.fps, size=(w, h), num_frames=options.frames,
        progress=options.progress,
    )  # fmt: skip
    return AnimateResult(out, n)
