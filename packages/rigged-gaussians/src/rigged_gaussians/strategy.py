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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor, nn

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

#: The parameters every operation reads: local means, quaternions, log-scales and opacity logits.
PARAM_KEYS = ("means", "quats", "log_scales", "opacity_logits")


@dataclass
class DensifyConfig:
    """Densification schedule and thresholds (defaults: the public HeadStudio code, docs/METHOD.md).

    Sizes are fractions of the scene's extent: ``scene_extent`` scene units, which the caller
    turns into world units with its ``scene_scale`` (world units per scene unit).

    Attributes:
        enabled: densify and prune at all (``False``: the hooks do nothing).
        grad_threshold: densify Gaussians whose average normalised gradient (dimensionless: each
            step's values have unit L2 norm over the visible Gaussians) is ``>=`` this.
        densify_from, densify_until, densify_every: grow + prune on steps in
            ``[densify_from, densify_until]`` (inclusive) that are multiples of
            ``densify_every`` (defaults: 600, 900, ..., 1800, the public code's events).
        prune_from, prune_until, prune_every: the prune-only phase (defaults: 2700 and 3000).
        min_opacity: prune Gaussians whose (activated) opacity is below this.
        max_screen_size: prune Gaussians whose screen radius (pixels of the training render,
            max since the last densification) exceeds this, from step ``screen_size_from`` on;
            0 disables.
        max_world_size: prune Gaussians whose largest world scale exceeds
            ``max_world_size * scene_extent`` (only when ``sqrt_areas`` is given); 0 disables.
        percent_dense: Gaussians whose largest world scale is ``<= percent_dense * scene_extent``
            are cloned, larger ones split.
        split_factor: children per split Gaussian.
        split_scale_divisor: children's scales are the parent's divided by this
            (3DGS: ``0.8 * split_factor``).
        max_gaussians: the budget: growing never takes the count above it (highest statistic
            first); 0 means no budget.
        scene_extent: the scene's extent in scene units (the public code's ``cameras_extent``);
            the world extent is ``scene_extent * scene_scale``.
        screen_size_from: the step from which ``max_screen_size`` prunes (public code: 1500).
    """

    enabled: bool = True
    grad_threshold: float = 0.001
    densify_from: int = 600
    densify_until: int = 1800
    densify_every: int = 300
    prune_from: int = 2700
    prune_until: int = 3000
    prune_every: int = 300
    min_opacity: float = 0.005
    max_screen_size: float = 60.0
    max_world_size: float = 0.03
    percent_dense: float = 0.01
    split_factor: int = 2
    split_scale_divisor: float = 1.6
    max_gaussians: int = 500_000
    scene_extent: float = 4.0
    screen_size_from: int = 1500

    def __post_init__(self) -> None:
        # "<name>: expected <what>, got <value>": headstudio's config shows <what> for its key
        for name in ("densify_every", "prune_every", "split_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        if self.split_scale_divisor <= 0:
            raise ValueError(
                f"split_scale_divisor: expected a positive number, got {self.split_scale_divisor}"
            )
        if self.max_gaussians < 0:
            raise ValueError(
                f"max_gaussians: expected an integer >= 0 (0: no budget), got {self.max_gaussians}"
            )
        if self.scene_extent <= 0:
            raise ValueError(
                f"scene_extent: expected a positive number (scene units), got {self.scene_extent}"
            )

    def is_densify_step(self, step: int) -> bool:
        """Whether ``step`` grows (and prunes)."""
        return (
            self.enabled
            and self.densify_from <= step <= self.densify_until
            and step % self.densify_every == 0
        )

    def is_prune_step(self, step: int) -> bool:
        """Whether ``step`` only prunes."""
        return (
            self.enabled
            and not self.is_densify_step(step)
            and self.prune_from <= step <= self.prune_until
            and step % self.prune_every == 0
        )

    def is_active(self, step: int) -> bool:
        """Whether ``step`` feeds the statistic (a densify or prune step is still to come)."""
        return self.enabled and step <= max(self.densify_until, self.prune_until)


def _empty() -> Tensor:
    return torch.zeros(0)


@dataclass
class DensifyState:
    """Running statistics per Gaussian (all ``[N]``; created lazily by :func:`accumulate`).

    Attributes:
        grad_accum: sum over steps of the normalised gradient norm.
        count: steps in which the Gaussian was visible.
        max_radii: largest screen radius in pixels since the last densification.
    """

    grad_accum: Tensor = field(default_factory=_empty)
    count: Tensor = field(default_factory=_empty)
    max_radii: Tensor = field(default_factory=_empty)

    @classmethod
    def create(cls, n: int, device: str | torch.device = "cpu") -> DensifyState:
        """Zero statistics for ``n`` Gaussians."""
        z = torch.zeros(n, device=device)
        return cls(z.clone(), z.clone(), z.clone())

    @property
    def num_gaussians(self) -> int:
        return int(self.grad_accum.shape[0])

    def average_grad(self) -> Tensor:
        """``grad_accum / count`` (0 where never visible)."""
        return self.grad_accum / self.count.clamp(min=1)

    def restart(self, n: int, device: str | torch.device) -> None:
        """Zero statistics for ``n`` Gaussians (after a densification)."""
        fresh = DensifyState.create(n, device)
        self.grad_accum, self.count, self.max_radii = fresh.grad_accum, fresh.count, fresh.max_radii

    def _keep_rows(self, keep: Tensor, n_new: int = 0) -> None:
        """Keep the rows ``keep`` (``[N]`` bool), then append ``n_new`` zero rows, on ``keep``'s device."""
        for name in ("grad_accum", "count", "max_radii"):
            t = getattr(self, name).to(keep.device)
            setattr(self, name, torch.cat([t[keep], t.new_zeros(n_new)]))

    def _sized(self, n: int, device: str | torch.device) -> None:
        """Create zero statistics on first use; check ``n`` against the tracked Gaussians."""
        if self.num_gaussians == 0 and n > 0:
            self.restart(n, device)
        if self.num_gaussians != n:
            raise ValueError(
                f"state: tracks {self.num_gaussians} Gaussians, the Gaussians have N={n}; use the "
                "state updated by grow / prune with the current Gaussians"
            )


@dataclass
class DensifyInfo:
    """What one densification step did.

    Attributes:
        action: ``"none"`` (off the schedule), ``"densify"`` (grow and prune) or ``"prune"``.
        n_before: Gaussians before the step.
        n_cloned: Gaussians copied (small, high gradient).
        n_split: Gaussians replaced by ``split_factor`` children (large, high gradient).
        n_pruned: Gaussians removed (low opacity, too large on screen or in the world).
        n_rescued: Gaussians kept although pruned, the best of a triangle that would be empty.
        n_after: Gaussians after the step.
        n_candidates: Gaussians whose statistic reached the threshold (grown unless the budget
            bound).
        budget_bound: the budget ``max_gaussians`` left some candidates out.
    """

    action: Literal["none", "densify", "prune"] = "none"
    n_before: int = 0
    n_cloned: int = 0
    n_split: int = 0
    n_pruned: int = 0
    n_rescued: int = 0
    n_after: int = 0
    n_candidates: int = 0
    budget_bound: bool = False


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


# ----------------------------------------------------------------------------- helpers
def _quat_to_rotmat(q: Tensor) -> Tensor:
    q = q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)  # fmt: skip


