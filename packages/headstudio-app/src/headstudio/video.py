"""MP4 writing and reading over imageio-ffmpeg (H.264 / yuv420p), with optional audio muxing.

Files are written atomically: frames go to a temporary file beside the target, audio is muxed
into a second temporary file, and only a finished video is renamed onto ``path``. A failure or
Ctrl-C part way deletes the temporaries, so no partial MP4 is left looking valid.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import imageio_ffmpeg
import numpy as np

from ._atomic import temp_path_beside
from .errors import HeadStudioError

__all__ = ["VideoWriter", "VideoInfo", "write_video", "probe_video", "read_video_frames", "to_uint8"]

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg")


def _ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """Convert one frame ``[H, W, 3]`` (uint8, or float in 0..1) to contiguous uint8 RGB."""
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected a frame [H, W, 3], got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(np.nan_to_num(arr.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """Pad ``[H, W, 3]`` by repeating the last row / column so both sizes are even (yuv420p)."""
    h, w = frame.shape[:2]
    ph, pw = h % 2, w % 2
    if ph or pw:
        frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return frame


def _temp_path(target: Path, tag: str) -> Path:
    return temp_path_beside(target, tag)


def _check_audio(audio: str | Path) -> Path:
    p = Path(audio)
    if not p.is_file():
        raise HeadStudioError(f"audio file '{p}' does not exist; check the «audio» path.")
    if p.suffix.lower() not in AUDIO_SUFFIXES:
        raise HeadStudioError(
            f"audio file '{p}' has suffix '{p.suffix}'; give one of {', '.join(AUDIO_SUFFIXES)}."
        )
    if p.suffix.lower() == ".wav":
        try:
            with wave.open(str(p), "rb") as wf:
                wf.getnframes()
        except (wave.Error, EOFError) as err:
            why = str(err).strip() or "truncated or not RIFF/WAVE data"
            raise HeadStudioError(
                f"audio file '{p}' is not a readable WAV file ({why}); give a PCM .wav, or another format "
                f"({', '.join(AUDIO_SUFFIXES)})."
            ) from err
    return p


def mux_audio(video: Path, audio: Path, out: Path, duration: float | None = None) -> None:
    """Mux ``audio`` into ``video`` (video stream copied, audio AAC) as ``out``.

    With ``duration`` (the video's length in seconds) the audio is padded with silence or cut to
    exactly that length, so both streams end together (``-shortest`` alone cuts at AAC packet
    boundaries, up to ~50 ms off, and may drop the video's last frames); without it, ``-shortest``.
    """
    fit = ["-af", f"apad=whole_dur={duration:.6f},atrim=end={duration:.6f}"] if duration else ["-shortest"]
    cmd = [
        _ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video), "-i", str(audio),
        "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", *fit,
        "-movflags", "+faststart", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise HeadStudioError(f"could not mux audio '{audio}' into the video: {msg}")


class VideoWriter:
    """Write frames to an MP4 atomically.

    Use as a context manager::

        with VideoWriter("out.mp4", fps=25) as vw:
            for frame in frames:  # [H, W, 3] uint8 or float in 0..1
                vw.write(frame)

    Args:
        path: target ``.mp4`` path; parent directories are created.
        fps: frames per second (> 0).
        audio: optional audio file muxed in, padded with silence or cut to the video's length.
        quality: imageio-ffmpeg quality 0..10 (libx264 CRF mapping).
    """

    def __init__(
        self, path: str | Path, fps: float, audio: str | Path | None = None, quality: float = 8
    ) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise HeadStudioError(f"output '{self.path}' must end in .mp4 (H.264 video).")
        if not (fps > 0 and np.isfinite(fps)):
            raise HeadStudioError(f"fps must be a positive number, got {fps}.")
        self.fps = float(fps)
        self.audio = _check_audio(audio) if audio is not None else None
        self.quality = quality
        self.num_frames = 0
        self._size: tuple[int, int] | None = None
        self._gen: Iterator | None = None  # imageio_ffmpeg.write_frames generator
        self._tmp: Path | None = None

    def __enter__(self) -> VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _temp_path(self.path, "partial")
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one frame ``[H, W, 3]``; every frame must have the size of the first."""
        if self._tmp is None:
            raise RuntimeError("VideoWriter.write called outside its `with` block")
        img = _pad_even(to_uint8(frame))
        h, w = img.shape[:2]
        if self._gen is None:
            self._size = (w, h)
            self._gen = imageio_ffmpeg.write_frames(
                str(self._tmp), (w, h), fps=self.fps, codec="libx264", pix_fmt_out="yuv420p",
                quality=self.quality, macro_block_size=1, ffmpeg_log_level="error",
            )  # fmt: skip
            self._gen.send(None)
        elif (w, h) != self._size:
            raise ValueError(f"frame size {(w, h)} differs from the first frame's {self._size}")
        self._gen.send(img)
        self.num_frames += 1

    def _cleanup(self, *paths: Path | None) -> None:
        for p in paths:
            if p is not None:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            try:
                gen.close()
            except Exception:
                if exc_type is None:
                    self._cleanup(self._tmp)
                    raise
        if exc_type is not None:
            self._cleanup(self._tmp)
            return
        if self.num_frames == 0:
            self._cleanup(self._tmp)
            raise HeadStudioError(f"no frames were rendered for '{self.path}'; nothing written.")
        assert self._tmp is not None
        if self.audio is not None:
            muxed = _temp_path(self.path, "mux")
            try:
                mux_audio(self._tmp, self.audio, muxed, duration=self.num_frames / self.fps)
                os.replace(muxed, self.path)
            except BaseException:
                self._cleanup(muxed, self._tmp)
                raise
            self._cleanup(self._tmp)
        else:
            os.replace(self._tmp, self.path)
        log.info("wrote %s (%d frames at %.3g fps)", self.path, self.num_frames, self.fps)


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: float, audio: str | Path | None = None
) -> int:
    """Write ``frames`` (each ``[H, W, 3]``) to ``path`` atomically; returns the frame count."""
    with VideoWriter(path, fps, audio=audio) as vw:
        for f in frames:
            vw.write(f)
    return vw.num_frames


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` reads back from a video file."""

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float
    has_audio: bool


def probe_video(path: str | Path) -> VideoInfo:
    """Read frame count (by decoding), fps, size, duration and audio presence of a video."""
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"video '{p}' does not exist; check the path.")
    proc = subprocess.run([_ffmpeg_exe(), "-hide_banner", "-i", str(p)], capture_output=True, text=True)
    text = proc.stderr
    m = re.search(r"Video:.*?(\d{2,5})x(\d{2,5})", text)
    if m is None:
        raise HeadStudioError(f"'{p}' is not a readable video (ffmpeg found no video stream).")
    fps_m = re.search(r"([\d.]+) fps", text)
    nframes, secs = imageio_ffmpeg.count_frames_and_secs(str(p))
    return VideoInfo(
        num_frames=int(nframes),
        fps=float(fps_m.group(1)) if fps_m else float("nan"),
        width=int(m.group(1)),
        height=int(m.group(2)),
        duration=float(secs),
        has_audio=re.search(r"Stream #\S+.*Audio:", text) is not None,
    )


def read_video_frames(path: str | Path, max_frames: int | None = None) -> tuple[list[np.ndarray], float]:
    """Decode a video into RGB frames.

    Returns:
        ``(frames, fps)``: a list of uint8 arrays ``[H, W, 3]`` and the stream's frame rate.

    Raises:
        HeadStudioError: missing or undecodable file, or no frames.
    """
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"video '{p}' does not exist; check the «video» path.")
    frames: list[np.ndarray] = []
    try:
        gen = imageio_ffmpeg.read_frames(str(p), pix_fmt="rgb24")
        meta = next(gen)
        w, h = meta["size"]
        fps = float(meta.get("fps") or 30.0)
        for buf in gen:
            frames.append(np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3).copy())
            if max_frames is not None and len(frames) >= max_frames:
                gen.close()
                break
    except (OSError, RuntimeError, StopIteration, KeyError) as err:
        raise HeadStudioError(f"could not decode video '{p}': {str(err).strip().splitlines()[0]}") from err
    if not frames:
        raise HeadStudioError(f"video '{p}' has no frames.")
    return frames, fps


def audio_seconds(audio: str | Path) -> float | None:
    """Duration in seconds of a WAV (read directly) or any media file ffmpeg reads; ``None`` if
    neither can tell."""
    try:
        with wave.open(str(audio), "rb") as wf:
            return wf.getnframes() / float(wf.getframerate())
    except Exception:
        try:
            return probe_video(audio).duration
        except Exception:
            return None
