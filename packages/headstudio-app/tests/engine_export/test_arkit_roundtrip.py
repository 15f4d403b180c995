"""ARKit curves on the drive round trip (``headstudio.animate.arkit_roundtrip``): the scoring on
known curves, and a short real round trip (render → MediaPipe → drive → ``motion_to_curves``).

The round trip's bars come from what was measured (BENCHMARKS.md, "ARKit curves on the drive
round trip"): on this clip of the teacher's jaw motion (30 frames at 15 fps, 256² renders)
jawOpen r 0.96, amplitude 1.20 with the drive's calibration on the avatar (0.70 without: the
calibration opens the jaw beyond the true motion, so that MediaPipe reads the driven mouth as
open as the source's); the bars leave a margin on both sides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from headstudio.animate.arkit import ARKIT_NAMES, ArkitBasis, ArkitCurves, curves_to_motion, motion_to_curves
from headstudio.animate.arkit_roundtrip import (
    MIN_CURVE_STD,
    arkit_roundtrip,
    compare_curves,
    expressed_share,
    format_arkit_table,
)
from headstudio.errors import HeadStudioError


def _curves(w: np.ndarray) -> ArkitCurves:
    T = len(w)
    return ArkitCurves(w.astype(np.float32), 30.0, np.zeros((T, 3), np.float32), np.zeros((T, 6), np.float32))


def test_scores_the_curves_that_move() -> None:
    T = 40
    t = np.linspace(0, 1, T)
    truth = np.zeros((T, 52))
    jaw, blink, still = (ARKIT_NAMES.index(n) for n in ("jawOpen", "eyeBlinkLeft", "browInnerUp"))
    truth[:, jaw] = 0.5 + 0.4 * np.sin(6 * t)
    truth[:, blink] = (t > 0.5) * 0.8
    truth[:, still] = 0.5 * MIN_CURVE_STD  # below the bar: not scored
    captured = np.zeros((T, 52))
    captured[:, jaw] = 0.1 + 0.5 * truth[:, jaw]  # same shape, half the amplitude
    captured[:, blink] = truth[::-1, blink]  # mirrored in time
    rt = compare_curves("x", _curves(truth), _curves(captured))
    assert rt.moving == ("eyeBlinkLeft", "jawOpen")  # ARKit order
    jaw_match = rt.matches["jawOpen"]
    assert jaw_match.r == pytest.approx(1.0) and jaw_match.amplitude == pytest.approx(0.5)
    assert rt.matches["eyeBlinkLeft"].r == pytest.approx(-1.0)
    table = format_arkit_table([rt])
    assert "| x | jawOpen | 1.00 | 0.50 |" in table and "browInnerUp" not in table


def test_expressed_share_of_a_motion_made_of_curves(teacher: Any, basis: ArkitBasis) -> None:
    """A motion played from curves is expressed by them whole, by no curves not at all, and by
    half the weights about three quarters (landmarks nearly linear in small weights: 1 − 0.5²)."""
    rng = np.random.default_rng(2)
    w = np.zeros((8, 52))
    for t in range(8):
        w[t, rng.choice(51, 2, replace=False)] = rng.uniform(0.2, 0.9, 2)
    motion = curves_to_motion(_curves(w), basis)
    back = motion_to_curves(motion, basis, teacher.head, teacher.shape.detach())
    assert expressed_share(teacher, motion, back, basis) > 0.95
    assert expressed_share(teacher, motion, _curves(np.zeros_like(w)), basis) == pytest.approx(0.0, abs=1e-9)
    assert expressed_share(teacher, motion, _curves(0.5 * w), basis) == pytest.approx(0.75, abs=0.1)


@pytest.mark.slow
def test_jaw_round_trip_captures_jaw_open(teacher: Any, basis: ArkitBasis, tmp_path: Path) -> None:
    from headstudio.animate.face_track import resolve_landmarker

    try:
        resolve_landmarker()
    except HeadStudioError as e:
        pytest.skip(str(e))
    rt = arkit_roundtrip(teacher, "jaw", tmp_path, num_frames=30, fps=15.0, size=256, basis=basis)
    assert "jawOpen" in rt.moving, rt.moving
    m = rt.matches["jawOpen"]
    assert m.r > 0.8 and 0.4 < m.amplitude < 1.5, m
    assert rt.captured_motion is not None and len(rt.captured_motion) == 30
