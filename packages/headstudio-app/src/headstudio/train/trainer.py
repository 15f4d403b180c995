"""The training loop of ``headstudio generate`` (and of the offline demo).

One step (docs/ARCHITECTURE.md, "One training step") reads as numbered stages in
:meth:`Trainer.train_step`: sample a batch (``B`` poses of a motion, a random camera each, or
the guidance's own batch), render the rigged Gaussians, compute the loss terms (the guidance's
and the mesh regulariser's) and weigh them with ``loss.lambda_*`` in one place, backward, the
Adam step (the position learning rate follows ``train.position_lr``; the FLAME shape stops
learning at ``train.shape_stop_step``), then densify / prune through ``rigged_gaussians.strategy``'s
step hooks, and return the step's log record. Each record of ``log.jsonl`` and the progress bar
also carries the run's health figures (:mod:`headstudio.train.diagnostics`): N, the densification
statistic, what densification did, the regulariser / guidance gradient ratios on the means and
the scales, ms per step and peak CUDA memory; a run that drifts out of range says so in one
warning line.

Outputs in its run folder (:class:`~headstudio.train.run_folder.RunFolder`, which names every
path and whose lock the trainer holds while it writes): the resolved configuration, the avatar
(written at the end), the checkpoint (everything needed to continue exactly: atomic, every N
steps, on Ctrl-C and at the end; :mod:`headstudio.train.checkpoint`), a preview grid every N
steps (:mod:`headstudio.output.previews`) and one ``log.jsonl`` record per ``log_every`` steps.

A run starts with :meth:`Trainer.new` and continues with :meth:`Trainer.resume`, bit-identically
on the CPU with any thread count (the rigged-gaussians CPU backward sums in a fixed order); on
CUDA the rasterizer's atomic adds make gradients, and so a resumed run, equal only to rounding.

The class is split along its seams, each a mixin it inherits: construction (``new`` /
``resume``) in :mod:`.trainer_build`, checkpoint save / restore and the run's errors in
:mod:`.trainer_state`, the step and its densification glue in :mod:`.trainer_step`; the loop,
its periodic outputs (log record, health, previews) stay here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from flame_core import FlameModel
from rigged_gaussians import strategy
from tqdm.auto import tqdm

from .._signals import deferred_interrupts
from ..avatar import Avatar
from ..cameras import CameraSampler, head_target
from ..config import HeadStudioConfig, config_to_dict, save_config
from ..errors import HeadStudioError
from ..head_motion import training_motion
from ..output.previews import preview_grid, preview_size, save_preview
from .animation_sampler import AnimationSampler
from .batch_sampler import BatchSampler
from .diagnostics import RunMonitor, postfix
from .guidance import Guidance
from .regularization import REGULARIZER_TERMS
from .run_folder import RunFolder
from .trainer_build import TrainerBuild, _head_from_config  # noqa: F401 (commands.generate reads it here)
from .trainer_state import NonFiniteLossError, TrainingInterrupted
from .trainer_step import TrainerStep

__all__ = ["Trainer", "TrainingInterrupted", "NonFiniteLossError"]

log = logging.getLogger(__name__)


class Trainer(TrainerBuild, TrainerStep):
    """Train an avatar: ``Trainer.new(config, prompt, output_dir).train() -> avatar.ply``.

    Build one with :meth:`new` (a fresh run) or :meth:`resume` (continue from
    ``output_dir/checkpoints/last.pt``); the constructor only assembles ready parts.

    Args:
        config: the resolved configuration.
        prompt: the text prompt (needed by F-SDS guidance; stored in the avatar).
        output_dir: the run folder (:class:`~headstudio.train.run_folder.RunFolder`, or its path):
            where the outputs go (see the module docstring).
        head: the head model, on ``device``.
        guidance: what scores the renders.
        avatar: the avatar being trained, on ``device``.
        device: where the avatar renders.
        generator: the CPU generator of the batches and the split offsets.
        progress: show the tqdm progress bar.
        callback: ``callback(trainer, step)`` after every completed step (tests use it to
            interrupt a run).
    """

    def __init__(
        self,
        config: HeadStudioConfig,
        prompt: str | None,
        output_dir: RunFolder | str | Path,
        head: FlameModel,
        guidance: Guidance,
        avatar: Avatar,
        device: torch.device,
        generator: torch.Generator,
        progress: bool = True,
        callback: Callable[[Trainer, int], None] | None = None,
    ) -> None:
        self.folder = output_dir if isinstance(output_dir, RunFolder) else RunFolder(output_dir)
        self.config, self.prompt, self.output_dir = config, prompt, self.folder.path
        self.head, self.guidance, self.avatar = head, guidance, avatar
        self.device, self.generator = device, generator
        self.progress, self.callback = progress, callback
        self.checkpoint_path = self.folder.checkpoint
        self.width = self.height = int(config.train.resolution)
        self.step = 0
        self.num_skipped = 0
        #: ``Avatar.render`` backend (``auto``; ``torch`` forces the pure-PyTorch reference).
        self.render_backend = "auto"
        self._stop_requested = False
        self._last_good_step: int | None = None
        self._check_loss_weights()
        t = config.train
        self.optimizer = torch.optim.Adam(avatar.optimizer_groups(t), betas=tuple(t.betas), eps=t.eps)
        self.batch_sampler = self._batch_sampler()
        self.densifier = strategy.Densifier.create(
            config.densify, avatar.num_gaussians, optimizer=self.optimizer,
            scene_scale=float(config.camera.scene_scale), device=device,
        )  # fmt: skip
        regularized = any(config.loss.weight(k) > 0 for k in REGULARIZER_TERMS)
        self.monitor = RunMonitor(config.densify, device, regularized=regularized)

    def _check_loss_weights(self) -> None:
        """Every term has a ``lambda_`` weight, and the guidance's are not all zero."""
        lc = self.config.loss
        weights = {t: lc.weight(t) for t in (*self.guidance.loss_terms, *REGULARIZER_TERMS)}
        names = self.guidance.loss_terms
        if names and not any(weights[t] > 0 for t in names):
            raise HeadStudioError(
                f"every loss term of the guidance ({', '.join(names)}) has weight 0; set one of "
                f"{', '.join('loss.lambda_' + t.removeprefix('loss_') for t in names)} above 0."
            )

    def _batch_sampler(self) -> BatchSampler:
        cam, t = self.config.camera, self.config.train
        target = cam.target
        if isinstance(target, str):  # "auto": centre of the template head's bounding box (zero
            # shape, so a resumed run with a learned shape frames the same cameras)
            with torch.no_grad():
                target = tuple(head_target(self.head().vertices[0]).tolist())
        self.target = torch.tensor(target, dtype=torch.float32)
        e = int(self.head.num_expression)
        animation = None
        if t.animation:
            animation = AnimationSampler(training_motion(self.head, t.motion_path, seed=int(t.seed)), e)
        cameras = CameraSampler(cam, self.width, self.height, self.target)
        return BatchSampler(cameras, animation, e, t.background)

    # ------------------------------------------------------------------------ loop
    def train(self) -> Path:
        """Run (or continue) training to ``config.train.steps``; returns the avatar path.

        Raises:
            TrainingInterrupted: Ctrl-C (a checkpoint was saved first, or the last one kept).
            NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).
        """
        with self.folder.lock():  # held already when a command runs the trainer
            return self._train()

    def _train(self) -> Path:
        t = self.config.train
        save_config(self.config, self.folder.config)
        total = int(t.steps)
        bar = tqdm(total=total, initial=self.step, disable=not self.progress, unit="it", dynamic_ncols=True)
        started = time.perf_counter()
        self._stop_requested = False
        in_step = False
        try:
            with deferred_interrupts(self._request_stop), bar:
                while self.step < total:
                    in_step = True
                    logs = self.train_step()
                    in_step = False
                    bar.update(1)
                    record = self._after_step(logs, total, time.perf_counter() - started)
                    if record is not None:
                        bar.set_postfix(postfix(record, logs["loss"]), refresh=False)
                    if self._stop_requested:
                        raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            if isinstance(err, TrainingInterrupted):
                raise
            if in_step:  # forced stop in the middle of a step: the state is not consistent
                raise TrainingInterrupted(
                    f"stopped during step {self.step + 1}; the last checkpoint ({self.checkpoint_path}, step "
                    f"{self._last_good_step}) was kept",
                    self.output_dir,
                ) from None
            self.save_checkpoint()
            summary = f"interrupted at step {self.step}/{total}; checkpoint saved to {self.checkpoint_path}"
            raise TrainingInterrupted(summary, self.output_dir) from None
        self.save_checkpoint()
        avatar_path = self.folder.avatar
        self.avatar.save(avatar_path, config=config_to_dict(self.config), prompt=self.prompt)
        log.info(
            "trained %d steps (%d skipped); avatar written to %s", self.step, self.num_skipped, avatar_path
        )
        return avatar_path

    def _request_stop(self) -> bool:
        """A Ctrl-C / SIGTERM arrived: stop after this step; ``True`` if one had already come."""
        again, self._stop_requested = self._stop_requested, True
        return again

    def _after_step(self, logs: dict[str, float], total: int, elapsed: float) -> dict[str, float] | None:
        """The periodic outputs of the loop: log record, preview, checkpoint, callback; returns
        the record written this step, if any."""
        t, s = self.config.train, self.step
        record = None
        if t.log_every and (s % t.log_every == 0 or s == total):
            record = self._log(logs, elapsed)
        if t.preview_every and s % t.preview_every == 0:
            self.save_preview()
        if t.checkpoint_every and s % t.checkpoint_every == 0 and s < total:
            self.save_checkpoint()
        if self.callback is not None:
            self.callback(self, s)
        return record

    def _log(self, logs: dict[str, float], elapsed: float) -> dict[str, float]:
        """Append the step's record, with the run's health figures, to ``log.jsonl``; returns it."""
        rec: dict[str, float] = {"step": self.step, "elapsed_s": round(elapsed, 3)}
        rec.update(self.health())
        rec.update(logs)
        with open(self.folder.log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        return rec

    def health(self) -> dict[str, float]:
        """The health figures since the previous call
        (:meth:`headstudio.train.diagnostics.RunMonitor.record`),
        warning once about any out of range."""
        n = int(self.avatar.num_gaussians)
        return self.monitor.record(self.densifier.state, n, self.step, self.num_skipped)

    # ------------------------------------------------------------------------ previews
    def preview_grid(self, size: int | None = None) -> np.ndarray:
        """``[3·S, 4·S, 3]`` uint8 preview of the avatar (:func:`headstudio.output.previews.preview_grid`)."""
        return preview_grid(self.avatar, size or preview_size(self.width))

    def save_preview(self) -> Path:
        """Write ``previews/step_XXXXX.png`` (atomically); returns its path."""
        path = self.folder.preview(self.step)
        return save_preview(self.avatar, path, preview_size(self.width))
