"""The jaw calibration's curve (:mod:`headstudio.animate.drive_calibration` measures it on the
avatar): a monotone piecewise-linear map from the jaw opening a landmark fit finds to the one the
avatar needs, fitted by non-negative least squares (:func:`fit_jaw_calibration`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls

__all__ = [
    "MIN_FITTED_OPENING",
    "MAX_GAIN",
    "JawCalibration",
    "fit_jaw_calibration",
    "evaluate",
    "monotone_curve",
]

#: Least fitted opening (rad) of the calibration clip that counts as "MediaPipe saw the mouth open".
MIN_FITTED_OPENING = 0.02
#: Largest accepted ratio of true to fitted opening: beyond it MediaPipe barely reads this
#: avatar's mouth, and the curve would mostly amplify noise.
MAX_GAIN = 3.0


@dataclass(frozen=True)
class JawCalibration:
    """A monotone curve from the fitted jaw opening to the jaw the avatar needs (both in rad,
    relative to the neutral).

    Attributes:
        fitted: increasing knots of the fitted opening, starting at 0.
        true: the opening at each knot, non-decreasing, starting at 0.
        size: the calibration clip's render size (pixels, square).
        frames: calibration frames in which MediaPipe found the face.

    Beyond the last knot the curve goes on with its last slope; below 0 (a mouth closed tighter
    than at rest, which the clip does not show) it is the identity. The result is capped at
    :attr:`max_opening`.
    """

    fitted: tuple[float, ...]
    true: tuple[float, ...]
    size: int = 512
    frames: int = 0
    max_opening: float = 0.6

    @property
    def gain(self) -> float:
        """True over fitted opening at the widest knot."""
        return self.true[-1] / self.fitted[-1]

    def apply(self, jaw_open: torch.Tensor) -> torch.Tensor:
        """The curve applied to ``jaw_open [T]`` (rad, relative to the neutral)."""
        x = jaw_open.detach().cpu().double().numpy()
        y = np.minimum(evaluate(np.asarray(self.fitted), np.asarray(self.true), x), self.max_opening)
        return torch.as_tensor(y, dtype=jaw_open.dtype, device=jaw_open.device)

    def summary(self) -> str:
        """One line: how much the fitted jaw is opened."""
        mid = len(self.fitted) // 2
        return (
            f"jaw calibrated on the avatar ({self.frames} frames at {self.size}²): a fitted opening of "
            f"{self.fitted[mid]:.3f} rad drives {self.true[mid]:.3f} rad, {self.fitted[-1]:.3f} drives "
            f"{self.true[-1]:.3f} (gain {self.gain:.2f})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (for ``drive --report``)."""
        return {
            "fitted": [round(v, 5) for v in self.fitted],
            "true": [round(v, 5) for v in self.true],
            "gain": round(self.gain, 4),
            "size": self.size,
            "frames": self.frames,
        }


def evaluate(xk: np.ndarray, yk: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The piecewise-linear curve through ``(xk, yk)`` at ``x``: its last slope beyond the last
    knot, the identity below 0."""
    y = np.interp(x, xk, yk)
    slope = (yk[-1] - yk[-2]) / (xk[-1] - xk[-2])
    y = np.where(x > xk[-1], yk[-1] + (x - xk[-1]) * slope, y)
    return np.where(x < 0, x, y)


def monotone_curve(x: np.ndarray, y: np.ndarray, num_knots: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(xk, yk)`` of the non-decreasing piecewise-linear curve through ``(0, 0)`` that best
    maps ``x`` to ``y``: ``xk`` is 0, quantiles of the positive ``x`` and its maximum; the rises
    between knots are fitted by non-negative least squares."""
    top = float(x.max())
    if not top > 0:
        raise ValueError("no opening was read on the calibration clip")
    pos = x[x > 1e-3 * top]
    inner = np.quantile(pos, np.linspace(0, 1, num_knots)[1:-1]) if len(pos) else np.zeros(0)
    xk = np.unique(np.r_[0.0, inner, top])
    xk = xk[np.r_[True, np.diff(xk) > 1e-3 * top]]  # knots apart; the last stays the maximum
    xk[-1] = top
    ramps = np.stack([np.clip((x - a) / (b - a), 0.0, 1.0) for a, b in zip(xk[:-1], xk[1:])], 1)
    rises, _ = nnls(ramps, y)
    return xk, np.r_[0.0, np.cumsum(rises)]


def fit_jaw_calibration(fitted: np.ndarray, true: np.ndarray, num_knots: int = 5) -> JawCalibration:
    """The monotone piecewise-linear curve through ``(0, 0)`` that best maps ``fitted`` to ``true``.

    The knots are 0 and quantiles of the positive fitted openings (the last at their maximum); the
    curve's rise between knots is fitted by non-negative least squares, so it never decreases.

    Args:
        fitted: ``[N]`` fitted jaw openings (rad, relative to the neutral).
        true: ``[N]`` the true openings of the same frames.
        num_knots: knots including 0.

    Raises:
        ValueError: the fitted jaw never opens by :data:`MIN_FITTED_OPENING`, or the curve's gain
            exceeds :data:`MAX_GAIN` (MediaPipe barely reads the mouth).
    """
    x, y = np.asarray(fitted, np.float64).ravel(), np.asarray(true, np.float64).ravel()
    if x.shape != y.shape or len(x) < num_knots:
        raise ValueError(f"need at least {num_knots} paired openings; got {x.shape} and {y.shape}")
    top = float(x.max())
    if not top >= MIN_FITTED_OPENING:
        raise ValueError(
            f"the fitted jaw opened at most {top:.3f} rad on a clip that opens {float(y.max()):.2f} rad: "
            "MediaPipe does not see this avatar's mouth open"
        )
    xk, yk = monotone_curve(x, y, num_knots)
    if not yk[-1] > 0:
        raise ValueError("the calibration found no opening to map to")
    cal = JawCalibration(tuple(float(v) for v in xk), tuple(float(v) for v in yk))
    if cal.gain > MAX_GAIN:
        raise ValueError(
            f"MediaPipe reads this avatar's mouth at 1/{cal.gain:.1f} of its opening (more than "
            f"{MAX_GAIN:g}x under), too little to calibrate on"
        )
    return cal
