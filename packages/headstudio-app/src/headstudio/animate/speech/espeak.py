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

import ctypes
import logging
import os
import sys
import threading
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from flame_core.io import atomic_path

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

ESPEAK_LIBRARY_ENV = "HEADSTUDIO_ESPEAK_LIBRARY"
_DEFAULT_LIBRARY = {"darwin": "libespeak-ng.1.dylib", "win32": "libespeak-ng.dll"}.get(
    sys.platform, "libespeak-ng.so.1"
)
INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu; the library is libespeak-ng1)"
#: espeak-ng's speaking rates in words per minute (espeakRATE_MINIMUM / _MAXIMUM / _NORMAL).
MIN_RATE, MAX_RATE, DEFAULT_RATE = 80, 450, 175
#: The symbol of a pause (espeak-ng reports pauses as phonemes with an empty IPA name).
PAUSE = "_"

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_INIT_PHONEME_EVENTS, _INIT_PHONEME_IPA, _INIT_DONT_EXIT = 0x0001, 0x0002, 0x8000
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_PARAM_RATE = 1
_EE_OK = 0


class SpeechError(ValueError):
    """Text or a setting that cannot be spoken; ``str(err)`` is one line that says what to do."""


class EspeakNotFoundError(SpeechError):
    """libespeak-ng (or its data) is not installed; the message says how to install it."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds into the synthesised audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


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


# ------------------------------------------------------------------------------ the library


class _VoiceNotFound(Exception):
    pass


# libespeak-ng keeps global state (voice, parameters, callback): one synthesis at a time per process
_synth_lock = threading.Lock()


class _Espeak:
    """One initialised libespeak-ng."""

    def __init__(self, lib: ctypes.CDLL, sample_rate: int, data_path: str, version: str) -> None:
        self.lib = lib
        self.sample_rate = sample_rate
        self.data_path = data_path
        self.version = version
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _SynthCallback(self._on_synth)  # kept alive as long as the library uses it

    def _on_synth(self, wav, num_samples: int, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._events.append((int(ev.audio_position), name))
            i += 1
        return 0

    def speak(self, text: str, voice_name: str, rate: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """``(samples [N] int16, [(milliseconds, IPA name)] of the phoneme events)``."""
        with _synth_lock:
            self.lib.espeak_SetSynthCallback(self._callback)
            if self.lib.espeak_SetVoiceByName(voice_name.encode()) != _EE_OK:
                raise _VoiceNotFound(voice_name)
            self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            rc = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if rc != _EE_OK:
                raise SpeechError(f"espeak-ng could not synthesise the text (espeak_Synth returned {rc})")
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            events, self._chunks, self._events = self._events, [], []
        return audio.astype(np.int16), events


_engines: dict[str, _Espeak] = {}
_engines_lock = threading.Lock()


def _library_name() -> str:
    return os.environ.get(ESPEAK_LIBRARY_ENV, "").strip() or _DEFAULT_LIBRARY


def _engine() -> _Espeak:
    """The initialised library (loaded on first use)."""
    name = _library_name()
    with _engines_lock:
        if name in _engines:
            return _engines[name]
        try:
            lib = ctypes.CDLL(name)
        except OSError as err:
            where = (
                f" ({ESPEAK_LIBRARY_ENV}={name})" if os.environ.get(ESPEAK_LIBRARY_ENV, "").strip() else ""
            )
            raise EspeakNotFoundError(
                f"espeak-ng is not installed: the speech library {Path(name).name} could not be loaded"
                f"{where}; {INSTALL_HINT}"
            ) from err
        _declare(lib)
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
        )
        if rate <= 0:
            raise EspeakNotFoundError(
                "espeak-ng's library loaded but its voice data (espeak-ng-data) was not found; "
                f"{INSTALL_HINT}"
            )
        path = ctypes.c_char_p()
        version = (lib.espeak_Info(ctypes.byref(path)) or b"?").decode("utf-8", "replace")
        data_path = (path.value or b"").decode("utf-8", "replace")
        log.debug("espeak-ng %s (data %s), %d Hz", version, data_path, rate)
        eng = _Espeak(lib, int(rate), data_path, version)
        _engines[name] = eng
        return eng


def _declare(lib: ctypes.CDLL) -> None:
    c_int, c_uint, c_void_p, c_char_p = ctypes.c_int, ctypes.c_uint, ctypes.c_void_p, ctypes.c_char_p
    lib.espeak_Initialize.argtypes = [c_int, c_int, c_char_p, c_int]
    lib.espeak_Initialize.restype = c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [c_char_p]
    lib.espeak_SetVoiceByName.restype = c_int
    lib.espeak_SetParameter.argtypes = [c_int, c_int, c_int]
    lib.espeak_SetParameter.restype = c_int
    lib.espeak_Synth.argtypes = [c_void_p, ctypes.c_size_t, c_uint, c_int, c_uint, c_uint, c_void_p, c_void_p]
    lib.espeak_Synth.restype = c_int
    lib.espeak_Info.argtypes = [ctypes.POINTER(c_char_p)]
    lib.espeak_Info.restype = c_char_p


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
