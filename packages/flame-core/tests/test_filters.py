"""The one-euro filter: smooths a still signal, keeps fast peaks, no lag when two-sided."""

from __future__ import annotations

import numpy as np
import pytest
from flame_core.filters import OneEuroFilter

FPS = 30.0


def _bump(T: int, centre: int, half_width: int) -> np.ndarray:
    x = np.clip((np.arange(T) - centre) / half_width, -1.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def test_constant_and_short_inputs_pass_through() -> None:
    x = np.full((20, 3), 2.5)
    np.testing.assert_allclose(OneEuroFilter(1.0, 5.0)(x, FPS), x)
    np.testing.assert_allclose(OneEuroFilter()(np.array([1.0]), FPS), [1.0])


def test_still_signal_jitter_is_removed() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, (300, 4))
    out = OneEuroFilter(min_cutoff=1.0, beta=0.0)(noise, FPS)
    assert out.std() < 0.35 * noise.std()


def test_fast_peak_is_kept_where_a_fixed_lowpass_flattens_it() -> None:
    """A blink-like bump (5 frames wide) over jitter: a high beta keeps most of its height,
    the same filter without speed adaptation (beta 0) loses most of it."""
    rng = np.random.default_rng(1)
    clean = _bump(120, 60, 3)
    x = clean + rng.normal(0, 0.01, 120)
    adaptive = OneEuroFilter(min_cutoff=1.0, beta=20.0)(x, FPS)
    fixed = OneEuroFilter(min_cutoff=1.0, beta=0.0)(x, FPS)
    assert adaptive.max() > 0.8
    assert fixed.max() < 0.5
    # still jitter is still smoothed away from the peak
    assert np.abs(adaptive[:40] - clean[:40]).std() < 0.6 * np.abs(x[:40] - clean[:40]).std()


def test_two_sided_has_no_lag_one_sided_lags() -> None:
    x = _bump(101, 50, 10)
    two = OneEuroFilter(min_cutoff=2.0, beta=0.0)(x, FPS)
    one = OneEuroFilter(min_cutoff=2.0, beta=0.0, two_sided=False)(x, FPS)
    assert int(np.argmax(two)) == 50
    assert int(np.argmax(one)) >= 52  # a first-order low-pass at 2 Hz lags ~2.4 frames


def test_columns_are_filtered_independently() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 2))
    f = OneEuroFilter(1.0, 1.0)
    both = f(x, FPS)
    np.testing.assert_allclose(both[:, 0], f(x[:, 0], FPS))
    np.testing.assert_allclose(both[:, 1], f(x[:, 1], FPS))


@pytest.mark.parametrize(
    "kw", [{"min_cutoff": 0.0}, {"d_cutoff": -1.0}, {"beta": -0.1}, {"min_cutoff": float("nan")}]
)
def test_bad_parameters_are_rejected(kw) -> None:
    with pytest.raises(ValueError, match="one-euro"):
        OneEuroFilter(**kw)
    with pytest.raises(ValueError, match="fps"):
        OneEuroFilter()(np.zeros(5), 0.0)
