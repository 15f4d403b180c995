"""One training step of a :class:`~headstudio.train.trainer.Trainer` (the numbered stages of
:meth:`TrainerStep.train_step`: batch, render, loss terms, backward, Adam, densify / prune, log
record) and its densification glue. Split out of :mod:`headstudio.train.trainer`, whose
``Trainer`` inherits these methods."""

from __future__ import annotations

import dataclasses
import logging
import math

import rigged_gaussians as rg
import torch
from rigged_gaussians import strategy
from torch import Tensor

from ..avatar import AvatarRender
from ..errors import HeadStudioError
from .batch_sampler import BatchSampler, TrainBatch
from .diagnostics import RunMonitor, StepGradients
from .guidance import GuidanceOutput
from .regularization import REGULARIZER_TERMS, mesh_regularization
from .trainer_state import NonFiniteLossError, TrainerState

__all__ = ["TrainerStep"]

log = logging.getLogger(__name__)


class TrainerStep(TrainerState):
    """The step of a :class:`~headstudio.train.trainer.Trainer` (a mixin; the attributes below are
    the trainer's)."""

    batch_sampler: BatchSampler
    monitor: RunMonitor
    width: int
    height: int
    render_backend: str

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
            batch.viewmats, batch.Ks, self.width, self.height, batch.params(),
            background=batch.backgrounds, backend=self.render_backend,
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
