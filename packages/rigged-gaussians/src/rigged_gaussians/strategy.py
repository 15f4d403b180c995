"""Binding-aware densification in small steps: a gradient statistic, grow (clone, split), prune.

Every Gaussian is bound to one triangle (``face_ids``) and parameterised in that triangle's
local frame (docs/METHOD.md, "Rigged Gaussians"). Clones and split children inherit their
parent's triangle; split children are sampled in the parent's *local* frame, so they stay bound
to it. Pruning never leaves a triangle that had Gaussians without one: if every Gaussian of a
triangle would go, the one with the highest opacity stays.

A training loop calls two hooks, as with gsplat's strategies::

    meta = render(...)                                   # a RasterMeta
    step_pre_backward(meta, config, step)                # keep the 2D-mean gradient
    loss.backward(); optimizer.step()
    params, face_ids, info = step_post_backward(params, face_ids, state, config, step, meta,
                                                optimizer=optimizer, ...)

``step_post_backward`` adds the step to the statistic (:func:`accumulate`), then on the schedule
:func:`grow` and :func:`prune` (densify steps) or :func:`prune` alone (prune steps). Each
operation returns the new parameters, the new ``face_ids`` and a :class:`DensifyInfo`.

Gradient statistic (:func:`accumulate`, one call per optimisation step; ``M = B*C`` cameras),
the normalised view-space gradient of the paper (§4.4) and the public HeadStudio code::

    g[m, n]   = (dL/dx[m, n] * W/2, dL/dy[m, n] * H/2)    # pixel -> NDC units
    s[n]      = sum over cameras m where n is visible of g[m, n]   # summed over the batch
    a[n]      = |s[n]|_2 / sqrt(sum over visible k of |s[k]|_2^2)   # normalised over the step's
                                                                    # visible Gaussians
    accum[n] += a[n],  count[n] += 1                      # only for n visible in some camera
    average   = accum / count                              # compared with grad_threshold

Each step's ``a`` has unit L2 norm over the visible Gaussians, so the statistic does not depend
on the loss's scale (every loss weight x1000 gives the same decisions) nor on the batch size; it
ranks a Gaussian's gradient against the others of the same step. ``max_radii[n]`` tracks the
largest screen radius (pixels) seen since the last densification.

Budget (:attr:`DensifyConfig.max_gaussians`): when the clones and split children would take the
count past it, :func:`grow` grows the candidates with the highest statistic first and stops
before the budget; ``info.n_candidates`` and ``info.budget_bound`` say what was left out.

Schedule (:class:`DensifyConfig`): on steps in ``[densify_from, densify_until]`` (inclusive)
that are multiples of ``densify_every`` it grows and prunes, then the statistics restart; on steps
in ``[prune_from, prune_until]`` that are multiples of ``prune_every`` it only prunes (the
survivors keep their statistics). The defaults give the public HeadStudio code's events, whose
bounds are exclusive (``300 < step < 2100``, ``2400 < step < 3300``): densify at 600, 900, ...,
1800 and prune only at 2700 and 3000.

Arguments shared by :func:`grow`, :func:`prune` and :func:`step_post_backward`:

- ``params``: ``name -> [N, ...]`` tensors (usually ``nn.Parameter``) holding at least
  :data:`PARAM_KEYS`: local ``means [N,3]``, ``quats [N,4]`` (wxyz), ``log_scales [N,3]`` and
  ``opacity_logits [N]`` (opacity = sigmoid); every other entry (colours, ...) is carried along
  row by row. The results are new ``nn.Parameter`` objects (``requires_grad`` as the inputs).
- ``face_ids``: ``[N]`` triangle of each Gaussian. ``state``: the statistics, kept in step with
  the rows (survivors keep theirs, new rows start at zero).
- ``optimizer``: optional Adam whose param groups are named after ``params`` (``group["name"]``),
  updated in place: new parameters, moments kept for the surviving Gaussians and zero for every
  new one, clone or split child (as 3DGS and the public HeadStudio code: a clone that inherited
  its parent's moments would move in lockstep with it); Adam's step count (one per parameter) is
  left as it is.
- ``scene_scale``: world units per scene unit (the trainer's ``camera.scene_scale``, metres);
  ``percent_dense`` and ``max_world_size`` are fractions of the world extent
  ``config.scene_extent * scene_scale``.
- ``sqrt_areas``: ``[F]`` (or ``[B,F]``, first pose used) ``sqrt(area)`` of the triangles, so
  sizes are world sizes ``sqrt(S) exp(log_s)``; without it the local scales ``exp(log_s)``
  (relative to the triangle) decide clone / split and the ``max_world_size`` prune is skipped.
- ``generator``: CPU generator of the split offsets; default: one seeded with ``step``, so a
  resumed run repeats an uninterrupted one exactly.

The module is split: the config, statistics and step report in :mod:`rigged_gaussians._densify_types`,
:func:`grow` / :func:`prune` and their helpers in :mod:`rigged_gaussians._densify_ops`; this module
keeps the statistic, the step hooks and :class:`Densifier`, and exports all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from rigged_gaussians._densify_ops import grow, prune
from rigged_gaussians._densify_types import PARAM_KEYS, DensifyConfig, DensifyInfo, DensifyState
from rigged_gaussians._types import RasterMeta

__all__ = [
    "PARAM_KEYS",
    "DensifyConfig",
    "DensifyInfo",
    "DensifyState",
    "accumulate",
    "grow",
    "prune",
    "step_pre_backward",
    "step_post_backward",
    "Densifier",
]


# ----------------------------------------------------------------------------- the statistic
def accumulate(
    state: DensifyState,
    means2d_grad: Tensor | RasterMeta,
    visible: Tensor | None = None,
    width: int | None = None,
    height: int | None = None,
    radii: Tensor | None = None,
) -> DensifyState:
    """Add one step's screen-space gradients to ``state`` (in place; also returned).

    Args:
        state: the running statistics (an empty ``DensifyState()`` is sized on first use).
        means2d_grad: ``[M,N,2]`` gradient of the loss w.r.t. ``meta.means2d`` (``M = C`` or
            ``B*C`` cameras), or the :class:`RasterMeta` itself after ``meta.means2d.retain_grad()``
            and ``backward`` (then ``visible``, ``width``, ``height`` and ``radii`` come from it).
        visible: ``[M,N]`` bool, which Gaussians each camera saw.
        width, height: image size in pixels (for the pixel -> NDC scaling).
        radii: optional ``[M,N,2]`` screen radii, to track ``max_radii``.

    The statistic is described in the module docstring.
    """
    if isinstance(means2d_grad, RasterMeta):
        meta = means2d_grad
        m2d = meta.means2d
        if not (m2d.is_leaf or m2d.retains_grad) or m2d.grad is None:
            raise ValueError(
                "means2d_grad: meta.means2d has no gradient; call meta.means2d.retain_grad() "
                "before loss.backward()"
            )
        means2d_grad, visible, width, height, radii = (
            meta.means2d.grad, meta.visible, meta.width, meta.height, meta.radii,
        )  # fmt: skip
    if visible is None or width is None or height is None:
        raise ValueError("visible, width, height: required when means2d_grad is a tensor")
    if means2d_grad.dim() != 3 or means2d_grad.shape[-1] != 2:
        raise ValueError(f"means2d_grad: expected shape [M,N,2], got {list(means2d_grad.shape)}")
    M, N, _ = means2d_grad.shape
    if tuple(visible.shape) != (M, N):
        raise ValueError(f"visible: expected shape [{M},{N}] (from means2d_grad), got {list(visible.shape)}")
    dev = means2d_grad.device
    state._sized(N, dev)
    if state.grad_accum.device != dev:
        for name in ("grad_accum", "count", "max_radii"):
            setattr(state, name, getattr(state, name).to(dev))
    with torch.no_grad():
        scale = torch.tensor([width / 2.0, height / 2.0], device=dev, dtype=means2d_grad.dtype)
        vis = visible.to(means2d_grad.dtype)[..., None]
        s = (means2d_grad * scale * vis).sum(0)  # [N,2]
        seen = visible.any(0)
        a = torch.where(seen, s.norm(dim=-1), torch.zeros_like(s[:, 0]))
        a = torch.nan_to_num(a, nan=0.0, posinf=0.0)  # a non-finite gradient adds nothing
        total = a.norm()  # over the visible Gaussians (the others are 0); no sync: 0 stays 0
        a = a / total.clamp_min(torch.finfo(a.dtype).tiny)
        state.grad_accum += a.to(state.grad_accum.dtype)
        state.count += seen.to(state.count.dtype)
        if radii is not None:
            r = radii.amax(dim=(0, 2)).to(state.max_radii.dtype) if radii.numel() else state.max_radii
            torch.maximum(state.max_radii, r, out=state.max_radii)
    return state


# ----------------------------------------------------------------------------- step hooks
def step_pre_backward(meta: RasterMeta, config: DensifyConfig, step: int) -> bool:
    """Before ``loss.backward()``: keep the gradient of ``meta.means2d`` when ``step`` feeds the
    statistic (``config.is_active``); returns whether it does."""
    track = config.is_active(step) and meta.means2d.requires_grad
    if track:
        meta.means2d.retain_grad()
    return track


def step_post_backward(
    params: dict[str, Tensor],
    face_ids: Tensor,
    state: DensifyState,
    config: DensifyConfig,
    step: int,
    meta: RasterMeta,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scene_scale: float = 1.0,
    sqrt_areas: Tensor | Callable[[], Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, Tensor], Tensor, DensifyInfo]:
    """After ``loss.backward()`` (and the optimizer step): add the step to the statistic, then
    grow and prune on densify steps (statistics restart) or prune on prune steps.

    Does nothing unless :func:`step_pre_backward` kept the gradient of ``meta.means2d`` (the
    :class:`RasterMeta` of the step's render). ``step`` is 1-based; ``sqrt_areas`` may be a
    function computing it, called only on a step that grows or prunes (other arguments: module
    docstring).

    Returns:
        ``(params, face_ids, info)``: the inputs themselves and ``info.action == "none"`` off
        the schedule; otherwise new parameters and the counts of the step.
    """
    n = int(face_ids.shape[0])
    if not (config.is_active(step) and meta.means2d.retains_grad):
        return params, face_ids, DensifyInfo(n_before=n, n_after=n)
    accumulate(state, meta)
    densify = config.is_densify_step(step)
    if not (densify or config.is_prune_step(step)):
        return params, face_ids, DensifyInfo(n_before=n, n_after=n)
    areas = sqrt_areas() if callable(sqrt_areas) else sqrt_areas
    kw = {"optimizer": optimizer, "scene_scale": scene_scale, "sqrt_areas": areas}
    if not densify:
        return prune(params, face_ids, state, config, step=step, **kw)
    params, face_ids, grown = grow(params, face_ids, state, config, generator=generator, step=step, **kw)
    params, face_ids, pruned = prune(params, face_ids, state, config, step=step, **kw)
    state.restart(pruned.n_after, params["means"].device)  # statistics restart after densifying (3DGS)
    info = replace(
        pruned, action="densify", n_before=n, n_cloned=grown.n_cloned, n_split=grown.n_split,
        n_candidates=grown.n_candidates, budget_bound=grown.budget_bound,
    )  # fmt: skip
    return params, face_ids, info


# ----------------------------------------------------------------------------- the strategy object
@dataclass(eq=False)
class Densifier:
    """One run's densification, held together as gsplat's strategies hold theirs: the schedule and
    thresholds (``config``), the screen-space statistics (``state``), the optimizer whose Adam
    state follows the Gaussians, and the scene scale. Its two hooks take only what changes from
    step to step; :func:`step_pre_backward` / :func:`step_post_backward` are the same hooks with
    every argument spelled out.

    Attributes:
        config: the schedule and thresholds.
        state: the statistics (:meth:`DensifyState.create` for ``N`` Gaussians).
        optimizer: updated with the parameters on grow / prune (``None``: none to update).
        scene_scale: metres per scene unit (``config.scene_extent`` is in scene units).
    """

    config: DensifyConfig
    state: DensifyState
    optimizer: torch.optim.Optimizer | None = None
    scene_scale: float = 1.0

    @classmethod
    def create(
        cls,
        config: DensifyConfig,
        num_gaussians: int,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scene_scale: float = 1.0,
        device: str | torch.device = "cpu",
    ) -> Densifier:
        """A densifier with empty statistics for ``num_gaussians`` Gaussians on ``device``."""
        return cls(config, DensifyState.create(num_gaussians, device=device), optimizer, float(scene_scale))

    def step_pre_backward(self, meta: RasterMeta, step: int) -> bool:
        """:func:`step_pre_backward` with this densifier's config."""
        return step_pre_backward(meta, self.config, step)

    def step_post_backward(
        self,
        params: dict[str, Tensor],
        face_ids: Tensor,
        step: int,
        meta: RasterMeta,
        *,
        sqrt_areas: Tensor | Callable[[], Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[dict[str, Tensor], Tensor, DensifyInfo]:
        """:func:`step_post_backward` with this densifier's state, config, optimizer and scene
        scale: ``(params, face_ids, info)``."""
        return step_post_backward(
            params, face_ids, self.state, self.config, step, meta, optimizer=self.optimizer,
            scene_scale=self.scene_scale, sqrt_areas=sqrt_areas, generator=generator,
        )  # fmt: skip
