"""Talking avatars: `headstudio say` (text → speech → video) and audio-only lip sync for `animate`.

The speech itself (espeak-ng, phoneme timing, visemes, coarticulation, audio analysis) lives in
``flame_core``; this module turns its errors into one-line :class:`HeadStudioError` messages,
reads audio files of any format (through imageio-ffmpeg's ffmpeg), and writes the outputs
atomically: the MP4 (speech muxed in) and the optional motion ``.npz`` appear under their names
only when both are complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from flame_core import FlameModel, MotionSequence

from headstudio.animate.speech.audio import read_wav
from headstudio.animate.speech.coarticulation import utterance_to_motion
from headstudio.animate.speech.espeak import SpeechError, Utterance, synthesize
from headstudio.animate.speech.lipsync import audio_to_motion

from .._atomic import temp_path_beside
from ..avatar import Avatar
from ..errors import HeadStudioError
from ..output.rendering import render_motion

__all__ = ["SayResult", "say", "synthesize_speech", "lipsync_motion", "load_audio"]

log = logging.getLogger(__name__)

_DECODE_RATE = 16000


@contextlib.contextmanager
def speech_errors() -> Iterator[None]:
    """Re-raise flame_core's speech errors (bad text, missing espeak-ng, silent audio) as one line."""
    try:
        yield
    except SpeechError as err:
        raise HeadStudioError(str(err)) from err


def synthesize_speech(
    text: str, language: str = "en", voice: str | None = None, rate: int = 175
) -> Utterance:
    """``headstudio.animate.speech.espeak.synthesize`` with one-line errors; returns the ``Utterance``."""
    with speech_errors():
        return synthesize(text, language=language, voice=voice, rate=rate)


def _head_of(avatar: Avatar) -> FlameModel:
    head = avatar.head
    if head.landmark_embedding is None:
        raise HeadStudioError(
            "this avatar's head has no MediaPipe landmark embedding, which lip sync needs to place the "
            "mouth shapes; give «flame» a FLAME file with mediapipe_landmark_embedding.npz beside it."
        )
    return head


@dataclass(frozen=True)
class SayResult:
    """What :func:`say` wrote: ``video`` (frames), ``duration`` (seconds of speech), ``phonemes``."""

    video: Path
    motion: Path | None
    num_frames: int
    duration: float
    phonemes: int


def say(
    avatar: Avatar,
    utterance: Utterance,
    out: str | Path,
    *,
    fps: float = 30.0,
    size: tuple[int, int] = (512, 512),
    motion_out: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
) -> SayResult:
    """Render ``avatar`` speaking ``utterance`` (from :func:`synthesize_speech`) to ``out`` (MP4 with
    the speech muxed in), and save the motion to ``motion_out`` when given.

    Both files are written to temporaries beside their targets and renamed only when the video is
    complete, so a failure or Ctrl-C leaves neither name (nor a temporary) behind.
    """
    out = Path(out)
    with speech_errors():
        motion = utterance_to_motion(_head_of(avatar), utterance, fps=fps, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        wav = temp_path_beside(out.with_suffix(".wav"), "speech")
        video_tmp = temp_path_beside(out, "partial")
        temps += [wav, video_tmp]
        utterance.save_wav(wav)
        motion_tmp = None
        if motion_out is not None:
            motion_out = Path(motion_out)
            motion_out.parent.mkdir(parents=True, exist_ok=True)
            motion_tmp = temp_path_beside(motion_out, "partial")
            temps.append(motion_tmp)
            motion.save(motion_tmp)
        n = render_motion(avatar, motion, video_tmp, audio=wav, size=size, progress=progress)
        if motion_tmp is not None:
            os.replace(motion_tmp, motion_out)
        os.replace(video_tmp, out)
    finally:
        for p in temps:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return SayResult(out, motion_out, n, utterance.duration, len(utterance.phonemes))


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """``(samples [N] float in -1..1, mono, sample_rate)`` of a WAV (read directly) or any other
    audio ffmpeg decodes.

    Raises:
        HeadStudioError: a missing or undecodable file (the message names it and says what to give).
    """
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"audio file '{p}' does not exist; check the «audio» path.")
    wav_error = None
    if p.suffix.lower() == ".wav":
        try:
            return read_wav(p)
        except SpeechError as err:  # float or compressed WAV: ffmpeg reads those
            wav_error = str(err).split(": ", 1)[-1]

    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(p), "-vn", "-ac", "1",
        "-ar", str(_DECODE_RATE), "-f", "s16le", "-",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode == 0 and proc.stdout:
        return np.frombuffer(proc.stdout, "<i2").astype(np.float64) / 32768.0, _DECODE_RATE
    if wav_error is not None:
        raise HeadStudioError(f"audio file '{p}' is {wav_error}; give a PCM .wav or another audio format.")
    lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    raise HeadStudioError(
        f"audio file '{p}' could not be read ({lines[-1] if lines else 'no audio stream'}); "
        "give a speech recording (.wav, .mp3, .m4a, .flac, .ogg)."
    )


def lipsync_motion(avatar: Avatar, audio: str | Path, fps: float = 30.0, seed: int = 0) -> MotionSequence:
    """The avatar's lip-sync ``MotionSequence`` for an audio file (visemes from the sound alone).

    Raises:
        HeadStudioError: unreadable or silent audio, or a head without a landmark embedding.
    """
    samples, rate = load_audio(audio)
    head = _head_of(avatar)
    with speech_errors():
        motion = audio_to_motion(head, samples, rate, fps=fps, seed=seed)
    return motion