def _check_inputs(params: dict[str, Tensor], face_ids: Tensor, state: DensifyState) -> tuple[int, Tensor]:
    """``(N, face_ids as long on the parameters' device)``; sizes an empty ``state``. Raises
    ``ValueError`` naming a missing key, a wrong row count or a state of another ``N``."""
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(f"params: missing {missing}; expected keys {list(PARAM_KEYS)}")
    n = params["means"].shape[0]
    for k, v in params.items():
        if v.shape[0] != n:
            raise ValueError(f"params['{k}']: expected {n} rows (from 'means'), got {list(v.shape)}")
    if tuple(face_ids.shape) != (n,):
        raise ValueError(f"face_ids: expected shape [{n}], got {list(face_ids.shape)}")
    state._sized(n, face_ids.device)
    return int(n), face_ids.to(params["means"].device).long()


def _world_size(log_scales: Tensor, face_ids: Tensor, sqrt_areas: Tensor | None) -> Tensor:
    """``[N]`` largest scale of each Gaussian: world (``sqrt(S) exp(log_s)``) with ``sqrt_areas``
    (``[F]`` or ``[B,F]``, first pose), else local (``exp(log_s)``)."""
    s = log_scales.exp().amax(-1)
    if sqrt_areas is not None:
        sa = sqrt_areas if sqrt_areas.dim() == 1 else sqrt_areas[0]
        s = s * sa.to(s.device, s.dtype)[face_ids]
    return s


def _opacity(params: dict[str, Tensor]) -> Tensor:
    """``[N]`` activated opacities of ``params["opacity_logits"]``."""
    logits = params["opacity_logits"].detach()
    return torch.sigmoid(logits.reshape(logits.shape[0], -1)[:, 0])


