"""libespeak-ng through ctypes: loading it, its declarations (``speak_lib.h``, API revision 12),
one initialised engine per library and synthesis with phoneme events.

The speech API on top is :mod:`headstudio.animate.speech.espeak`; its errors live here so the
binding can raise them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger("headstudio.animate.speech.espeak")

ESPEAK_LIBRARY_ENV = "HEADSTUDIO_ESPEAK_LIBRARY"
_DEFAULT_LIBRARY = {"darwin": "libespeak-ng.1.dylib", "win32": "libespeak-ng.dll"}.get(
    sys.platform, "libespeak-ng.so.1"
)
INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu; the library is libespeak-ng1)"

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
