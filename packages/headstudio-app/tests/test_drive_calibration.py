"""The drive's jaw calibration: the monotone curve, its refusals, the clip, and the CLI switch.

The calibration on a real avatar read by MediaPipe is tested by the round trip
(tests/test_roundtrip.py: the teacher's mouth meets the issue's bar with it and misses without).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from headstudio import cli
from headstudio.animate.drive import DriveOptions
from headstudio.animate.drive_calibration import (
    CALIBRATION_FPS,
    MAX_GAIN,
    JawCalibration,
    calibration_motion,
    fit_jaw_calibration,
)


def _reader(jaw: np.ndarray) -> np.ndarray:
    """A reader that sees nothing of the first 0.03 rad and 0.6 of the rest, plus 0.1 throughout."""
    return 0.6 * np.clip(jaw - 0.03, 0.0, None) + 0.1 * jaw


def test_curve_inverts_a_known_reader() -> None:
    rng = np.random.default_rng(0)
    true = np.abs(np.sin(np.linspace(0, 3 * np.pi, 120))) * 0.35
    fitted = _reader(true) + rng.normal(0, 0.002, true.shape)
    cal = fit_jaw_calibration(fitted, true)
    probe = np.linspace(0.05, 0.34, 30)
    back = cal.apply(torch.as_tensor(_reader(probe))).numpy()
    assert np.abs(back - probe).max() < 0.02, np.c_[probe, back]
    assert cal.fitted[0] == 0.0 and cal.true[0] == 0.0 and 1.5 < cal.gain < 2.0
    dense = cal.apply(torch.linspace(-0.1, 0.5, 601, dtype=torch.float64)).numpy()
    assert (np.diff(dense) >= -1e-12).all()  # never decreases
    # below rest: identity; beyond the clip's widest: the last slope, capped at max_opening
    neg = torch.tensor([-0.05, -0.01])
    assert torch.equal(cal.apply(neg), neg)
    top, slope = cal.fitted[-1], (cal.true[-1] - cal.true[-2]) / (cal.fitted[-1] - cal.fitted[-2])
    beyond = cal.apply(torch.tensor([top + 0.02], dtype=torch.float64)).item()
    assert beyond == pytest.approx(cal.true[-1] + 0.02 * slope)
    assert cal.apply(torch.tensor([5.0])).item() == pytest.approx(cal.max_opening)
    assert cal.apply(torch.tensor([0.1], dtype=torch.float32)).dtype == torch.float32


def test_curve_follows_a_reader_with_a_knee() -> None:
    """Piecewise, not one gain: a reader with a different slope above 0.15 rad is inverted too."""
    true = np.linspace(0, 0.35, 80)
    fitted = np.where(true < 0.15, 0.8 * true, 0.12 + 0.4 * (true - 0.15))
    cal = fit_jaw_calibration(fitted, true)
    for j in (0.05, 0.1, 0.2, 0.3):
        f = 0.8 * j if j < 0.15 else 0.12 + 0.4 * (j - 0.15)
        assert cal.apply(torch.tensor([f], dtype=torch.float64)).item() == pytest.approx(j, abs=0.01)


def test_curve_refuses_a_mouth_it_cannot_see() -> None:
    true = np.linspace(0, 0.35, 40)
    with pytest.raises(ValueError, match="does not see this avatar's mouth open"):
        fit_jaw_calibration(0.01 * true, true)
    with pytest.raises(ValueError, match=f"more than {MAX_GAIN:g}x under"):
        fit_jaw_calibration(true / (MAX_GAIN + 1), true)
    with pytest.raises(ValueError, match="paired"):
        fit_jaw_calibration(true[:3], true[:3])


def test_calibration_clip_opens_only_the_jaw() -> None:
    m = calibration_motion(20)
    jaw = m.jaw_pose[:, 0].numpy()
    assert m.fps == CALIBRATION_FPS and len(m) == 61
    assert jaw[0] == 0 and jaw[-1] == 0 and jaw.max() == pytest.approx(0.35)
    assert (jaw < 0.01).sum() >= 12  # enough closed frames for the auto neutral (20 %)
    assert float(m.expression.abs().max()) == 0 and float(m.eye_pose.abs().max()) == 0
    assert float(m.jaw_pose[:, 1:].abs().max()) == 0


def test_summary_and_record() -> None:
    cal = JawCalibration((0.0, 0.05, 0.2), (0.0, 0.1, 0.32), size=512, frames=61)
    assert "gain 1.60" in cal.summary() and "61 frames at 512²" in cal.summary()
    d = cal.to_dict()
    assert d["gain"] == pytest.approx(1.6) and d["fitted"] == [0.0, 0.05, 0.2] and d["frames"] == 61


def test_cli_calibrates_unless_told_not_to() -> None:
    parse = cli.build_parser().parse_args
    base = ["drive", "a.ply", "--video", "v.mp4", "-o", "o.mp4"]
    assert parse(base).calibrate is DriveOptions().calibrate is True
    assert parse([*base, "--no-calibrate"]).calibrate is False
