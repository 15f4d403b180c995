"""Speech audio analysis for lip sync: WAV reading, loudness and spectral shape every 10 ms.

Frames are 25 ms Hamming windows every 10 ms at the recording's own sample rate (no resampling);
frame ``k`` is centred at ``k · 10 ms``.
Loudness is the frame's RMS in dB, given relative to the recording's *loud level* (the 95th
percentile of its frames), so a quiet and a loud recording of the same speech look the same.
The spectral shape is 12 mel-cepstral coefficients (26 mel bands, 80–7600 Hz, or up to 95% of
the Nyquist frequency for recordings below 16 kHz) with the recording's mean removed, which takes
out much of the voice's and the microphone's colouring.
"""

from __future__ import annotations

import functools
import os
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.fft import dct

from .espeak import SpeechError

__all__ = [
    "AudioFeatures",
    "audio_features",
    "mono_float",
    "read_wav",
    "rms_envelope",
    "HOP_SECONDS",
    "SILENCE_DB",
    "SILENT_DBFS",
]

HOP_SECONDS = 0.010
_WIN_SECONDS, _NMEL, _NCEP, _FMIN, _FMAX = 0.025, 26, 12, 80.0, 7600.0
#: Frames this far below the loud level are silence.
SILENCE_DB = 35.0
#: A recording whose loudest frame is below this (dB full scale) is silent.
SILENT_DBFS = -60.0


@dataclass(frozen=True)
class AudioFeatures:
    """Per 10 ms frame: ``cepstrum [N, 12]`` (mean removed over the audible frames), ``loudness [N]``
    (dB relative to the loud level, mostly <= 0), ``audible [N]`` bool (within :data:`SILENCE_DB`
    of the loud level), and ``duration`` (seconds of audio)."""

    cepstrum: np.ndarray
    loudness: np.ndarray
    audible: np.ndarray
    duration: float

    def vectors(self) -> np.ndarray:
        """``[N, 13]`` classifier input: the cepstrum and the loudness scaled to about unit range."""
        return np.concatenate([self.cepstrum, self.loudness[:, None] / 10.0], 1)


@functools.lru_cache(maxsize=8)
def _mel_filterbank(sample_rate: int, nfft: int) -> np.ndarray:
    """``[26, nfft // 2 + 1]`` triangular filters, 80–7600 Hz on the mel scale."""

    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(_FMIN), mel(min(_FMAX, 0.475 * sample_rate)), _NMEL + 2))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    fb = np.zeros((_NMEL, len(freqs)))
    for i in range(_NMEL):
        lo, mid, hi = edges[i : i + 3]
        fb[i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0.0, None)
    return fb


def mono_float(samples: np.ndarray) -> np.ndarray:
    """``[N]`` float64 of ``samples`` (``[N]`` or ``[N, channels]``; int16/int32 scaled to -1..1)."""
    x = np.asarray(samples)
    if x.ndim == 2:
        x = x.mean(1) if x.shape[1] <= 8 else x.mean(0)
    if x.ndim != 1:
        raise SpeechError(f"audio samples must be [N] or [N, channels]; got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float64) / float(-np.iinfo(x.dtype).min)
    return x.astype(np.float64)


def audio_features(samples: np.ndarray, sample_rate: int) -> AudioFeatures:
    """Loudness and spectral shape every 10 ms of ``samples`` (``[N]`` or ``[N, C]``; int or float).

    Raises:
        SpeechError: empty, non-finite or silent audio (loudest frame below :data:`SILENT_DBFS`).
    """
    x = mono_float(samples)
    if x.size == 0 or sample_rate <= 0:
        raise SpeechError("the audio is empty (no samples); give a recording of speech")
    if not np.isfinite(x).all():
        raise SpeechError("the audio contains NaN or infinite samples; give a valid recording")
    sr = int(sample_rate)
    duration = len(x) / float(sr)
    win = max(16, int(round(_WIN_SECONDS * sr)))
    nfft = 1 << (win - 1).bit_length()
    n = max(1, int(round(duration / HOP_SECONDS)) + 1)
    starts = np.round(np.arange(n) * HOP_SECONDS * sr).astype(np.int64)  # frame k centred at k · 10 ms
    padded = np.pad(x, (win // 2, win // 2 + win))
    frames = padded[starts[:, None] + np.arange(win)[None]]  # [n, win]
    level = 10.0 * np.log10(np.mean(frames**2, 1) + 1e-12)
    if level.max() < SILENT_DBFS:
        raise SpeechError(
            f"the audio is silent (its loudest 25 ms is at {level.max():.0f} dBFS); "
            "give a recording with speech"
        )
    emph = np.concatenate([frames[:, :1], frames[:, 1:] - 0.97 * frames[:, :-1]], 1)
    spec = np.abs(np.fft.rfft(emph * np.hamming(win), nfft)) ** 2
    logmel = np.log(spec @ _mel_filterbank(sr, nfft).T + 1e-10)
    cep = dct(logmel, type=2, norm="ortho", axis=1)[:, 1 : 1 + _NCEP]
    rel = level - np.percentile(level, 95)
    audible = (rel > -SILENCE_DB) & (level > SILENT_DBFS)
    cep = cep - cep[audible].mean(0)
    return AudioFeatures(cep, rel, audible, duration)


def rms_envelope(samples: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> np.ndarray:
    """The speech's loudness at video frame times: the RMS of the samples within one frame period
    either side of ``k / fps`` (a window two frames long), for ``k = 0 .. num_frames - 1``.

    Args:
        samples: ``[N]`` or ``[N, C]`` audio (int or float; see :func:`mono_float`).
        sample_rate: samples per second.
        num_frames / fps: the video frames to measure at.

    Returns:
        ``[num_frames]`` float64 RMS in the samples' float units (0 past the end of the audio).
    """
    if not (np.isfinite(fps) and fps > 0) or sample_rate <= 0:
        raise ValueError(f"fps = {fps}, sample_rate = {sample_rate}; both must be positive")
    x = mono_float(samples)
    half = int(sample_rate / fps)
    out = np.zeros(int(num_frames))
    for k in range(int(num_frames)):
        c = int(round(k * sample_rate / fps))
        seg = x[max(0, c - half) : c + half]
        out[k] = np.sqrt(np.mean(seg**2)) if len(seg) else 0.0
    return out


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """``(samples [N] float64 in -1..1, mono, sample_rate)`` of an 8/16/24/32-bit PCM WAV.

    Raises:
        SpeechError: the file is not a PCM WAV (the message names it).
    """
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as wf:
            ch, width, rate = wf.getnchannels(), wf.getsampwidth(), wf.getframerate()
            raw = wf.readframes(wf.getnframes())
    except (wave.Error, EOFError, OSError) as err:
        why = str(err).strip() or type(err).__name__
        raise SpeechError(f"{p}: not a readable WAV file ({why})") from err
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(ints >= 1 << 23, ints - (1 << 24), ints) / float(1 << 23)
    elif width in (1, 2, 4):
        dt = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
        a = np.frombuffer(raw, dt).astype(np.float64)
        x = (a - 128.0) / 128.0 if width == 1 else a / float(-np.iinfo(dt).min)
    else:
        raise SpeechError(f"{p}: {8 * width}-bit WAV samples are not supported; give 8, 16, 24 or 32-bit PCM")
    x = x[: (len(x) // ch) * ch].reshape(-1, ch).mean(1)
    return x, int(rate)
