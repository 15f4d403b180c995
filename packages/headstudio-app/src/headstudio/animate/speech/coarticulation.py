"""From timed visemes to a FLAME motion: coarticulation, blinks and head motion.

Both speech paths end here: text (:func:`text_to_motion`: espeak-ng's phonemes) and audio
(``headstudio.animate.speech.lipsync``: visemes estimated from the sound)
produce :class:`VisemeSegment` spans;
:func:`coarticulate` blends them into per-frame viseme weights; :func:`speech_motion` turns the
weights into a :class:`~flame_core.motion.MotionSequence` of a given head and adds blinks, brow
and head motion.

On the text path the mouth also opens with the sound (:func:`follow_loudness`): at every frame the
weights of the visemes that the sound shapes (:data:`LOUDNESS_VISEMES`: vowels and the consonants
other than lip closures and lip-teeth contacts) are scaled by the loudness of the synthesised
audio around that frame, and the rest goes to ``sil``. A vowel's onset and release, a reduced
vowel and a stop's silent closure then open the jaw less than the loud middle of a stressed vowel,
as a speaker's jaw does. (Measured on sentences the code was not tuned on, see BENCHMARKS.md "face
reading": the jaw follows the loudness at r 0.68 instead of 0.45.)

Coarticulation follows the dominance model of Cohen and Massaro (1993): every segment pulls the
mouth towards its viseme with a dominance that is constant over the segment and falls off as a
Gaussian of the time outside it, ``D(t) = strength · exp(-(d / reach)²)``; the mouth at ``t`` is
the dominance-weighted mean of all segments' targets. So each viseme's influence ramps in before
its segment and out after it, and a weak viseme (``kk``: k, g, h) lets its neighbours' shapes
show through, while lip closures (``PP``) and lip-teeth contact (``FF``) are strong enough to be
reached whatever surrounds them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from flame_core.model import FlameModel
from flame_core.motion import MotionSequence, procedural_talking_motion

from .audio import HOP_SECONDS, audio_features
from .espeak import DEFAULT_RATE, Phoneme, Utterance, synthesize
from .visemes import VISEMES, VisemeBasis, fit_visemes, phoneme_visemes

__all__ = [
    "VisemeSegment",
    "Dominance",
    "DOMINANCE",
    "segments_from_phonemes",
    "coarticulate",
    "speech_motion",
    "text_to_motion",
    "utterance_to_motion",
    "num_frames_for",
    "vowel_amplitude",
    "follow_loudness",
    "OPENNESS_RANGE_DB",
    "LOUDNESS_VISEMES",
    "LOUDNESS_WINDOW",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VisemeSegment:
    """The mouth aims at ``viseme`` from ``start`` to ``end`` (seconds); ``amplitude`` in 0..1 says
    how far from the rest pose (``sil``) towards the viseme."""

    viseme: str
    start: float
    end: float
    amplitude: float = 1.0


@dataclass(frozen=True)
class Dominance:
    """A viseme's pull: ``strength`` (relative weight) and ``reach`` (seconds of Gaussian fall-off)."""

    strength: float
    reach: float


#: Lip closures and lip-teeth contact dominate (reached whatever the neighbours); rounded vowels
#: reach far (anticipatory rounding); velars and h are weak (neighbours show through).
DOMINANCE: dict[str, Dominance] = {
    "sil": Dominance(1.0, 0.08),
    "PP": Dominance(200.0, 0.012),
    "FF": Dominance(30.0, 0.015),
    "TH": Dominance(3.0, 0.035),
    "DD": Dominance(2.0, 0.04),
    "kk": Dominance(0.5, 0.04),
    "CH": Dominance(6.0, 0.06),
    "SS": Dominance(4.0, 0.04),
    "nn": Dominance(1.5, 0.04),
    "RR": Dominance(3.0, 0.05),
    "aa": Dominance(1.5, 0.06),
    "E": Dominance(1.0, 0.06),
    "I": Dominance(1.2, 0.06),
    "O": Dominance(2.0, 0.08),
    "U": Dominance(2.5, 0.09),
}
_FALLOFF = 4.0  # reaches beyond which a dominance is ignored (exp(-16) ~ 1e-7)
#: A vowel opens from :data:`_MIN_VOWEL` of its viseme (this many dB below the loud level) to all of it.
OPENNESS_RANGE_DB = 30.0
_MIN_VOWEL = 0.4


#: Visemes whose opening follows the loudness frame by frame on the text path: all but rest and the
#: lip closures and lip-teeth contacts (``PP``, ``FF``), which are reached whatever the sound.
LOUDNESS_VISEMES: tuple[str, ...] = tuple(v for v in VISEMES if v not in ("sil", "PP", "FF"))
#: Half-width (seconds) of the loudness window around each frame in :func:`follow_loudness`.
LOUDNESS_WINDOW = 0.02


