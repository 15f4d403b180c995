"""``headstudio generate --dry-run``: the user's preflight on their machine.

Loads everything a real run loads (the head, the diffusion models, the avatar) with the run's
own configuration, takes a few training steps, and reports the time per step, the ETA of the
whole run, the peak memory and the first health figures (:mod:`headstudio.train.diagnostics`). It
writes nothing: no avatar, no checkpoint, no log.
"""

from __future__ import annotations

import logging
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import HeadStudioConfig
from .trainer import Trainer

__all__ = ["DRY_RUN_STEPS", "PreflightReport", "dry_run", "format_duration"]

log = logging.getLogger(__name__)

#: Training steps of a dry run.
DRY_RUN_STEPS = 3


def format_duration(seconds: float) -> str:
    """``3725`` → ``"1 h 02 min"``; under an hour ``"12 min 05 s"``; under a minute ``"8.4 s"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


@dataclass
class PreflightReport:
    """What a dry run measured.

    Attributes:
        device: where it trained.
        total_steps: ``train.steps`` of the configuration (the ETA's length).
        load_seconds: building the trainer: head, diffusion models, avatar.
        step_ms: wall time of each step (the first includes one-time warm-up).
        num_gaussians: N of the initial avatar.
        peak_cuda_gib: peak CUDA memory allocated by torch (CUDA only).
        peak_rss_gib: peak resident memory of the process.
        health: the health figures of the steps (``reg_ratio``, ``grad_guidance``, ...).
    """

    device: str
    total_steps: int
    load_seconds: float
    step_ms: list[float]
    num_gaussians: int
    peak_cuda_gib: float | None
    peak_rss_gib: float
    health: dict[str, float] = field(default_factory=dict)

    @property
    def ms_per_step(self) -> float:
        """The steady time per step: the median of the steps after the first (warm-up) one."""
        steady = self.step_ms[1:] or self.step_ms
        return float(statistics.median(steady))

    @property
    def eta_seconds(self) -> float:
        """The whole run at :attr:`ms_per_step` (at the initial N)."""
        return self.total_steps * self.ms_per_step / 1000.0

    def lines(self, config: HeadStudioConfig) -> list[str]:
        """The report as printed by ``headstudio generate --dry-run``."""
        t = config.train
        out = [
            f"dry run: {len(self.step_ms)} steps of this configuration on {self.device} (batch "
            f"{t.batch_size}, {t.resolution}² renders, {self.num_gaussians:,} Gaussians); nothing written",
            f"  loading (head, guidance models, avatar): {format_duration(self.load_seconds)}",
            "  ms per step: "
            + ", ".join(f"{ms:.0f}" for ms in self.step_ms)
            + " (the first includes one-time warm-up)",
            f"  ETA of the whole run ({self.total_steps:,} steps at {self.ms_per_step:.0f} ms/step): "
            f"{format_duration(self.eta_seconds)} at the initial N; steps slow down as densification adds "
            f"Gaussians (up to densify.max_gaussians = {config.densify.max_gaussians:,})",
        ]
        if self.peak_cuda_gib is not None:
            out.append(f"  peak CUDA memory allocated: {self.peak_cuda_gib:.2f} GiB")
        out.append(f"  peak resident memory of the process: {self.peak_rss_gib:.2f} GiB")
        h = self.health
        if "reg_ratio" in h:
            out.append(
                f"  gradient on the means: guidance {h['grad_guidance']:.3g}, regulariser / "
                f"guidance {h['reg_ratio']:.3g}"
            )
        elif "grad_guidance" in h and config.loss.lambda_pos > 0:
            out.append(
                f"  gradient on the means: guidance {h['grad_guidance']:.3g}; the position term starts "
                f"at step regularizer.pos_from = {config.regularizer.pos_from:,}"
            )
        if "scale_ratio" in h:
            out.append(
                f"  gradient on the log-scales: guidance {h['grad_guidance_scale']:.3g}, scale term / "
                f"guidance {h['scale_ratio']:.3g}"
            )
        return out


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def dry_run(config: HeadStudioConfig, prompt: str, steps: int = DRY_RUN_STEPS) -> PreflightReport:
    """Build the run of ``config`` and take ``steps`` training steps without writing anything.

    Raises:
        HeadStudioError: a part cannot be built (as for a real run).
        fsds_guidance.GuidanceModelError: the diffusion models cannot be loaded.
    """
    with tempfile.TemporaryDirectory(prefix="headstudio-dry-run-") as tmp:
        cuda = torch.cuda.is_available() and str(config.train.device).startswith(("cuda", "auto"))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        trainer = Trainer.new(config, prompt, Path(tmp) / "run", progress=False)
        load = time.perf_counter() - t0
        n0 = trainer.avatar.num_gaussians
        on_cuda = trainer.device.type == "cuda"
        step_ms = []
        for _ in range(int(steps)):
            start = time.perf_counter()
            trainer.train_step()
            if on_cuda:
                torch.cuda.synchronize(trainer.device)
            step_ms.append(1000.0 * (time.perf_counter() - start))
        health = trainer.health()
        peak_cuda = torch.cuda.max_memory_allocated(trainer.device) / 2**30 if on_cuda else None
        return PreflightReport(
            device=str(trainer.device),
            total_steps=int(config.train.steps),
            load_seconds=load,
            step_ms=step_ms,
            num_gaussians=int(n0),
            peak_cuda_gib=peak_cuda,
            peak_rss_gib=_peak_rss_gib(),
            health=health,
        )