def _protect_triangles(remove: Tensor, face_ids: Tensor, score: Tensor, faces_before: Tensor) -> Tensor:
    """Un-remove, for each triangle of ``faces_before`` left empty, its highest-``score`` Gaussian
    (the first of equals)."""
    if faces_before.numel() == 0:
        return remove
    F = int(max(int(face_ids.max()) + 1 if face_ids.numel() else 0, int(faces_before.max()) + 1))
    had = torch.zeros(F, dtype=torch.bool, device=face_ids.device)
    had[faces_before] = True
    has = torch.zeros(F, dtype=torch.bool, device=face_ids.device)
    has[face_ids[~remove]] = True
    empty = had & ~has
    if not bool(empty.any()):
        return remove
    cand = empty[face_ids]
    s = torch.where(cand, score, torch.full_like(score, -math.inf))
    best = torch.full((F,), -math.inf, dtype=score.dtype, device=score.device)
    best = best.scatter_reduce(0, face_ids, s, reduce="amax")
    is_best = cand & (s == best[face_ids])
    idx = is_best.nonzero(as_tuple=True)[0]
    first = torch.full((F,), face_ids.numel(), dtype=torch.long, device=face_ids.device)
    first = first.scatter_reduce(0, face_ids[idx], idx, reduce="amin")
    rescue = first[empty]
    out = remove.clone()
    out[rescue] = False
    return out


def _update_optimizer(
    optimizer: torch.optim.Optimizer,
    old: dict[str, Tensor],
    new: dict[str, Tensor],
    src: Tensor,
    zero_rows: Tensor | None,
) -> None:
    """Point the optimizer's groups at ``new`` params; moments gathered by ``src``, zeroed rows."""
    for group in optimizer.param_groups:
        name = group.get("name")
        if name not in new:
            continue
        if len(group["params"]) != 1 or group["params"][0] is not old[name]:
            raise ValueError(f"optimizer: group '{name}' must hold exactly the parameter params['{name}']")
        p_old = group["params"][0]
        p_new = new[name]
        st = optimizer.state.pop(p_old, None)
        if st is not None:
            for k, v in list(st.items()):
                if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == p_old.shape[0]:
                    g = v[src].clone()
                    if zero_rows is not None:
                        g[zero_rows] = 0
                    st[k] = g
            optimizer.state[p_new] = st
        group["params"][0] = p_new


def _select(
    params: dict[str, Tensor],
    values: dict[str, Tensor],
    optimizer: torch.optim.Optimizer | None,
    src: Tensor,
    zero_rows: Tensor | None = None,
) -> dict[str, Tensor]:
    """New parameters ``values[name]`` (``nn.Parameter`` where ``params[name]`` was one, with its
    ``requires_grad``); the optimizer's moments follow rows ``src`` (``zero_rows`` start at 0)."""
    out: dict[str, Tensor] = {}
    for name, t in values.items():
        old = params[name]
        t = t.contiguous()
        out[name] = nn.Parameter(t, requires_grad=old.requires_grad) if isinstance(old, nn.Parameter) else t
    if optimizer is not None:
        _update_optimizer(optimizer, params, out, src, zero_rows)
    return out


