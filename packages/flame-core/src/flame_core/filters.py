"""Speed-adaptive smoothing of time series: the one-euro filter.

The one-euro filter (Casiez, Roussel and Vogel, CHI 2012) is a first-order low-pass filter whose
cutoff rises with the signal's speed: ``cutoff = min_cutoff + beta * |dx/dt|``. A still signal
is smoothed strongly (jitter removed), a fast one hardly at all (peaks and blinks kept, little
lag). The speed itself is low-pass filtered at ``d_cutoff``.

:class:`OneEuroFilter` filters every column of a ``[T, ...]`` array independently. With
``two_sided=True`` (offline use, the default) it runs forward and backward in time and averages
the two passes, so the lag of one direction cancels the lead of the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["OneEuroFilter"]


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass filter with ``cutoff`` Hz sampled every ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


@dataclass(frozen=True)
class OneEuroFilter:
    """The one-euro filter (module docstring).

    Attributes:
        min_cutoff: cutoff frequency (Hz) of a still signal; lower = smoother at rest.
        beta: how fast the cutoff rises with speed (Hz per unit/s of the signal); higher = less
            lag and flattening on fast motion.
        d_cutoff: cutoff (Hz) of the speed estimate.
        two_sided: average a forward and a backward pass (no net lag; offline only).
    """

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0
    two_sided: bool = True

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"one-euro {name} = {v}; it must be a positive frequency in Hz")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"one-euro beta = {self.beta}; it must be zero or positive")

    def _pass(self, x: np.ndarray, dt: float) -> np.ndarray:
        out = np.empty_like(x)
        out[0] = x[0]
        dx = np.zeros_like(x[0])
        a_d = _alpha(self.d_cutoff, dt)
        for t in range(1, len(x)):
            raw = (x[t] - out[t - 1]) / dt
            dx = dx + a_d * (raw - dx)
            a = _alpha(self.min_cutoff + self.beta * np.abs(dx), dt)
            out[t] = out[t - 1] + a * (x[t] - out[t - 1])
        return out

    def __call__(self, x: np.ndarray, fps: float) -> np.ndarray:
        """Filter ``x [T, ...]`` sampled at ``fps`` frames per second; returns the same shape (float64)."""
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps = {fps}; expected a positive frame rate")
        x = np.asarray(x, np.float64)
        if x.ndim == 0 or len(x) < 2:
            return x.copy()
        dt = 1.0 / float(fps)
        fwd = self._pass(x, dt)
        if not self.two_sided:
            return fwd
        return 0.5 * (fwd + self._pass(x[::-1], dt)[::-1])
