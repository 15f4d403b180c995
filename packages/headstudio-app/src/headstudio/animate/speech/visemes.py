"""Visemes: the mouth shapes of speech, defined once as landmark targets and fitted to any head.

The 15 visemes are the MPEG-4 / Oculus set: ``sil`` (rest), ``PP`` (p b m: lips pressed),
``FF`` (f v), ``TH`` (θ ð), ``DD`` (t d), ``kk`` (k g h), ``CH`` (ʃ ʒ tʃ dʒ: lips forward),
``SS`` (s z: teeth together, lips spread), ``nn`` (n l), ``RR`` (ɹ r), and the vowels ``aa``
(open), ``E`` (mid, spread), ``I`` (close, spread), ``O`` (open, rounded), ``U`` (close, rounded).

Each viseme is posed once on the open procedural head with its fixed-meaning expression
components (0 smile, 1 pucker, 2 mouth stretch, 8 upper-lip raise, 9 mouth-corner drop) and its
jaw, and stored as *where the MediaPipe landmarks go* (``flame_core.retarget.LandmarkTargets``).
:func:`fit_visemes` finds the expression and jaw of any head (the procedural one, an official
FLAME file, a head with a mixed expression basis) that put its landmarks there, through the same
retargeting path as the training motion (``flame_core.retarget.fit_targets``, cached by the
head's identity hash). Two facial gestures that speech animation adds, ``blink`` and
``brow_raise``, travel in the same target set.

Phonemes come as IPA symbols (espeak-ng's phoneme events, :mod:`headstudio.animate.speech.espeak`);
:func:`phoneme_visemes` maps one symbol (a diphthong or an r-coloured vowel gives two) to viseme
names after removing stress, length and diacritic marks, so one table serves every language.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from dataclasses import dataclass

import torch
from flame_core.model import FlameModel

__all__ = [
    "VISEMES",
    "GESTURES",
    "VOWEL_VISEMES",
    "VisemeBasis",
    "viseme_poses",
    "viseme_targets",
    "fit_visemes",
    "phoneme_visemes",
    "normalize_ipa",
]

log = logging.getLogger(__name__)

VISEMES: tuple[str, ...] = (
    "sil",
    "PP",
    "FF",
    "TH",
    "DD",
    "kk",
    "CH",
    "SS",
    "nn",
    "RR",
    "aa",
    "E",
    "I",
    "O",
    "U",
)
VOWEL_VISEMES: tuple[str, ...] = ("aa", "E", "I", "O", "U")
GESTURES: tuple[str, ...] = ("blink", "brow_raise")

# Procedural-head poses: {viseme: (jaw opening in radians, {expression component: weight})}.
# Components (CONTRACTS.md): 0 smile, 1 pucker, 2 mouth stretch, 3 brow raise, 5/6 blink,
# 8 upper-lip raise, 9 mouth-corner drop. On this head a jaw of 0.1 rad parts the lips ~9 mm.
_POSES: dict[str, tuple[float, dict[int, float]]] = {
    "sil": (0.0, {}),
    "PP": (0.0, {1: 0.15}),
    "FF": (0.025, {8: 0.35, 2: 0.2}),
    "TH": (0.06, {2: 0.2}),
    "DD": (0.07, {2: 0.25}),
    "kk": (0.10, {2: 0.1}),
    "CH": (0.05, {1: 0.7, 8: 0.2}),
    "SS": (0.03, {2: 0.5, 0: 0.2}),
    "nn": (0.06, {2: 0.15}),
    "RR": (0.07, {1: 0.5}),
    "aa": (0.26, {2: 0.1, 9: 0.3}),
    "E": (0.15, {2: 0.45, 0: 0.1}),
    "I": (0.08, {2: 0.8, 0: 0.35}),
    "O": (0.18, {1: 0.7}),
    "U": (0.07, {1: 1.1}),
    "blink": (0.0, {5: 1.0, 6: 1.0}),
    "brow_raise": (0.0, {3: 1.0}),
}

# IPA base symbols (after normalize_ipa) → viseme. Affricates are matched before single letters.
_AFFRICATES = {"tʃ": "CH", "dʒ": "CH", "tɕ": "CH", "dʑ": "CH", "ts": "SS", "dz": "SS", "pf": "FF"}
_TABLE: dict[str, str] = {}
for _viseme, _symbols in {
    "PP": "pbmɓʙɸβ",
    "FF": "fvɱʋ",
    "TH": "θð",
    "DD": "tdɾʈɖɗ",
    "kk": "kgɡŋxɣqɢhɦχʁʔħʕɰcɟçʝɧ",
    "CH": "ʃʒɕʑʂʐ",
    "SS": "sz",
    "nn": "nlɲɳɫɬɮɭʎʟɴ",
    "RR": "ɹrɻɽʀɚɝ",
    "aa": "aɑɐæʌäɶ",
    "E": "eɛəɘɜɞ",
    "I": "iɪɨjʏ",
    "O": "oɔɒøœɵ",
    "U": "uʊwɯʉyɥ",
}.items():
    for _s in _symbols:
        _TABLE[_s] = _viseme
del _viseme, _symbols, _s

# Marks that change length, stress, tone or place slightly, not the mouth's shape.
_DROP = set("ːˑˈˌ.-_0123456789ʲʰˤᵝʷˠ̚ʼ")


@functools.lru_cache(maxsize=512)
def normalize_ipa(symbol: str) -> str:
    """An IPA phoneme name without combining diacritics, length, stress and modifier marks."""
    decomposed = unicodedata.normalize("NFD", symbol)
    return "".join(c for c in decomposed if not unicodedata.combining(c) and c not in _DROP)


@functools.lru_cache(maxsize=512)
def phoneme_visemes(symbol: str) -> tuple[str, ...]:
    """Visemes of one IPA phoneme, in order: ``"m" → ("PP",)``, ``"aɪ" → ("aa", "I")``.

    A pause (empty, or starting with ``"_"``) is ``("sil",)``. Repeated visemes merge; a symbol
    with no known letter (an unusual consonant, a lone modifier) is ``("kk",)``, the viseme that
    least constrains the lips.
    """
    if not symbol.strip() or symbol.startswith("_"):
        return ("sil",)
    base = normalize_ipa(symbol)
    out: list[str] = []
    i = 0
    while i < len(base):
        two = base[i : i + 2]
        if two in _AFFRICATES:
            v, i = _AFFRICATES[two], i + 2
        else:
            v, i = _TABLE.get(base[i]), i + 1
        if v is None:
            log.debug("IPA letter %r of %r has no viseme; ignored", base[i - 1], symbol)
            continue
        if not out or out[-1] != v:
            out.append(v)
    return tuple(out) if out else ("kk",)


def viseme_poses(num_expression: int = 10) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
    """``(names, expression [K, num_expression], jaw_pose [K, 3])`` of :data:`VISEMES` then
    :data:`GESTURES` on the procedural head (its fixed-meaning components)."""
    names = VISEMES + GESTURES
    expr = torch.zeros(len(names), max(num_expression, 10))
    jaw = torch.zeros(len(names), 3)
    for k, n in enumerate(names):
        opening, comps = _POSES[n]
        jaw[k, 0] = opening
        for c, w in comps.items():
            expr[k, c] = w
    return names, expr[:, :num_expression], jaw


@functools.lru_cache(maxsize=1)
def viseme_targets():
    """:data:`VISEMES` + :data:`GESTURES` as ``flame_core.retarget.LandmarkTargets`` (procedural head)."""
    from flame_core.retarget import LandmarkTargets

    head = FlameModel.procedural(num_shape=1, num_expression=10)
    names, expr, jaw = viseme_poses(10)
    return LandmarkTargets.from_poses(head, names, expression=expr, jaw_pose=jaw)


@dataclass(frozen=True)
class VisemeBasis:
    """Visemes and gestures fitted to one head.

    Attributes:
        names: ``K`` names (:data:`VISEMES` then :data:`GESTURES`).
        expression: ``[K, E]`` the head's expression coefficients of each.
        jaw_pose: ``[K, 3]`` the head's jaw rotation of each.
        error: ``[K]`` RMS landmark error of the fit, in face-scale units
            (``flame_core.retarget.landmark_error_px`` converts it to pixels).
        identity: the head's identity hash.
    """

    names: tuple[str, ...]
    expression: torch.Tensor
    jaw_pose: torch.Tensor
    error: torch.Tensor
    identity: str

    def index(self, name: str) -> int:
        return self.names.index(name)

    def combine(self, weights: torch.Tensor, names: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """Blend poses: ``weights [T, k]`` over ``names`` (default: all ``K``) →
        ``{"expression": [T, E], "jaw_pose": [T, 3]}``."""
        rows = (
            torch.arange(len(self.names)) if names is None else torch.tensor([self.index(n) for n in names])
        )
        w = torch.as_tensor(weights, dtype=torch.float32)
        if w.ndim != 2 or w.shape[1] != len(rows):
            raise ValueError(f"weights must be [T, {len(rows)}]; got {tuple(w.shape)}")
        return {"expression": w @ self.expression[rows], "jaw_pose": w @ self.jaw_pose[rows]}


def fit_visemes(head: FlameModel, *, cache: bool = True) -> VisemeBasis:
    """:data:`VISEMES` and :data:`GESTURES` in ``head``'s expression and jaw space.

    Uses ``flame_core.retarget.fit_targets`` (cached in memory and on disk by the head's identity
    hash and the targets' fingerprint).

    Raises:
        ValueError: the head has no MediaPipe landmark embedding.
    """
    from flame_core.retarget import fit_targets

    targets = viseme_targets()
    fit = fit_targets(head, targets, cache=cache)
    return VisemeBasis(
        names=tuple(targets.names),
        expression=fit["expression"].float(),
        jaw_pose=fit["jaw_pose"].float(),
        error=fit["error"].float(),
        identity=head.identity_hash(),
    )
