"""The run's state as a checkpoint: what a :class:`~headstudio.train.trainer.Trainer` saves and
restores, and the errors that stop a run. Split out of :mod:`headstudio.train.trainer`, whose
``Trainer`` inherits these methods."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from flame_core import FlameModel
from rigged_gaussians import strategy

from ..avatar import Avatar
from ..config import HeadStudioConfig, config_to_dict
from ..errors import HeadStudioError
from .checkpoint import (
    Checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .guidance import Guidance

__all__ = ["NonFiniteLossError", "TrainerState", "TrainingInterrupted"]

log = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: ``summary`` says where the run stopped and which checkpoint holds it.

    Attributes:
        summary: ``"interrupted at step S/T; checkpoint saved to P"`` (or the kept checkpoint).
        output_dir: the run's directory (continue it with :meth:`Trainer.resume`).
    """

    def __init__(self, summary: str, output_dir: Path) -> None:
        super().__init__(f"{summary}; continue with Trainer.resume('{output_dir}').")
        self.summary = summary
        self.output_dir = output_dir


class NonFiniteLossError(HeadStudioError):
    """The loss became NaN/inf; training stopped and the last good checkpoint was kept."""


class TrainerState:
    """Checkpoint save / restore of a :class:`~headstudio.train.trainer.Trainer` (a mixin; the
    attributes below are the trainer's)."""

    config: HeadStudioConfig
    prompt: str | None
    head: FlameModel
    guidance: Guidance
    avatar: Avatar
    device: torch.device
    generator: torch.Generator
    optimizer: torch.optim.Optimizer
    densifier: strategy.Densifier
    checkpoint_path: Path
    step: int
    num_skipped: int
    _last_good_step: int | None

    def _restore(self, ckpt: Checkpoint) -> None:
        self.step = ckpt.step
        self.num_skipped = ckpt.num_skipped
        self.optimizer.load_state_dict(ckpt.optimizer)
        if ckpt.densify_state is not None:
            s = ckpt.densify_state
            self.densifier.state = strategy.DensifyState(
                *(t.to(self.device) for t in (s.grad_accum, s.count, s.max_radii))
            )
        if ckpt.guidance is not None:
            self.guidance.load_state_dict(ckpt.guidance)
        set_rng_state(ckpt.rng, {"trainer": self.generator}, self.device)
        self._last_good_step = self.step
        log.info(
            "resumed from %s at step %d (%d Gaussians)",
            self.checkpoint_path,
            self.step,
            self.avatar.num_gaussians,
        )

    # ------------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> Checkpoint:
        """The state of the run now (CPU copies of the tensors)."""
        return Checkpoint(
            step=self.step,
            num_skipped=self.num_skipped,
            gaussians={k: p.detach().cpu().clone() for k, p in self.avatar.gaussian_params().items()},
            face_ids=self.avatar.face_ids.detach().cpu().clone(),
            shape=self.avatar.shape.detach().cpu().clone(),
            optimizer=self.optimizer.state_dict(),
            densify_state=self.densifier.state if self.config.densify.enabled else None,
            guidance=self.guidance.state_dict(),
            rng=rng_state({"trainer": self.generator}, self.device),
            config=config_to_dict(self.config),
            prompt=self.prompt,
            head_hash=str(self.head.identity_hash()),
        )

    def _params_finite(self) -> bool:
        ps = list(self.avatar.gaussian_params().values()) + [self.avatar.shape]
        return all(bool(torch.isfinite(p).all()) for p in ps)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/last.pt`` atomically (temp file + rename); returns its path.

        Raises:
            NonFiniteLossError: the parameters hold NaN/inf (the previous checkpoint is kept).
        """
        if not self._params_finite():
            raise NonFiniteLossError(self._non_finite_message("the parameters"))
        save_checkpoint(self.checkpoint(), self.checkpoint_path)
        self._last_good_step = self.step
        return self.checkpoint_path

    def _non_finite_message(self, what: str) -> str:
        if self._last_good_step is None:
            kept = "no checkpoint was written yet"
        else:
            kept = f"the last good checkpoint {self.checkpoint_path} (step {self._last_good_step}) is intact"
        return (
            f"{what} became non-finite (NaN/inf) at step {self.step + 1}; training stopped and {kept}. "
            "Lower the learning rates (train.lr_position, ...) or change train.seed, then resume the run."
        )
