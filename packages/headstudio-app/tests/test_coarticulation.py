"""Phoneme → viseme table and the dominance blend (no head, no espeak-ng needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from headstudio.animate.speech.coarticulation import (
    LOUDNESS_VISEMES,
    OPENNESS_RANGE_DB,
    VisemeSegment,
    coarticulate,
    follow_loudness,
    num_frames_for,
    segments_from_phonemes,
    vowel_amplitude,
)
from headstudio.animate.speech.espeak import Phoneme
from headstudio.animate.speech.visemes import VISEMES, normalize_ipa, phoneme_visemes

FPS = 30.0


@pytest.mark.parametrize(
    ("symbol", "visemes"),
    [
        ("m", ("PP",)),
        ("b", ("PP",)),
        ("p", ("PP",)),
        ("f", ("FF",)),
        ("θ", ("TH",)),
        ("tʃ", ("CH",)),
        ("dʒ", ("CH",)),
        ("ʃ", ("CH",)),
        ("s", ("SS",)),
        ("ts", ("SS",)),
        ("n", ("nn",)),
        ("ɹ", ("RR",)),
        ("k", ("kk",)),
        ("ɑː", ("aa",)),
        ("ə", ("E",)),
        ("iː", ("I",)),
        ("ɔ̃", ("O",)),  # French nasal vowel: the tilde is dropped
        ("uː", ("U",)),
        ("aɪ", ("aa", "I")),  # diphthongs: two shapes
        ("əʊ", ("E", "U")),
        ("ɑːɹ", ("aa", "RR")),
        ("ss", ("SS",)),  # repeated visemes merge
        ("", ("sil",)),
        ("_", ("sil",)),
        ("ʲ", ("kk",)),  # a lone palatalisation mark: the least constraining viseme
    ],
)
def test_phoneme_table(symbol: str, visemes: tuple[str, ...]) -> None:
    assert phoneme_visemes(symbol) == visemes


def test_normalize_ipa_drops_marks() -> None:
    assert normalize_ipa("ˈaːʲ") == "a"
    assert normalize_ipa("o̞") == "o"
    assert normalize_ipa("ɯᵝ") == "ɯ"


def test_segments_from_phonemes_fill_the_timeline() -> None:
    ph = [Phoneme("h", 0.01, 0.06), Phoneme("aɪ", 0.06, 0.26), Phoneme("_", 0.26, 0.3)]
    segs = segments_from_phonemes(ph, duration=0.5)
    assert [s.viseme for s in segs] == ["sil", "kk", "aa", "I", "sil", "sil"]
    assert segs[2].start == pytest.approx(0.06) and segs[2].end == pytest.approx(0.16)
    assert segs[-1].end == pytest.approx(0.5)
    for a, b in zip(segs, segs[1:]):
        assert a.end == pytest.approx(b.start)


def _col(name: str) -> int:
    return VISEMES.index(name)


def test_weights_are_a_partition_of_unity() -> None:
    rng = np.random.default_rng(0)
    t, segs = 0.0, []
    for _ in range(40):
        d = rng.uniform(0.02, 0.2)
        segs.append(VisemeSegment(str(rng.choice(VISEMES)), t, t + d, float(rng.uniform(0.3, 1.0))))
        t += d
    T = num_frames_for(t, FPS)
    w = coarticulate(segs, T, FPS)
    assert w.shape == (T, len(VISEMES))
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.ones(T), atol=1e-5)


def test_influence_ramps_in_and_out() -> None:
    segs = [VisemeSegment("sil", 0, 0.5), VisemeSegment("aa", 0.5, 0.8), VisemeSegment("sil", 0.8, 1.3)]
    w = coarticulate(segs, num_frames_for(1.3, 100.0), 100.0)[:, _col("aa")].numpy()
    assert w[65] == pytest.approx(1.0, abs=0.05)  # inside: the viseme itself (apart from sil's tail)
    assert w[5] < 1e-3 and w[125] < 1e-3  # far away: nothing
    rise = w[40:51]
    assert (np.diff(rise) > 0).all() and 0.05 < w[46] < 0.95  # starts before the segment, gradually


def test_weak_visemes_let_neighbours_show_through_and_closures_win() -> None:
    def middle(cons: str) -> torch.Tensor:
        segs = [
            VisemeSegment("aa", 0, 0.15),
            VisemeSegment(cons, 0.15, 0.21),
            VisemeSegment("aa", 0.21, 0.36),
        ]
        return coarticulate(segs, 37, 100.0)[18]  # 0.18 s: the consonant's centre

    k = middle("kk")
    assert k[_col("aa")] > 0.5  # k between two a's: the open a shows through
    p = middle("PP")
    assert p[_col("PP")] > 0.98  # p between two a's: the lips still close


def test_short_segments_are_seen_by_a_frame() -> None:
    segs = [VisemeSegment("aa", 0, 0.2), VisemeSegment("PP", 0.2, 0.21), VisemeSegment("aa", 0.21, 0.4)]
    w = coarticulate(segs, num_frames_for(0.4, FPS), FPS)
    assert float(w[:, _col("PP")].max()) > 0.98


def test_amplitude_blends_towards_rest() -> None:
    w = coarticulate([VisemeSegment("O", 0, 1.0, amplitude=0.3)], 31, FPS)
    assert torch.allclose(w[15, [_col("O"), _col("sil")]], torch.tensor([0.3, 0.7]), atol=1e-6)
    assert vowel_amplitude(0.0) == 1.0 and vowel_amplitude(-60.0) == pytest.approx(0.4)
    assert vowel_amplitude(-10.0) > vowel_amplitude(-20.0)


def test_follow_loudness_scales_the_sounding_visemes_frame_by_frame() -> None:
    """Against a hand computation: 10 ms loudness frames, 30 fps video frames, a ±20 ms window."""
    assert "PP" not in LOUDNESS_VISEMES and "FF" not in LOUDNESS_VISEMES and "aa" in LOUDNESS_VISEMES
    T = 4
    w = torch.zeros(T, len(VISEMES))
    w[:, _col("aa")], w[:, _col("PP")], w[:, _col("sil")] = 0.6, 0.3, 0.1
    loud = np.zeros(8)  # frames at 0..70 ms; video frame 3 (100 ms) is past the audio
    loud[2:5] = -OPENNESS_RANGE_DB / 2  # 20-40 ms: half-way to the quietest opening
    out = follow_loudness(w, loud, FPS)
    # frame 0 (0 ms) averages loudness frames 0..2; frame 1 (33 ms) frames 1..5; frame 2 (67 ms) 5..7
    means = [loud[0:3].mean(), loud[1:6].mean(), loud[5:8].mean()]
    amps = [vowel_amplitude(m) for m in means] + [vowel_amplitude(-1e9)]
    np.testing.assert_allclose(out[:, _col("aa")].numpy(), 0.6 * np.array(amps), rtol=1e-6)
    np.testing.assert_allclose(out[:, _col("PP")].numpy(), 0.3)  # lip closures whatever the sound
    np.testing.assert_allclose(out[:, _col("sil")].numpy(), 0.1 + 0.6 * (1 - np.array(amps)), rtol=1e-6)
    np.testing.assert_allclose(out.sum(1).numpy(), 1.0, rtol=1e-6)
    assert amps[2] == 1.0 and amps[3] == pytest.approx(0.4) and 0.4 < amps[1] < amps[0] < 1.0
    with pytest.raises(ValueError, match="weights must be"):
        follow_loudness(w[:, :3], loud, FPS)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown viseme"):
        coarticulate([VisemeSegment("XX", 0, 1)], 10, FPS)
    with pytest.raises(ValueError, match="num_frames"):
        coarticulate([], 0, FPS)
    assert torch.equal(coarticulate([], 3, FPS)[:, _col("sil")], torch.ones(3))
    assert num_frames_for(1.0, 30.0) == 30 and num_frames_for(0.001, 30.0) == 1
