"""Offline text to speech with phoneme timing: libespeak-ng through ctypes.

:func:`synthesize` speaks a sentence with espeak-ng and returns the waveform together with the
phonemes it pronounced and when (:class:`Utterance`). espeak-ng is an optional *system*
dependency (Debian/Ubuntu: ``apt-get install espeak-ng``; the library is ``libespeak-ng1``); when
it is missing, :func:`synthesize` raises :class:`EspeakNotFoundError` whose message says how to
install it. ``$HEADSTUDIO_ESPEAK_LIBRARY`` names another copy of the shared library.

Why the C library and not the ``espeak-ng`` program: the program prints phonemes (``-x``/``--ipa``)
but not *when* they are spoken, and its ``--pho`` timing output needs an MBROLA voice. The
library's synthesis reports an ``espeakEVENT_PHONEME`` event for every phoneme it synthesises,
with the position in the very audio it returns (``audio_position``, milliseconds), when it is
initialised with ``espeakINITIALIZE_PHONEME_EVENTS``; ``espeakINITIALIZE_PHONEME_IPA`` names the
phonemes in IPA rather than in each language's own mnemonics, so one table maps every language's
phonemes to visemes (:mod:`headstudio.animate.speech.visemes`). ``AUDIO_OUTPUT_SYNCHRONOUS`` makes
``espeak_Synth`` return only when the whole text is spoken; the audio and its events arrive
through the synth callback in the calling thread. The declarations used here follow espeak-ng's
public header ``speak_lib.h`` (API revision 12).
"""

from __future__ import annotations

import logging
import os
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from flame_core.io import atomic_path

from ._libespeak import (
    ESPEAK_LIBRARY_ENV,
    INSTALL_HINT,
    EspeakNotFoundError,
    SpeechError,
    _engine,
    _VoiceNotFound,
)

__all__ = [
    "Phoneme",
    "Utterance",
    "SpeechError",
    "EspeakNotFoundError",
    "synthesize",
    "espeak_available",
    "espeak_variants",
    "espeak_version",
    "ESPEAK_LIBRARY_ENV",
    "INSTALL_HINT",
    "MIN_RATE",
    "MAX_RATE",
    "DEFAULT_RATE",
    "PAUSE",
]

log = logging.getLogger(__name__)

#: espeak-ng's speaking rates in words per minute (espeakRATE_MINIMUM / _MAXIMUM / _NORMAL).
MIN_RATE, MAX_RATE, DEFAULT_RATE = 80, 450, 175
#: The symbol of a pause (espeak-ng reports pauses as phonemes with an empty IPA name).
PAUSE = "_"


@dataclass(frozen=True)
class Phoneme:
    """One spoken phoneme: its IPA ``symbol`` (:data:`PAUSE` for a pause) and ``start`` / ``end``
    in seconds from the start of the audio."""

    symbol: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(eq=False)
class Utterance:
    """Synthesised speech.

    Attributes:
        samples: ``[N]`` int16 mono waveform.
        sample_rate: Hz (espeak-ng: 22050).
        phonemes: the phonemes in time order, covering ``[phonemes[0].start, duration]`` without gaps.
        text, language, voice, rate: what was spoken and how.
    """

    samples: np.ndarray
    sample_rate: int
    phonemes: tuple[Phoneme, ...]
    text: str = ""
    language: str = "en"
    voice: str | None = None
    rate: int = DEFAULT_RATE
    _float: np.ndarray | None = field(default=None, repr=False)

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.samples) / float(self.sample_rate)

    def waveform(self) -> np.ndarray:
        """``[N]`` float32 in -1..1."""
        if self._float is None:
            self._float = self.samples.astype(np.float32) / 32768.0
        return self._float

    def save_wav(self, path: str | os.PathLike) -> Path:
        """Write a 16-bit mono PCM WAV atomically; returns the path."""
        path = Path(path)
        with atomic_path(path, suffix=".tmp.wav") as tmp:
            write_wav(tmp, self.samples, self.sample_rate)
        return path


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write ``samples [N]`` (int16, or float in -1..1) as a 16-bit mono PCM WAV (not atomic)."""
    x = np.asarray(samples)
    if x.dtype != np.int16:
        x = np.clip(np.round(x.astype(np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(int(sample_rate))
        wf.writeframes(x.astype("<i2").tobytes())


def espeak_available() -> bool:
    """Whether libespeak-ng and its data can be loaded."""
    try:
        _engine()
    except EspeakNotFoundError:
        return False
    return True


def espeak_version() -> str:
    """The library's version string (e.g. ``1.51``)."""
    return _engine().version