# ----------------------------------------------------------------------------- operations
def grow(
    params: dict[str, Tensor],
    face_ids: Tensor,
    state: DensifyState,
    config: DensifyConfig,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scene_scale: float = 1.0,
    sqrt_areas: Tensor | None = None,
    generator: torch.Generator | None = None,
    step: int = 0,
) -> tuple[dict[str, Tensor], Tensor, DensifyInfo]:
    """Clone and split the Gaussians whose average gradient reaches ``config.grad_threshold``
    (arguments: module docstring; ``step`` seeds the default generator).

    Those with ``max world scale <= percent_dense * scene_extent * scene_scale`` are cloned (a
    copy of the parameters, with zero Adam moments); larger ones are replaced by
    ``split_factor`` children with means ``mu + R(q) (eps * s)``, ``eps ~ N(0, I)``, in the
    parent's local frame, and scales ``s / split_scale_divisor`` (zero Adam moments too). With a
    budget (``config.max_gaussians > 0``) the candidates are grown in decreasing order of their
    statistic while the count stays within it.

    Returns:
        ``(new_params, new_face_ids, info)``: rows ordered as the kept originals, the clones,
        then the children; ``info.action == "densify"``.
    """
    n, fid = _check_inputs(params, face_ids, state)
    dev = fid.device
    with torch.no_grad():
        vals = {k: v.detach() for k, v in params.items()}
        average = state.average_grad().to(dev)
        high = average >= config.grad_threshold
        extent = config.scene_extent * scene_scale
        small = _world_size(vals["log_scales"], fid, sqrt_areas) <= config.percent_dense * extent
        n_candidates = int(high.sum())
        high, bound = _within_budget(high, small, average, n, config)
        clone_idx = (high & small).nonzero(as_tuple=True)[0]
        split_idx = (high & ~small).nonzero(as_tuple=True)[0]
        kept = torch.ones(n, dtype=torch.bool, device=dev)
        kept[split_idx] = False
        child_src = split_idx.repeat(config.split_factor)
        src = torch.cat([kept.nonzero(as_tuple=True)[0], clone_idx, child_src])
        new_vals = {name: v[src].clone() for name, v in vals.items()}
        n_kept = int(kept.sum())
        is_child = torch.zeros(src.numel(), dtype=torch.bool, device=dev)
        is_child[src.numel() - child_src.numel() :] = True
        is_new = torch.zeros(src.numel(), dtype=torch.bool, device=dev)
        is_new[n_kept:] = True  # clones and split children: zero Adam moments
        if child_src.numel():
            mu = vals["means"][child_src]
            ls = vals["log_scales"][child_src]
            R = _quat_to_rotmat(vals["quats"][child_src])
            gen = generator if generator is not None else torch.Generator().manual_seed(int(step))
            eps = torch.randn(mu.shape, generator=gen, dtype=mu.dtype, device="cpu").to(dev)
            new_vals["means"][is_child] = mu + (R @ (eps * ls.exp())[..., None])[..., 0]
            new_vals["log_scales"][is_child] = ls - math.log(config.split_scale_divisor)
        state._keep_rows(kept, n_new=src.numel() - n_kept)
    new_params = _select(params, new_vals, optimizer, src, is_new)
    new_face_ids = fid[src].to(face_ids.dtype).to(face_ids.device)
    info = DensifyInfo(
        action="densify",
        n_before=n,
        n_cloned=int(clone_idx.numel()),
        n_split=int(split_idx.numel()),
        n_after=int(src.numel()),
        n_candidates=n_candidates,
        budget_bound=bound,
    )
    return new_params, new_face_ids, info


def _within_budget(
    high: Tensor, small: Tensor, average: Tensor, n: int, config: DensifyConfig
) -> tuple[Tensor, bool]:
    """``(candidates [N] bool, whether the budget left some out)``: the candidates ``high`` if
    growing them all keeps the count within ``config.max_gaussians`` (a clone adds one Gaussian,
    a split ``split_factor - 1``), else those with the highest ``average`` first, as many as fit."""
    if config.max_gaussians <= 0:
        return high, False
    idx = high.nonzero(as_tuple=True)[0]
    cost = torch.where(small[idx], 1, config.split_factor - 1)
    room = max(int(config.max_gaussians) - n, 0)
    if int(cost.sum()) <= room:
        return high, False
    order = torch.sort(average[idx], descending=True, stable=True).indices
    take = idx[order][cost[order].cumsum(0) <= room]
    out = torch.zeros_like(high)
    out[take] = True
    return out, True


def prune(
    params: dict[str, Tensor],
    face_ids: Tensor,
    state: DensifyState,
    config: DensifyConfig,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scene_scale: float = 1.0,
    sqrt_areas: Tensor | None = None,
    step: int | None = None,
) -> tuple[dict[str, Tensor], Tensor, DensifyInfo]:
    """Remove Gaussians with opacity ``< min_opacity``, screen radius ``> max_screen_size``
    (``state.max_radii``; only from ``config.screen_size_from`` on when ``step`` is given) or
    world scale ``> max_world_size * scene_extent * scene_scale``, except the best
    (highest-opacity) Gaussian of a triangle that would otherwise be left empty (arguments:
    module docstring).

    Returns:
        ``(new_params, new_face_ids, info)`` with ``info.action == "prune"``.
    """
    n, fid = _check_inputs(params, face_ids, state)
    with torch.no_grad():
        opac = _opacity(params)
        radii = state.max_radii.to(fid.device)
        remove = opac < config.min_opacity
        if config.max_screen_size > 0 and (step is None or step >= config.screen_size_from):
            remove |= radii > config.max_screen_size
        if config.max_world_size > 0 and sqrt_areas is not None:
            size = _world_size(params["log_scales"].detach(), fid, sqrt_areas)
            remove |= size > config.max_world_size * config.scene_extent * scene_scale
        keep = ~_protect_triangles(remove, fid, opac, torch.unique(fid))
        src = keep.nonzero(as_tuple=True)[0]
        state._keep_rows(keep)
    new_params = _select(params, {k: v.detach()[keep] for k, v in params.items()}, optimizer, src)
    info = DensifyInfo(
        action="prune",
        n_before=n,
        n_pruned=int((~keep).sum()),
        n_rescued=int((remove & keep).sum()),
        n_after=int(keep.sum()),
    )
    return new_params, face_ids[keep.to(face_ids.device)], info


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
