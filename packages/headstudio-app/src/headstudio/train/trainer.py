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
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rigged_gaussians as rg
import torch
from flame_core import FlameModel
from rigged_gaussians import strategy
from torch import Tensor
from tqdm.auto import tqdm

from .._signals import deferred_interrupts
from ..avatar import Avatar, AvatarRender
from ..cameras import CameraSampler, head_target
from ..config import HeadStudioConfig, config_to_dict, save_config
from ..errors import HeadStudioError
from ..head_motion import training_motion
from ..output.previews import preview_grid, preview_size, save_preview
from .animation_sampler import AnimationSampler
from .batch_sampler import BatchSampler, TrainBatch
from .checkpoint import (
    Checkpoint,
    DamagedCheckpointError,
    load_checkpoint,
    resumed_config,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .diagnostics import RunMonitor, StepGradients, postfix
from .guidance import Guidance, GuidanceOutput, build_guidance
from .regularization import REGULARIZER_TERMS, mesh_regularization
from .run_folder import RunFolder
from .runtime import resolve_device

__all__ = ["Trainer", "TrainingInterrupted", "NonFiniteLossError"]

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


def _head_from_config(config: HeadStudioConfig) -> FlameModel:
    """``config.head.flame_path`` (else ``HEADSTUDIO_FLAME_PATH``, else the procedural head)."""
    h = config.head
    try:
        return FlameModel.resolve(h.flame_path, num_shape=h.num_shape, num_expression=h.num_expression)
    except (OSError, ValueError) as err:
        raise HeadStudioError(f"could not load the head model: {err}") from err


class Trainer:
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

    # ------------------------------------------------------------------------ construction
    @classmethod
    def new(
        cls,
        config: HeadStudioConfig,
        prompt: str | None = None,
        output_dir: RunFolder | str | Path = "outputs/run",
        *,
        guidance: Guidance | None = None,
        head: FlameModel | None = None,
        progress: bool = True,
        callback: Callable[[Trainer, int], None] | None = None,
    ) -> Trainer:
        """A fresh run: seeds every random generator, initialises the avatar on the neutral head.

        Args:
            guidance: a ready guidance (e.g. F-SDS with tiny test models, or image guidance);
                ``None`` builds the one named by ``config.guidance.kind``.
            head: the head model; ``None`` resolves ``config.head.flame_path`` (else the
                procedural head).
            (the rest as the class.)

        Raises:
            HeadStudioError: ``output_dir`` already holds a run (:meth:`RunFolder.require_new`),
                or a part cannot be built.
        """
        out = output_dir if isinstance(output_dir, RunFolder) else RunFolder(output_dir)
        out.require_new()
        seed = int(config.train.seed)
        device = resolve_device(config.train.device)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002
        random.seed(seed)
        generator = torch.Generator().manual_seed(seed + 1)
        head = (head if head is not None else _head_from_config(config)).to(device)
        guidance = guidance if guidance is not None else build_guidance(config, head, device, prompt)
        init_gen = torch.Generator().manual_seed(seed)
        avatar = Avatar.initialize(head, config.init, generator=init_gen).to(device)
        guidance = cls._ready(guidance, prompt, device)
        return cls(config, prompt, out, head, guidance, avatar, device, generator, progress, callback)

    @classmethod
    def resume(
        cls,
        output_dir: RunFolder | str | Path,
        config: HeadStudioConfig | None = None,
        prompt: str | None = None,
        *,
        guidance: Guidance | None = None,
        head: FlameModel | None = None,
        progress: bool = True,
        callback: Callable[[Trainer, int], None] | None = None,
    ) -> Trainer:
        """Continue the run in ``output_dir`` from its checkpoint, exactly where it stopped.

        The checkpoint's configuration is used, with ``train.steps`` and ``train.device`` from
        ``config`` when given; ``prompt`` defaults to the run's.

        Raises:
            HeadStudioError: no readable checkpoint, or a head model other than the run's
                (``argument="head"``).
        """
        out = output_dir if isinstance(output_dir, RunFolder) else RunFolder(output_dir)
        path = out.checkpoint
        ckpt = load_checkpoint(path)
        config = resumed_config(config, ckpt, path)
        prompt = prompt if prompt is not None else ckpt.prompt
        device = resolve_device(config.train.device)
        generator = torch.Generator().manual_seed(int(config.train.seed) + 1)
        head = (head if head is not None else _head_from_config(config)).to(device)
        got = str(head.identity_hash())
        if ckpt.head_hash not in (None, got):
            raise HeadStudioError(
                f"the run in '{out.path}' was made on another head model ({ckpt.head_hash[:12]}…, this one "
                "is "
                f"{got[:12]}…); resume it with the head model of the original run (head.flame_path or "
                "HEADSTUDIO_FLAME_PATH).",
                argument="head",
            )
        guidance = guidance if guidance is not None else build_guidance(config, head, device, prompt)
        g = ckpt.gaussians
        try:  # the checkpoint's fields are checked on loading; what only this head can tell
            avatar = Avatar(
                head,
                g["means"],
                g["quats"],
                g["log_scales"],
                g["opacity_logits"],
                g["sh"],
                ckpt.face_ids,
                ckpt.shape,
            ).to(device)
        except HeadStudioError as err:
            raise DamagedCheckpointError(path, err.message.rstrip(".")) from None
        guidance = cls._ready(guidance, prompt, device)
        trainer = cls(config, prompt, out, head, guidance, avatar, device, generator, progress, callback)
        try:
            trainer._restore(ckpt)
        except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as err:
            detail = " ".join(str(err).split())[:160]
            raise DamagedCheckpointError(path, f"its state does not fit the run ({detail})") from None
        return trainer

    @staticmethod
    def _ready(guidance: Guidance, prompt: str | None, device: torch.device) -> Guidance:
        guidance.set_default_prompt(prompt)
        return guidance.to(device)

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

    # ------------------------------------------------------------------------ one step
    def sample_batch(self) -> TrainBatch:
        """The poses, cameras and backgrounds of the next step (drawn from the trainer's generator)."""
        b = int(self.config.train.batch_size)
        return self.guidance.sample_batch(self.batch_sampler, b, self.generator).to(self.device)

    def train_step(self) -> dict[str, float]:
        """One optimisation step (``self.step`` counts completed steps); returns its log record."""
        step = self.step + 1
        self.monitor.start_step()
        # 1. sample a batch
        batch = self.sample_batch()
        # 2. render (the densification hook keeps the screen-space gradient it accumulates)
        out = self._render(batch)
        self.densifier.step_pre_backward(out.meta, step)
        # 3. losses: the terms, weighed in one place
        g, terms = self._loss_terms(out, batch, step)
        loss = self.weighted_loss(terms)
        logs = self._step_logs(terms, g, loss)
        if g.skipped:  # no finite guidance gradient: nothing changes but the counter
            self.num_skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
            self.step = step
            self.monitor.end_step(None, None)
            return logs
        # 4. backward (keeping the regulariser's shares of the means' and the scales' gradients for
        # the diagnostics)
        reg_means, reg_scales = self._regularizer_grads(terms)
        loss.backward()
        grads = StepGradients.split(
            self.avatar.means.grad, reg_means, self.avatar.log_scales.grad, reg_scales
        )
        logs.update(grads.logs())
        # 5. optimiser step (the position rate decays; the FLAME shape stops learning at shape_stop_step)
        if step > self.config.train.shape_stop_step:
            self.avatar.shape.grad = None
        self._set_position_lr(self.step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        # 6. densify / prune on the schedule
        info = self._densify(step, out)
        # 7. log: the step's record (train() writes it to log.jsonl every train.log_every steps)
        self.step = step
        self.monitor.end_step(grads, info)
        return logs

    def _render(self, batch: TrainBatch) -> AvatarRender:
        return self.avatar.render(
            batch.viewmats, batch.Ks, self.width, self.height, background=batch.backgrounds,
            backend=self.render_backend, **batch.flame,
        )  # fmt: skip

    def _loss_terms(
        self, out: AvatarRender, batch: TrainBatch, step: int
    ) -> tuple[GuidanceOutput, dict[str, Tensor]]:
        """The guidance's output and every unweighted ``loss_*`` term of the step."""
        renders = out.rgb[:, 0].permute(0, 3, 1, 2)  # [B, 3, H, W]
        g = self.guidance(renders, batch, step, out.vertices.detach())
        terms = dict(g.losses)
        lc, rc = self.config.loss, self.config.regularizer
        if any(lc.weight(t) > 0 for t in REGULARIZER_TERMS):
            p = self.avatar.gaussian_params()
            reg = mesh_regularization(
                p["means"], p["log_scales"], self.avatar.face_ids, out.vertices, self.head.faces,
                form=rc.form, unit=float(self.config.camera.scene_scale),
            )  # fmt: skip
            if step < rc.pos_from:  # the position term starts at regularizer.pos_from
                del reg["loss_pos"]
            terms.update(reg)
        return g, terms

    def _regularizer_grads(self, terms: dict[str, Tensor]) -> tuple[Tensor | None, Tensor | None]:
        """``([N, 3], [N, 3])`` gradients of the weighted position term on the local means and of
        the weighted scale term on the log-scales (``None`` for a term that is off this step:
        weight 0 or before ``regularizer.pos_from``); the graph is kept for the whole loss's
        backward. (The position term reads only the means and the scale term only the scales.)"""
        lc = self.config.loss
        out: list[Tensor | None] = []
        for key, param in (("loss_pos", self.avatar.means), ("loss_scale", self.avatar.log_scales)):
            w = lc.weight(key)
            if key not in terms or w == 0:
                out.append(None)
                continue
            (grad,) = torch.autograd.grad(w * terms[key], param, retain_graph=True, allow_unused=True)
            out.append(torch.zeros_like(param) if grad is None else grad)
        return out[0], out[1]

    def _set_position_lr(self, completed_steps: int) -> None:
        """The means' learning rate of the next update: ``train.position_lr(completed_steps)``."""
        lr = self.config.train.position_lr(completed_steps)
        for group in self.optimizer.param_groups:
            if group.get("name") == "means":
                group["lr"] = lr

    def weighted_loss(self, terms: dict[str, Tensor]) -> Tensor:
        """``Σ lambda_<name> · loss_<name>`` over ``terms``: the one place weights are applied
        (a term whose weight is 0 is left out)."""
        weighted = [w * v for k, v in terms.items() if (w := self.config.loss.weight(k)) != 0]
        if not weighted:
            raise HeadStudioError("every loss term of this step has weight 0; nothing to train.")
        total = weighted[0]
        for part in weighted[1:]:
            total = total + part
        return total

    def _step_logs(self, terms: dict[str, Tensor], g: GuidanceOutput, loss: Tensor) -> dict[str, float]:
        """The log record of a step: unweighted terms, the guidance's logs, the total.

        Raises:
            NonFiniteLossError: the total is NaN/inf (nothing was changed).
        """
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs.update(g.logs)
        logs["loss"] = float(loss.detach())
        if not math.isfinite(logs["loss"]):
            values = ", ".join(f"{k}={v:.4g}" for k, v in logs.items())
            raise NonFiniteLossError(self._non_finite_message(f"the loss ({values})"))
        if g.skipped:
            logs["skipped"] = 1.0
        return logs

    def _densify(self, step: int, out: AvatarRender) -> strategy.DensifyInfo:
        """``rigged_gaussians.strategy``'s post-backward hook on the avatar's Gaussians; says in
        one warning line each time the budget ``densify.max_gaussians`` binds."""

        def sqrt_areas() -> Tensor:  # of the batch's first pose, only on densify / prune steps
            verts = out.vertices[:1].detach()
            return rg.triangle_frames(verts, self.head.faces.to(verts.device)).sqrt_areas[0]

        a = self.avatar
        params, face_ids, info = self.densifier.step_post_backward(
            a.gaussian_params(), a.face_ids, step, out.meta, sqrt_areas=sqrt_areas, generator=self.generator
        )
        if info.action != "none":
            self.avatar.set_gaussians(params, face_ids)
            log.info("step %d: %s", step, dataclasses.asdict(info))
            self.monitor.check_budget(info.n_after)
        if info.budget_bound:
            log.warning(
                "step %d: the Gaussian budget bound: %d of %d densification candidates grown (highest "
                "statistic first), N = %d of densify.max_gaussians = %d.",
                step, info.n_cloned + info.n_split, info.n_candidates, info.n_after,
                self.densifier.config.max_gaussians,
            )  # fmt: skip
        return info

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