def vowel_amplitude(loudness_db: float) -> float:
    """How far a vowel (or, in :func:`follow_loudness`, any of :data:`LOUDNESS_VISEMES`) goes towards
    its viseme (0.4..1) given its loudness in dB relative to the recording's loud level: loud
    (stressed) vowels open fully, quiet (reduced) ones less."""
    o = min(max(1.0 + loudness_db / OPENNESS_RANGE_DB, 0.0), 1.0)
    return _MIN_VOWEL + (1.0 - _MIN_VOWEL) * o


def segments_from_phonemes(phonemes: Sequence[Phoneme], duration: float | None = None) -> list[VisemeSegment]:
    """Viseme spans of timed IPA phonemes; a phoneme with two visemes (a diphthong) is split in two.

    Rest (``sil``) fills the time before the first phoneme and after the last up to ``duration``.
    """
    out: list[VisemeSegment] = []
    t0 = phonemes[0].start if phonemes else 0.0
    if t0 > 0:
        out.append(VisemeSegment("sil", 0.0, t0))
    for p in phonemes:
        vis = phoneme_visemes(p.symbol)
        step = (p.end - p.start) / len(vis)
        for k, v in enumerate(vis):
            out.append(VisemeSegment(v, p.start + k * step, p.start + (k + 1) * step))
    end = phonemes[-1].end if phonemes else 0.0
    if duration is not None and duration > end:
        out.append(VisemeSegment("sil", end, float(duration)))
    return out


def num_frames_for(duration: float, fps: float) -> int:
    """Video frames that cover ``duration`` seconds: ``ceil(duration · fps)`` (at least 1)."""
    return max(1, math.ceil(duration * fps - 1e-6))


