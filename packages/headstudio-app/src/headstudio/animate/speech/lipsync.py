"""Audio-only lip sync: visemes estimated from the sound itself, no text and no downloaded model.

Every 10 ms of audio (:mod:`headstudio.animate.speech.audio`) is

- silence (``sil``: the mouth at rest, lips together) when it is more than
  ``headstudio.animate.speech.audio.SILENCE_DB`` below the recording's loud level;
- otherwise the viseme whose template best matches its spectral shape (12 mel-cepstral
  coefficients and the loudness), with the loudness saying how open a vowel is
  (:func:`headstudio.animate.speech.coarticulation.vowel_amplitude`, as on the text path).

The templates (:data:`TEMPLATE_FILE`, shipped with the package) are made from espeak-ng's own
speech: :func:`build_templates` synthesises :data:`TEMPLATE_SENTENCES` with the
:data:`TEMPLATE_VOICES`, labels each 10 ms frame with the viseme of the phoneme espeak-ng reported
there (the text path's :func:`~headstudio.animate.speech.coarticulation.segments_from_phonemes`), and fits one
Gaussian per viseme (``scripts/build_viseme_templates.py`` writes the file; nothing is
downloaded). The per-frame visemes then go through the same coarticulation and retargeting as the
text path (:func:`~headstudio.animate.speech.coarticulation.coarticulate`,
:func:`~headstudio.animate.speech.coarticulation.speech_motion`).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flame_core.io import atomic_path
from flame_core.model import FlameModel
from flame_core.motion import MotionSequence

from .audio import HOP_SECONDS, AudioFeatures, audio_features
from .coarticulation import (
    VisemeSegment,
    coarticulate,
    num_frames_for,
    segments_from_phonemes,
    speech_motion,
    vowel_amplitude,
)
from .visemes import VISEMES, VOWEL_VISEMES, fit_visemes

__all__ = [
    "VisemeTemplates",
    "audio_segments",
    "audio_to_motion",
    "build_templates",
    "frame_labels",
    "load_templates",
    "TEMPLATE_FILE",
    "TEMPLATE_SENTENCES",
    "TEMPLATE_VOICES",
]

log = logging.getLogger(__name__)

TEMPLATE_FILE = Path(__file__).parent / "data" / "viseme_templates.npz"
#: What :data:`TEMPLATE_FILE` is built from: sentences covering English's vowels and consonant
#: classes, spoken by four espeak-ng voices (low to high pitch).
TEMPLATE_SENTENCES: tuple[str, ...] = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "Who would have thought that you could move so fast?",
    "Our father shouted at the boy to fetch the water.",
    "Please measure the vision of the young judge with care.",
    "My thumb is numb, but the bee will not bother you.",
    "Oh no, you have to go home now, Joe.",
    "I see three green trees by the sea.",
    "Father, what are all those cars doing in the yard?",
)
TEMPLATE_VOICES: tuple[tuple[str, str | None], ...] = (
    ("en", None),
    ("en", "f3"),
    ("en-us", "m3"),
    ("en", "f2"),
)
_CLASSES = tuple(v for v in VISEMES if v != "sil")
_MAJORITY_FRAMES = 5  # 50 ms


@dataclass(frozen=True)
class VisemeTemplates:
    """One Gaussian per viseme over ``AudioFeatures.vectors()``: ``means [K, D]``, a shared diagonal
    ``variance [D]`` and ``log_prior [K]`` for the ``classes`` (the visemes without ``sil``)."""

    classes: tuple[str, ...]
    means: np.ndarray
    variance: np.ndarray
    log_prior: np.ndarray

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """``[N, K]`` log-likelihoods (up to a constant) of ``vectors [N, D]``."""
        d = (vectors[:, None, :] - self.means[None]) ** 2 / self.variance
        return -0.5 * d.sum(-1) + self.log_prior

    def classify(self, vectors: np.ndarray) -> np.ndarray:
        """``[N]`` indices into ``classes``."""
        return self.scores(vectors).argmax(1)

    def save(self, path: str | os.PathLike, **metadata: str) -> None:
        """Write an ``.npz`` atomically (``metadata`` as extra string arrays)."""
        with atomic_path(Path(path), suffix=".tmp.npz") as tmp:
            np.savez(
                tmp, classes=np.array(self.classes), means=self.means, variance=self.variance,
                log_prior=self.log_prior, **{k: np.array(v) for k, v in metadata.items()},
            )  # fmt: skip


@functools.lru_cache(maxsize=4)
def load_templates(path: str | os.PathLike = TEMPLATE_FILE) -> VisemeTemplates:
    """The viseme templates (default: the ones shipped with flame_core)."""
    with np.load(path, allow_pickle=False) as d:
        return VisemeTemplates(tuple(str(c) for c in d["classes"]), d["means"], d["variance"], d["log_prior"])


def frame_labels(segments: Sequence[VisemeSegment], num_frames: int) -> list[str]:
    """The viseme of the segment containing each 10 ms analysis frame's centre (``sil`` outside)."""
    segs = sorted(segments, key=lambda s: s.start)
    out, j = [], 0
    for k in range(num_frames):
        t = k * HOP_SECONDS
        while j + 1 < len(segs) and segs[j].end <= t:
            j += 1
        out.append(segs[j].viseme if segs and segs[j].start <= t < segs[j].end else "sil")
    return out


