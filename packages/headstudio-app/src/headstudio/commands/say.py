"""``say``: an avatar speaking a text (offline speech synthesis with espeak-ng) to MP4."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..animate.talk import say, synthesize_speech
from ..output.rendering import check_size
from .common import AvatarOptions, check_output, open_avatar

__all__ = ["SayOptions", "SayResult", "run"]


@dataclass(frozen=True, kw_only=True)
class SayOptions(AvatarOptions):
    """``text``: what to say; ``output``: the ``.mp4``; ``voice`` / ``rate`` (words per minute) /
    ``language``: espeak-ng's; ``motion_out``: also save the motion (``.npz``); ``fps``, ``size``."""

    text: str
    output: Path
    voice: str | None = None
    rate: int = 175
    language: str = "en"
    motion_out: Path | None = None
    fps: float = 30.0
    size: tuple[int, int] = (512, 512)


@dataclass(frozen=True)
class SayResult:
    output: Path
    frames: int
    duration: float
    motion: Path | None = None


def run(options: SayOptions) -> SayResult:
    w, h = check_size(*options.size)
    out = check_output(options.output, (".mp4",))
    if options.motion_out is not None:
        check_output(options.motion_out, (".npz",), "«motion_out»")
    utterance = synthesize_speech(
        options.text, language=options.language, voice=options.voice, rate=options.rate
    )
    avatar, _ = open_avatar(options)
    res = say(
        avatar, utterance, out, fps=options.fps, size=(w, h), motion_out=options.motion_out,
        progress=options.progress,
    )  # fmt: skip
    return SayResult(out, res.num_frames, res.duration, res.motion)
