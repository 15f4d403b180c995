"""espeak-ng through ctypes: audio, timed IPA phonemes, options and one-line errors.

These tests need the espeak-ng system package (`apt-get install espeak-ng`; `.ci/run` installs it).
"""

from __future__ import annotations

import numpy as np
import pytest
from headstudio.animate.speech import espeak as speech
from headstudio.animate.speech.audio import read_wav

HELLO = "Hello, I am a Gaussian head."


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def test_synthesis_gives_audio_and_back_to_back_phonemes() -> None:
    u = speech.synthesize(HELLO)
    assert u.samples.dtype == np.int16 and u.sample_rate == 22050
    assert 1.0 < u.duration < 3.0
    symbols = [p.symbol for p in u.phonemes]
    # "hello" is h ə l əʊ in espeak-ng's English; "am" ends in m; the comma is a pause
    assert symbols[:4] == ["h", "ə", "l", "əʊ"], symbols
    assert "m" in symbols and speech.PAUSE in symbols
    for a, b in zip(u.phonemes, u.phonemes[1:]):
        assert a.end == pytest.approx(b.start) and a.duration > 0
    assert u.phonemes[-1].end == pytest.approx(u.duration)
    assert 0.0 <= u.phonemes[0].start < 0.05


def test_phoneme_times_refer_to_the_returned_audio() -> None:
    """The comma's pause is quiet and the vowels around it are loud in the very same waveform."""
    u = speech.synthesize(HELLO)
    x = u.waveform()

    def span(p: speech.Phoneme) -> np.ndarray:
        return x[int(p.start * u.sample_rate) : int(p.end * u.sample_rate)]

    first_pause = next(i for i, p in enumerate(u.phonemes) if p.symbol == speech.PAUSE)
    vowels = [p for p in u.phonemes if p.symbol in ("əʊ", "aɪ", "aʊ", "ɛ")]
    assert len(vowels) == 4
    loud = min(_rms(span(p)) for p in vowels)
    assert _rms(span(u.phonemes[first_pause])) < 0.05 * loud


def test_rate_language_and_voice_change_the_speech() -> None:
    slow = speech.synthesize(HELLO, rate=120)
    fast = speech.synthesize(HELLO, rate=300)
    assert fast.duration < 0.6 * slow.duration
    de = speech.synthesize("Guten Tag", language="de")
    assert [p.symbol for p in de.phonemes][:2] == ["ɡ", "uː"]
    base = speech.synthesize("Hello", language="en")
    f3 = speech.synthesize("Hello", language="en", voice="f3")
    assert f3.voice == "f3" and not np.array_equal(
        base.samples[: len(f3.samples)], f3.samples[: len(base.samples)]
    )
    assert "f3" in speech.espeak_variants()


@pytest.mark.parametrize(
    ("text", "kw", "needle"),
    [
        ("", {}, "the text is empty"),
        ("  \n\t ", {}, "the text is empty"),
        ("...?!", {}, "found nothing to pronounce"),
        ("hello", {"language": "xx-nonexistent"}, "no language 'xx-nonexistent'"),
        ("hello", {"language": "en+f3"}, "not a language code"),
        ("hello", {"voice": "F3"}, "did you mean 'f3'"),
        ("hello", {"voice": "nobody"}, "espeak-ng --voices=variant"),
        ("hello", {"rate": 500}, "80-450"),
        ("hello", {"rate": 10}, "80-450"),
    ],
)
def test_bad_input_is_one_clear_line(text: str, kw: dict, needle: str) -> None:
    with pytest.raises(speech.SpeechError) as info:
        speech.synthesize(text, **kw)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


def test_missing_espeak_says_how_to_install(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library that cannot be loaded (as on a machine without espeak-ng)."""
    monkeypatch.setenv(speech.ESPEAK_LIBRARY_ENV, str(tmp_path / "libespeak-ng.so.1"))
    assert not speech.espeak_available()
    with pytest.raises(speech.EspeakNotFoundError) as info:
        speech.synthesize("hello")
    line = str(info.value)
    assert "\n" not in line and "espeak-ng is not installed" in line
    assert "apt-get install espeak-ng" in line
    monkeypatch.delenv(speech.ESPEAK_LIBRARY_ENV)
    assert speech.espeak_available()  # the real library again


def test_save_wav_round_trip(tmp_path) -> None:
    u = speech.synthesize("Hi there.")
    p = u.save_wav(tmp_path / "hi.wav")
    x, rate = read_wav(p)
    assert rate == u.sample_rate and len(x) == len(u.samples)
    np.testing.assert_allclose(x, u.samples / 32768.0, atol=1e-9)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["hi.wav"]