def build_templates(
    sentences: Sequence[str] = TEMPLATE_SENTENCES,
    voices: Sequence[tuple[str, str | None]] = TEMPLATE_VOICES,
    rate: int = 175,
) -> VisemeTemplates:
    """Templates from espeak-ng speech labelled by espeak-ng's own phoneme events.

    Every sentence is spoken by every ``(language, variant)`` voice at ``rate`` words per minute;
    the audible frames inside phonemes (not pauses) are averaged per viseme.

    Raises:
        headstudio.animate.speech.espeak.EspeakNotFoundError: espeak-ng is missing.
    """
    from .espeak import synthesize

    feats, labels = [], []
    for language, variant in voices:
        for s in sentences:
            utt = synthesize(s, language=language, voice=variant, rate=rate)
            f = audio_features(utt.samples, utt.sample_rate)
            lab = frame_labels(segments_from_phonemes(utt.phonemes, utt.duration), len(f.loudness))
            keep = f.audible & np.array([v != "sil" for v in lab])
            feats.append(f.vectors()[keep])
            labels += [v for v, k in zip(lab, keep) if k]
    X = np.concatenate(feats)
    y = np.array([_CLASSES.index(v) for v in labels])
    means = np.stack([X[y == k].mean(0) if (y == k).any() else X.mean(0) for k in range(len(_CLASSES))])
    variance = ((X - means[y]) ** 2).mean(0) + 1e-6
    counts = np.bincount(y, minlength=len(_CLASSES)) + 1.0
    return VisemeTemplates(_CLASSES, means, variance, np.log(counts / counts.sum()))


def _majority(labels: np.ndarray, num_classes: int, width: int = _MAJORITY_FRAMES) -> np.ndarray:
    """``[N]`` the most frequent of ``labels [N]`` in a window of ``width`` (odd) frames around each."""
    pad = width // 2
    onehot = np.pad(np.eye(num_classes)[labels], ((pad, pad), (0, 0)), mode="edge")
    csum = np.concatenate([np.zeros((1, num_classes)), np.cumsum(onehot, 0)])
    return (csum[width:] - csum[:-width]).argmax(1)


def audio_segments(
    samples: np.ndarray, sample_rate: int, templates: VisemeTemplates | None = None
) -> tuple[list[VisemeSegment], AudioFeatures]:
    """One :class:`~headstudio.animate.speech.coarticulation.VisemeSegment` per 10 ms of audio.

    ``sil`` where the audio is silent, else the most likely viseme (a 50 ms majority filter removes
    single-frame flips); vowels get their amplitude from the loudness.

    Raises:
        headstudio.animate.speech.espeak.SpeechError: empty, non-finite or silent audio.
    """
    tpl = templates or load_templates()
    f = audio_features(samples, sample_rate)
    classes = ("sil",) + tpl.classes
    labels = _majority(np.where(f.audible, tpl.classify(f.vectors()) + 1, 0), len(classes))
    half = 0.5 * HOP_SECONDS
    segments = []
    for k, c in enumerate(labels):
        name = classes[c]
        amp = vowel_amplitude(float(f.loudness[k])) if name in VOWEL_VISEMES else 1.0
        segments.append(VisemeSegment(name, k * HOP_SECONDS - half, k * HOP_SECONDS + half, amp))
    return segments, f


def audio_to_motion(
    head: FlameModel, samples: np.ndarray, sample_rate: int, *, fps: float = 30.0, seed: int = 0
) -> MotionSequence:
    """Lip sync ``head`` to a recording: ``ceil(duration · fps)`` frames, frame ``k`` at ``k / fps``.

    Args:
        head: the head to animate (needs a MediaPipe landmark embedding).
        samples: ``[N]`` or ``[N, channels]`` audio (int or float in -1..1).
        sample_rate: Hz.
        fps: frame rate of the motion.
        seed: seed of the procedural blinks and head motion.

    Raises:
        headstudio.animate.speech.espeak.SpeechError: empty, non-finite or silent audio.
        ValueError: the head has no MediaPipe landmark embedding.
    """
    segments, f = audio_segments(samples, sample_rate)
    T = num_frames_for(f.duration, fps)
    weights = coarticulate(segments, T, fps)
    log.info(
        "audio lip sync: %d frames at %g fps, %.0f%% of the audio audible", T, fps, 100 * f.audible.mean()
    )
    return speech_motion(fit_visemes(head), weights, fps, seed=seed)