def espeak_variants() -> list[str]:
    """The voice variants ``--voice`` accepts (``f1``…, ``m1``…, ``klatt``, ``whisper``, …)."""
    folder = Path(_engine().data_path) / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


# ------------------------------------------------------------------------------- synthesis


def _check_text(text: str) -> str:
    if not isinstance(text, str):
        raise SpeechError(f"the text must be a string, got {type(text).__name__}")
    text = " ".join(text.split())
    if not text:
        raise SpeechError('the text is empty; give a sentence to speak, e.g. "Hello, I am a Gaussian head."')
    return text


def _check_rate(rate: int) -> int:
    try:
        r = int(rate)
    except (TypeError, ValueError):
        raise SpeechError(
            f"rate {rate!r} is not a number; give words per minute ({MIN_RATE}-{MAX_RATE})"
        ) from None
    if r != rate or not MIN_RATE <= r <= MAX_RATE:
        raise SpeechError(
            f"rate {rate} words per minute is out of range; espeak-ng speaks at {MIN_RATE}-{MAX_RATE}"
        )
    return r


def _voice_name(language: str, voice: str | None) -> str:
    language = (language or "").strip()
    if not language or any(c in language for c in "+/\\ "):
        raise SpeechError(
            f"language {language!r} is not a language code; give one espeak-ng has, e.g. en, en-us, de, fr "
            "(`espeak-ng --voices` lists them)"
        )
    if voice is None or not voice.strip():
        return language
    voice = voice.strip()
    variants = espeak_variants()
    if voice not in variants:
        close = [v for v in variants if v.lower() == voice.lower()]
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SpeechError(
            f"espeak-ng has no voice variant '{voice}'; {hint}choose one of {', '.join(variants[:12])}, ... "
            "(`espeak-ng --voices=variant` lists them all)"
        )
    return f"{language}+{voice}"


def _phonemes(events: Sequence[tuple[int, str]], num_samples: int, sample_rate: int) -> tuple[Phoneme, ...]:
    """Phoneme events (ms, IPA name) → back-to-back :class:`Phoneme` spans ending at the audio's end.

    Language-switch markers such as ``(en)`` (reported like phonemes when a word is read in another
    language) are dropped; an empty name is a pause.
    """
    total = num_samples / float(sample_rate)
    marks = [(min(ms / 1000.0, total), name or PAUSE) for ms, name in events if not name.startswith("(")]
    out = []
    for i, (t, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else total
        if end > t:
            out.append(Phoneme(name, t, end))
    return tuple(out)


def synthesize(
    text: str, *, language: str = "en", voice: str | None = None, rate: int = DEFAULT_RATE
) -> Utterance:
    """Speak ``text`` with espeak-ng.

    Args:
        text: the sentence(s), UTF-8; whitespace is normalised.
        language: an espeak-ng language / voice name (``en``, ``en-us``, ``de``, ``fr``, ...).
        voice: an optional voice variant (``f3``, ``m2``, ``klatt``, ...: :func:`espeak_variants`).
        rate: words per minute, :data:`MIN_RATE` to :data:`MAX_RATE`.

    Returns:
        The :class:`Utterance` (waveform and timed IPA phonemes).

    Raises:
        EspeakNotFoundError: libespeak-ng is missing (the message says how to install it).
        SpeechError: empty text, an unknown language or variant, a rate out of range, or text in
            which espeak-ng finds nothing to pronounce.
    """
    text = _check_text(text)
    rate = _check_rate(rate)
    eng = _engine()
    name = _voice_name(language, voice)
    try:
        audio, events = eng.speak(text, name, rate)
    except _VoiceNotFound:
        raise SpeechError(
            f"espeak-ng has no language '{language}'; give one it has, e.g. en, en-us, de, fr "
            "(`espeak-ng --voices` lists them)"
        ) from None
    phonemes = _phonemes(events, len(audio), eng.sample_rate)
    spoken = [p for p in phonemes if p.symbol != PAUSE]
    if not spoken or not np.any(audio):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise SpeechError(
            f"espeak-ng ({language}) found nothing to pronounce in {shown!r}; give words in that language"
        )
    log.info(
        "espeak-ng: %d phonemes, %.2f s of speech (%s, %d wpm)", len(spoken), len(audio) / eng.sample_rate,
        name, rate,
    )  # fmt: skip
    return Utterance(audio, eng.sample_rate, phonemes, text, language, voice, rate)