def coarticulate(
    segments: Sequence[VisemeSegment], num_frames: int, fps: float, names: Sequence[str] = VISEMES
) -> torch.Tensor:
    """Per-frame viseme weights ``[T, len(names)]`` (rows sum to 1) at times ``k / fps``.

    A segment shorter than one frame is widened to one frame around its centre, so every segment
    is seen by at least one frame. Weight not given to a segment's viseme (``1 - amplitude``)
    goes to ``sil``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames = {num_frames}; expected >= 1")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps = {fps}; expected a positive frame rate")
    col = {n: i for i, n in enumerate(names)}
    if "sil" not in col:
        raise ValueError("names must include 'sil'")
    t = np.arange(num_frames, dtype=np.float64) / fps
    acc = np.zeros((num_frames, len(names)))
    total = np.zeros(num_frames)
    half_frame = 0.5 / fps
    for s in segments:
        if s.viseme not in col:
            raise ValueError(f"unknown viseme {s.viseme!r}; expected one of {list(names)}")
        dom = DOMINANCE[s.viseme]
        centre, half = 0.5 * (s.start + s.end), max(0.5 * (s.end - s.start), half_frame)
        span = half + _FALLOFF * dom.reach
        lo = max(0, int(math.floor((centre - span) * fps)))
        hi = min(num_frames, int(math.ceil((centre + span) * fps)) + 1)
        if lo >= hi:
            continue
        d = np.maximum(np.abs(t[lo:hi] - centre) - half, 0.0)
        w = dom.strength * np.exp(-((d / dom.reach) ** 2))
        a = float(np.clip(s.amplitude, 0.0, 1.0))
        acc[lo:hi, col[s.viseme]] += a * w
        acc[lo:hi, col["sil"]] += (1.0 - a) * w
        total[lo:hi] += w
    empty = total <= 1e-12
    acc[empty, col["sil"]] = 1.0
    total[empty] = 1.0
    return torch.as_tensor(acc / total[:, None], dtype=torch.float32)


def speech_motion(
    basis: VisemeBasis,
    weights: torch.Tensor,
    fps: float,
    *,
    seed: int = 0,
    gestures: bool = True,
) -> MotionSequence:
    """A talking motion of the head ``basis`` was fitted to.

    Args:
        basis: visemes and gestures of the head (:func:`headstudio.animate.speech.visemes.fit_visemes`).
        weights: ``[T, len(VISEMES)]`` viseme weights (:func:`coarticulate`).
        fps: frame rate.
        seed: seed of the procedural blinks, brow and head motion.
        gestures: add blinks, brow raises, gaze and head motion (from
            :func:`flame_core.motion.procedural_talking_motion`) with a small nod on open vowels.

    Returns:
        The motion ``[T, ·]``: mouth from the visemes, the rest from the procedural motion.
    """
    T = int(weights.shape[0])
    mouth = basis.combine(weights, VISEMES)
    expression, jaw = mouth["expression"], mouth["jaw_pose"]
    neck = eyes = None
    if gestures:
        extra = procedural_talking_motion(num_frames=T, fps=fps, num_expression=10, seed=seed)
        blink = extra.expression[:, 5:6]
        brow = 0.5 * extra.expression[:, 3:4]
        expression = (
            expression + basis.combine(torch.cat([blink, brow], 1), ("blink", "brow_raise"))["expression"]
        )
        neck = extra.neck_pose.clone()
        opening = jaw[:, 0]
        neck[:, 0] += 0.1 * (opening - opening.mean())  # the head dips a little on open vowels
        eyes = extra.eye_pose
    return MotionSequence(expression=expression, jaw_pose=jaw, neck_pose=neck, eye_pose=eyes, fps=fps)


def follow_loudness(
    weights: torch.Tensor,
    loudness_db: np.ndarray,
    fps: float,
    names: Sequence[str] = VISEMES,
    window: float = LOUDNESS_WINDOW,
) -> torch.Tensor:
    """Viseme weights that open with the sound: at frame ``k`` (time ``k / fps``) the weights of
    :data:`LOUDNESS_VISEMES` are multiplied by :func:`vowel_amplitude` of the mean loudness within
    ``window`` seconds of that time, and what they lose goes to ``sil`` (rows still sum to 1).

    Args:
        weights: ``[T, len(names)]`` viseme weights (:func:`coarticulate`).
        loudness_db: ``[N]`` loudness every ``HOP_SECONDS`` (``audio_features(...).loudness``: dB
            relative to the recording's loud level; frame ``j`` centred at ``j · HOP_SECONDS``).
        fps: frame rate of ``weights``.
        names: the viseme of each column (must include ``sil``).
        window: half-width of the loudness window (seconds). Frames past the audio count as silent.

    Returns:
        ``[T, len(names)]`` float32.
    """
    if weights.ndim != 2 or weights.shape[1] != len(names):
        raise ValueError(f"weights must be [T, {len(names)}]; got {tuple(weights.shape)}")
    if "sil" not in names:
        raise ValueError("names must include 'sil'")
    loud = np.asarray(loudness_db, np.float64)
    T = int(weights.shape[0])
    t = np.arange(T, dtype=np.float64) / float(fps)
    lo = np.clip(np.floor((t - window) / HOP_SECONDS + 0.5).astype(np.int64), 0, None)
    hi = np.floor((t + window) / HOP_SECONDS + 0.5).astype(np.int64) + 1
    amp = np.array(
        [
            vowel_amplitude(float(loud[a:b].mean())) if b > a and a < len(loud) else _MIN_VOWEL
            for a, b in zip(lo, hi)
        ]
    )
    w = weights.detach().cpu().numpy().astype(np.float64)
    cols = [i for i, n in enumerate(names) if n in LOUDNESS_VISEMES]
    lost = w[:, cols].sum(1) * (1.0 - amp)
    w[:, cols] *= amp[:, None]
    w[:, list(names).index("sil")] += lost
    return torch.as_tensor(w, dtype=torch.float32)


def utterance_to_motion(
    head: FlameModel, utterance: Utterance, *, fps: float = 30.0, seed: int = 0
) -> MotionSequence:
    """``head`` saying ``utterance`` (:func:`headstudio.animate.speech.espeak.synthesize`):
    ``ceil(duration · fps)`` frames, frame ``k`` at ``k / fps`` seconds into the utterance's audio;
    the visemes of its phonemes, coarticulated, opening with the audio's loudness
    (:func:`follow_loudness`)."""
    segments = segments_from_phonemes(utterance.phonemes, utterance.duration)
    T = num_frames_for(utterance.duration, fps)
    loudness = audio_features(utterance.samples, utterance.sample_rate).loudness
    weights = follow_loudness(coarticulate(segments, T, fps), loudness, fps)
    log.info("speech motion: %d frames at %g fps from %d phonemes", T, fps, len(utterance.phonemes))
    return speech_motion(fit_visemes(head), weights, fps, seed=seed)


def text_to_motion(
    head: FlameModel,
    text: str,
    *,
    fps: float = 30.0,
    language: str = "en",
    voice: str | None = None,
    rate: int = DEFAULT_RATE,
    seed: int = 0,
) -> tuple[MotionSequence, Utterance]:
    """Speak ``text`` with espeak-ng and make ``head`` say it.

    Returns:
        ``(motion, utterance)`` (:func:`utterance_to_motion`).

    Raises:
        headstudio.animate.speech.espeak.SpeechError: empty or unspeakable text, unknown language / voice, a
            rate out of range, or espeak-ng missing (``EspeakNotFoundError``).
    """
    utt = synthesize(text, language=language, voice=voice, rate=rate)
    return utterance_to_motion(head, utt, fps=fps, seed=seed), utt
