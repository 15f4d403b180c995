"""Runs that diagnose themselves: the health figures of ``log.jsonl`` and the progress bar, and
one-line warnings when a run drifts out of its sane range.

Every ``train.log_every`` steps the trainer writes a record. Besides the loss terms it carries
(docs/METHOD.md, "Diagnostics"):

- ``num_gaussians``; ``stat_mean``, ``stat_p50``, ``stat_p99``: the densification statistic
  (average normalised gradient) over the Gaussians seen since the statistic last restarted;
- ``n_cloned``, ``n_split``, ``n_pruned``: what densification did since the previous record;
- ``grad_guidance``: the L2 norm of the guidance's gradient on the Gaussians' local means, and
  ``reg_ratio``: the position term's gradient norm on the means divided by it (averaged over the
  record's steps in which the position term was on: from ``regularizer.pos_from``);
- ``grad_guidance_scale`` and ``scale_ratio``: the same for the log-scales and the scale term
  (a step's figures are in :meth:`StepGradients.logs`);
- ``ms_per_step``: wall time per step since the previous record; ``n_skipped``: the steps skipped
  so far as non-finite; ``peak_cuda_gib``: peak CUDA memory allocated (CUDA only).

:class:`RunMonitor` keeps what the records need between them and warns once per run, in one line:

- when N passes :data:`BUDGET_WARN_FRACTION` of ``densify.max_gaussians``;
- when more than :data:`SKIPPED_WARN_FRACTION` of the steps were skipped as non-finite (from
  step :data:`SKIPPED_MIN_STEPS` on, so one early skip is not "100 %");
- when a record's ``reg_ratio`` leaves :data:`REG_RATIO_RANGE`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from rigged_gaussians.strategy import DensifyConfig, DensifyInfo, DensifyState
from torch import Tensor

__all__ = [
    "BUDGET_WARN_FRACTION",
    "SKIPPED_WARN_FRACTION",
    "SKIPPED_MIN_STEPS",
    "REG_RATIO_RANGE",
    "StepGradients",
    "RunMonitor",
    "statistic_summary",
    "postfix",
]

log = logging.getLogger("headstudio.train.trainer")

#: Warn when N passes this fraction of ``densify.max_gaussians``: growth is about to stop.
BUDGET_WARN_FRACTION = 0.8
#: Warn when more than this fraction of the steps were skipped (non-finite guidance gradient).
SKIPPED_WARN_FRACTION = 0.05
#: ... counted from this step on.
SKIPPED_MIN_STEPS = 20
#: The sane range of ``reg_ratio`` (regulariser / guidance gradient norm on the means): within two
#: orders of magnitude of balance. Outside it one of the two terms is effectively switched off for
#: the means: above 100 the regulariser is all they see and the prompt no longer shapes the avatar
#: (weights too large, or a guidance whose gradient vanished); below 0.01 nothing keeps the
#: Gaussians near their triangles and they drift into floaters (weights too small, a regulariser
#: that faded with N, or a guidance gradient that exploded). The ratio does not depend on the
#: loss's scale, and hardly on N: both norms go as 1/sqrt(N) when densification splits the
#: Gaussians. Measured: 1.9-8.9 over the offline demo (docs/METHOD.md, "Diagnostics").
REG_RATIO_RANGE = (1e-2, 1e2)


def statistic_summary(state: DensifyState) -> dict[str, float]:
    """``{"stat_mean", "stat_p50", "stat_p99"}`` of the average normalised gradient over the
    Gaussians seen since the statistic restarted (zeros when none was seen)."""
    if state.num_gaussians == 0:
        return {"stat_mean": 0.0, "stat_p50": 0.0, "stat_p99": 0.0}
    seen = state.count > 0
    avg = state.average_grad()[seen].float()
    if avg.numel() == 0:
        return {"stat_mean": 0.0, "stat_p50": 0.0, "stat_p99": 0.0}
    srt = avg.sort().values
    n = srt.numel()

    def quantile(q: float) -> float:  # nearest rank (torch.quantile refuses > 16M elements)
        return float(srt[min(n - 1, int(q * (n - 1) + 0.5))])

    return {"stat_mean": float(avg.mean()), "stat_p50": quantile(0.5), "stat_p99": quantile(0.99)}


def _ratio(regularizer: float, guidance: float) -> float:
    """``regularizer / guidance`` (``inf`` when only the guidance's gradient is 0)."""
    if guidance > 0:
        return regularizer / guidance
    return 0.0 if regularizer == 0 else float("inf")


def _norms(total: Tensor | None, regularizer: Tensor | None) -> tuple[float, float | None]:
    """``(‖total − regularizer‖, ‖regularizer‖)``; ``(‖total‖, None)`` without a regulariser part
    and ``(0, None)`` without a gradient."""
    if total is None:
        return 0.0, None if regularizer is None else float(regularizer.norm())
    if regularizer is None:
        return float(total.norm()), None
    return float((total - regularizer).norm()), float(regularizer.norm())


@dataclass
class StepGradients:
    """The gradient figures of one step: on the Gaussians' local means ``[N, 3]`` (the guidance
    and the position term) and on their log-scales ``[N, 3]`` (the guidance and the scale term).

    Attributes:
        guidance: L2 norm of the guidance terms' gradient on the means.
        regularizer: L2 norm of the weighted position term's gradient on the means (``None``
            when the term was off this step).
        guidance_scale: L2 norm of the guidance terms' gradient on the log-scales.
        regularizer_scale: L2 norm of the weighted scale term's gradient on the log-scales
            (``None`` when off).
    """

    guidance: float
    regularizer: float | None
    guidance_scale: float = 0.0
    regularizer_scale: float | None = None

    @classmethod
    def split(
        cls,
        total: Tensor | None,
        regularizer: Tensor | None,
        total_scale: Tensor | None = None,
        regularizer_scale: Tensor | None = None,
    ) -> StepGradients:
        """From the whole loss's gradients on the means (``total``) and the log-scales
        (``total_scale``), and the regulariser's parts of them (``None``: the term was off)."""
        g, r = _norms(total, regularizer)
        gs, rs = _norms(total_scale, regularizer_scale)
        return cls(g, r, gs, rs)

    @property
    def ratio(self) -> float | None:
        """``regularizer / guidance`` on the means (``inf`` when the guidance has no gradient
        there; ``None`` when the position term was off)."""
        return None if self.regularizer is None else _ratio(self.regularizer, self.guidance)

    @property
    def scale_ratio(self) -> float | None:
        """``regularizer_scale / guidance_scale`` on the log-scales (``None`` when the scale term
        was off)."""
        if self.regularizer_scale is None:
            return None
        return _ratio(self.regularizer_scale, self.guidance_scale)

    def logs(self) -> dict[str, float]:
        out = {"grad_guidance": self.guidance, "grad_guidance_scale": self.guidance_scale}
        if self.ratio is not None:
            out["reg_ratio"] = self.ratio
        if self.scale_ratio is not None:
            out["scale_ratio"] = self.scale_ratio
        return out


class RunMonitor:
    """What a run's records and warnings need between two records (module docstring).

    Args:
        densify: the run's densification settings (the budget).
        device: where the run trains (peak memory is read on CUDA).
        regularized: whether the regulariser is on (a weight above 0), so its ratio is watched.
    """

    def __init__(self, densify: DensifyConfig, device: torch.device, regularized: bool = True) -> None:
        self.densify, self.device, self.regularized = densify, torch.device(device), regularized
        self._warned: set[str] = set()
        self._reset()
        self._started: float | None = None

    def _reset(self) -> None:
        self._seconds, self._steps = 0.0, 0
        self._counts = {"n_cloned": 0, "n_split": 0, "n_pruned": 0}
        self._grads: list[StepGradients] = []

    # ------------------------------------------------------------------ per step
    def start_step(self) -> None:
        self._started = time.perf_counter()

    def end_step(self, gradients: StepGradients | None, densified: DensifyInfo | None) -> None:
        """A completed step: its wall time, gradient figures and densification counts."""
        if self._started is not None:
            self._seconds += time.perf_counter() - self._started
            self._started = None
        self._steps += 1
        if gradients is not None:
            self._grads.append(gradients)
        if densified is not None and densified.action != "none":
            self._counts["n_cloned"] += densified.n_cloned
            self._counts["n_split"] += densified.n_split
            self._counts["n_pruned"] += densified.n_pruned

    @property
    def ms_per_step(self) -> float:
        """Mean wall time of the steps since the last record (ms)."""
        return 1000.0 * self._seconds / max(self._steps, 1)

    def peak_memory_gib(self) -> float | None:
        """Peak CUDA memory allocated by torch on the run's device (GiB); ``None`` off CUDA."""
        if self.device.type != "cuda" or not torch.cuda.is_available():
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**30

    # ------------------------------------------------------------------ records
    def record(self, state: DensifyState, num_gaussians: int, step: int, skipped: int) -> dict[str, float]:
        """The health figures of a record (module docstring); restarts the window, then warns
        about whatever left its range."""
        rec: dict[str, float] = {"num_gaussians": int(num_gaussians)}
        rec.update(statistic_summary(state))
        rec.update(self._counts)
        if self._grads:
            rec["grad_guidance"] = sum(g.guidance for g in self._grads) / len(self._grads)
            rec["grad_guidance_scale"] = sum(g.guidance_scale for g in self._grads) / len(self._grads)
            for key, values in (
                ("reg_ratio", [g.ratio for g in self._grads if g.ratio is not None]),
                ("scale_ratio", [g.scale_ratio for g in self._grads if g.scale_ratio is not None]),
            ):
                if values:
                    rec[key] = sum(values) / len(values)
        rec["ms_per_step"] = round(self.ms_per_step, 2)
        rec["n_skipped"] = int(skipped)
        peak = self.peak_memory_gib()
        if peak is not None:
            rec["peak_cuda_gib"] = round(peak, 3)
        self._reset()
        self.check(rec, step)
        return rec

    # ------------------------------------------------------------------ warnings
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def check_budget(self, num_gaussians: int) -> None:
        """Warn (once) when N passed :data:`BUDGET_WARN_FRACTION` of the budget."""
        budget = int(self.densify.max_gaussians)
        if budget > 0 and num_gaussians > BUDGET_WARN_FRACTION * budget:
            self._warn_once(
                "budget",
                f"{num_gaussians:,} Gaussians passed {BUDGET_WARN_FRACTION:.0%} of the budget "
                f"densify.max_gaussians = {budget:,}; densification stops growing there (raise it if "
                "memory allows).",
            )

    def check(self, rec: dict[str, float], step: int) -> None:
        """Warn (once each) about the figures of ``rec`` at ``step`` that left their range."""
        self.check_budget(int(rec["num_gaussians"]))
        skipped = int(rec.get("n_skipped", 0))
        if step >= SKIPPED_MIN_STEPS and skipped > SKIPPED_WARN_FRACTION * step:
            self._warn_once(
                "skipped",
                f"{skipped} of {step} steps ({skipped / step:.0%}) were skipped: the guidance's gradient "
                "was not finite; check guidance.dtype (float32 is the safe choice) and the learning rates.",
            )
        ratio = rec.get("reg_ratio")
        lo, hi = REG_RATIO_RANGE
        if self.regularized and ratio is not None and not lo <= ratio <= hi:
            side = "above" if ratio > hi else "below"
            self._warn_once(
                "reg_ratio",
                f"step {step}: the regulariser's pull on the means is {ratio:.3g}x the guidance's, {side} "
                f"the sane range [{lo:g}, {hi:g}]; "
                + (
                    "the mesh holds the avatar more than the prompt shapes it (lower loss.lambda_pos / "
                    "loss.lambda_scale)."
                    if side == "above"
                    else "nothing keeps Gaussians near their triangles (raise loss.lambda_pos / "
                    "loss.lambda_scale)."
                ),
            )


def postfix(rec: dict[str, float], loss: float) -> dict[str, str]:
    """The progress bar's fields of a record (short names)."""
    out = {
        "loss": f"{loss:.4g}",
        "N": f"{int(rec['num_gaussians']):,}",
        "ms": f"{rec['ms_per_step']:.0f}",
        "p50/p99": f"{rec['stat_p50']:.2g}/{rec['stat_p99']:.2g}",
        "c/s/p": f"{rec['n_cloned']}/{rec['n_split']}/{rec['n_pruned']}",
    }
    if "grad_guidance" in rec:
        out["g"] = f"{rec['grad_guidance']:.2g}"
    if "reg_ratio" in rec:
        out["reg"] = f"{rec['reg_ratio']:.2g}"
    if "scale_ratio" in rec:
        out["sreg"] = f"{rec['scale_ratio']:.2g}"
    if "peak_cuda_gib" in rec:
        out["mem"] = f"{rec['peak_cuda_gib']:.1f}G"
    return out
