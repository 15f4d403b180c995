"""Speech → motion on the procedural head: energy correlation, bilabial closure, audio-only lip sync.

Needs espeak-ng (`apt-get install espeak-ng`; `.ci/run` installs it). The bars, and what was
measured on espeak-ng 1.51 (30 fps, the default voice):

- Mouth opening vs the audio's energy envelope (RMS over two frames around each frame), Pearson r
  pooled over the 8 sentences >= 0.5 (measured 0.61 for the jaw angle and for the lip gap; per
  sentence 0.39 to 0.78; before the mouth opened with the loudness frame by frame
  (``coarticulation.follow_loudness``) 0.41, per sentence -0.06 to 0.68, and the bar was 0.3).
  Energy and mouth opening agree where it matters (vowels open, pauses and stop closures are
  silent and closed) but not everywhere: m, n, l, w are loud with the lips closed or nearly, and
  close rounded vowels (u) are loud with a small mouth, so r stays well below 1 for real faces
  too; the sentence full of w and u ("We will walk to the zoo...") is among the lowest. The bar
  also asks r >= 0.25 above the same motion shifted by half a second (measured 0.11 shifted, 0.50
  above), so the figure is about timing, not about the distributions. These sentences chose the
  loudness rule; benchmarks/bench_face_reading.py measures it on sentences that did not (0.68).
- Bilabials (p, b, m): the lips come within 1 px (512² frontal view) of the closed neutral gap
  inside [start - 2 frames, end + 2 frames] of every one (measured: 25 bilabials, at most 0.63 px,
  0.20 px on average; an open "a" parts them by ~40 px).
- Audio-only jaw vs the text path's jaw: pooled r >= 0.6, every sentence >= 0.35 (measured 0.69
  pooled, 0.46 to 0.89 per sentence; 0.73 pooled and 0.47 to 0.88 since the text path follows the
  loudness) on sentences that are not among the templates' sentences.
- Vowel frames of unseen sentences in an unseen voice (m7) recognised >= 60% (measured 76%,
  5 classes).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from flame_core.model import FlameModel
from flame_core.retarget import face_scale, landmark_error_px, neutral_landmarks
from headstudio.animate.speech import espeak as speech
from headstudio.animate.speech.audio import SILENT_DBFS, audio_features, rms_envelope
from headstudio.animate.speech.coarticulation import utterance_to_motion
from headstudio.animate.speech.lipsync import (
    TEMPLATE_FILE,
    TEMPLATE_SENTENCES,
    audio_segments,
    audio_to_motion,
    load_templates,
)

FPS = 30.0
SENTENCES = (
    "Hello, I am a Gaussian head.",
    "The quick brown fox jumps over the lazy dog.",
    "Maybe my mum bought a map of Bombay.",
    "She sells sea shells by the sea shore.",
    "We will walk to the zoo at noon tomorrow.",
    "Good morning, how are you feeling today?",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
)
UPPER, LOWER = 13, 14  # MediaPipe inner-lip midpoints


@functools.lru_cache(maxsize=1)
def _head() -> FlameModel:
    return FlameModel.procedural()


def _lip_gap(motion) -> np.ndarray:
    """``[T]`` inner-lip gap in metres."""
    head = _head()
    with torch.no_grad():
        lmk = head.landmark_embedding(head(**motion.flame_kwargs()).vertices, head.faces)
    return (lmk[:, UPPER, 1] - lmk[:, LOWER, 1]).numpy().astype(np.float64)


def _envelope(utt: speech.Utterance, T: int) -> np.ndarray:
    """RMS of the audio over two frames around each frame time ``k / fps``."""
    return rms_envelope(utt.samples, utt.sample_rate, T, FPS)


@functools.lru_cache(maxsize=1)
def _runs() -> list[dict]:
    runs = []
    for text in SENTENCES:
        utt = speech.synthesize(text)
        motion = utterance_to_motion(_head(), utt, fps=FPS)
        audio = audio_to_motion(_head(), utt.samples, utt.sample_rate, fps=FPS)
        runs.append({"utt": utt, "motion": motion, "audio": audio, "env": _envelope(utt, len(motion))})
    return runs


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.slow
def test_motion_matches_the_audio_length() -> None:
    for run in _runs():
        T = len(run["motion"])
        assert T == math.ceil(run["utt"].duration * FPS) == len(run["audio"])
        assert run["motion"].fps == FPS


def test_mouth_opening_follows_the_energy_envelope() -> None:
    runs = _runs()
    env = np.concatenate([r["env"] for r in runs])
    jaw = np.concatenate([r["motion"].jaw_pose[:, 0].numpy() for r in runs])
    gap = np.concatenate([_lip_gap(r["motion"]) for r in runs])
    shift = int(0.5 * FPS)
    jaw_shifted = np.concatenate([np.roll(r["motion"].jaw_pose[:, 0].numpy(), shift) for r in runs])
    r_jaw, r_gap, r_null = _r(jaw, env), _r(gap, env), _r(jaw_shifted, env)
    print(f"pooled Pearson r: jaw {r_jaw:.3f}, lip gap {r_gap:.3f}, jaw shifted 0.5 s {r_null:.3f}")
    assert r_jaw >= 0.5 and r_gap >= 0.5
    assert r_jaw - r_null >= 0.25


def test_bilabials_close_the_lips() -> None:
    head = _head()
    neutral, _ = neutral_landmarks(head)
    closed = float(neutral[UPPER, 1] - neutral[LOWER, 1])
    to_px = float(landmark_error_px(torch.tensor(1.0 / face_scale(neutral))))  # pixels per metre
    checked = 0
    for run in _runs():
        gap = _lip_gap(run["motion"])
        for p in run["utt"].phonemes:
            if p.symbol not in ("p", "b", "m"):
                continue
            lo = max(0, int(np.floor(p.start * FPS)) - 2)
            hi = min(len(gap), int(np.ceil(p.end * FPS)) + 3)
            excess_px = (gap[lo:hi].min() - closed) * to_px
            assert excess_px < 1.0, (p, excess_px)
            checked += 1
    assert checked >= 20


def test_audio_only_agrees_with_the_text_path() -> None:
    runs = _runs()
    assert not set(SENTENCES) & set(TEMPLATE_SENTENCES)
    per = [_r(r["motion"].jaw_pose[:, 0].numpy(), r["audio"].jaw_pose[:, 0].numpy()) for r in runs]
    text = np.concatenate([r["motion"].jaw_pose[:, 0].numpy() for r in runs])
    audio = np.concatenate([r["audio"].jaw_pose[:, 0].numpy() for r in runs])
    pooled = _r(text, audio)
    print(f"audio vs text jaw: pooled r {pooled:.3f}, per sentence {np.round(per, 2).tolist()}")
    assert pooled >= 0.6 and min(per) >= 0.35


def test_templates_come_from_espeak_and_classify_unseen_speech() -> None:
    """The shipped templates are espeak-ng's (rebuilt here, they agree), and they recognise most
    vowel frames of sentences and a voice they were not made from."""
    from headstudio.animate.speech.coarticulation import segments_from_phonemes
    from headstudio.animate.speech.lipsync import build_templates, frame_labels

    shipped = load_templates(TEMPLATE_FILE)
    rebuilt = build_templates()  # espeak-ng's output varies by a few samples between calls
    assert shipped.classes == rebuilt.classes
    assert (np.abs(rebuilt.means - shipped.means) / np.sqrt(shipped.variance)).max() <= 0.1
    np.testing.assert_allclose(rebuilt.variance, shipped.variance, rtol=0.05)
    np.testing.assert_allclose(rebuilt.log_prior, shipped.log_prior, atol=0.05)
    hits = total = 0
    for text in SENTENCES:
        utt = speech.synthesize(text, voice="m7")
        segs, f = audio_segments(utt.samples, utt.sample_rate, shipped)
        truth = frame_labels(segments_from_phonemes(utt.phonemes, utt.duration), len(f.loudness))
        for t, s, a in zip(truth, segs, f.audible):
            if a and t in ("aa", "E", "I", "O", "U"):
                total += 1
                hits += t == s.viseme
    print(f"vowel frames recognised: {hits}/{total} = {hits / total:.2f} (5 classes)")
    assert total > 300 and hits / total >= 0.6


def test_silent_and_broken_audio_are_clear_errors() -> None:
    with pytest.raises(speech.SpeechError, match="silent"):
        audio_to_motion(_head(), np.zeros(16000), 16000)
    with pytest.raises(speech.SpeechError, match="silent"):
        audio_features(np.full(8000, 10 ** (SILENT_DBFS / 20) / 4), 16000)
    with pytest.raises(speech.SpeechError, match="empty"):
        audio_features(np.zeros(0), 16000)
    with pytest.raises(speech.SpeechError, match="NaN"):
        audio_features(np.array([0.1, np.nan, 0.2]), 16000)


def test_any_sample_rate_and_stereo() -> None:
    utt = speech.synthesize("Hello there.")
    x = utt.waveform().astype(np.float64)
    from scipy.signal import resample_poly

    x48 = resample_poly(x, 320, 147)  # 22050 → 48000 Hz
    stereo = np.stack([x48, x48], 1)
    a = audio_to_motion(_head(), utt.samples, utt.sample_rate, fps=FPS)
    b = audio_to_motion(_head(), stereo, 48000, fps=FPS)
    assert len(a) == len(b)
    assert _r(a.jaw_pose[:, 0].numpy(), b.jaw_pose[:, 0].numpy()) > 0.9
