"""Binding-aware densification: accumulate screen-space gradients, then clone, split and prune.

Every Gaussian is bound to one triangle (``face_ids``) and parameterised in that triangle's
local frame (PAPER.md, F-3DGS). Clones and split children inherit their parent's triangle; split
children are sampled in the parent's *local* frame, so they stay bound to it. Pruning never leaves
a triangle that had Gaussians without one: if every Gaussian of a triangle would go, the one with
the highest opacity stays.

Gradient statistic (:func:`accumulate`, one call per optimisation step; ``M = B*C`` cameras)::

    g[m, n]   = (dL/dx[m, n] * W/2, dL/dy[m, n] * H/2)    # pixel -> NDC units ("normalised")
    s[n]      = sum over cameras m where n is visible of g[m, n]   # summed over the batch
    accum[n] += |s[n]|_2,  count[n] += 1                  # only for n visible in some camera
    average   = accum / count                              # compared with grad_threshold

(the NDC scaling makes the threshold independent of the resolution, as 3DGS/gsplat; the public
HeadStudio code's 0.002 applies to this statistic). ``max_radii[n]`` tracks the largest screen
radius (pixels) seen since the last densification.

Schedule (:func:`densify_and_prune`, call it every step after ``optimizer.step()``): on steps in
``[densify_from, densify_until]`` that are multiples of ``densify_every`` it densifies and prunes;
on steps in ``[prune_from, prune_until]`` that are multiples of ``prune_every`` it only prunes;
otherwise it returns the inputs unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rigged_gaussians._types import RasterMeta

__all__ = ["DensifyConfig", "DensifyState", "accumulate", "densify_and_prune"]


@dataclass
class DensifyConfig:
    """Densification schedule and thresholds (defaults: PAPER.md / the public HeadStudio code).

    Attributes:
        grad_threshold: densify Gaussians whose average normalised gradient is ``>=`` this.
        densify_from, densify_until, densify_every: densify + prune on steps in
            ``[densify_from, densify_until]`` that are multiples of ``densify_every``.
        prune_from, prune_until, prune_every: the prune-only phase.
        min_opacity: prune Gaussians whose (activated) opacity is below this.
        max_screen_size: prune Gaussians whose screen radius (pixels, max since the last
            densification) exceeds this; 0 disables.
        max_world_size: prune Gaussians whose largest world scale exceeds
            ``max_world_size * scene_scale`` (only when ``sqrt_areas`` is given); 0 disables.
        percent_dense: Gaussians whose largest world scale is ``<= percent_dense * scene_scale``
            are cloned, larger ones split.
        split_factor: children per split Gaussian.
        split_scale_divisor: children's scales are the parent's divided by this
            (3DGS: ``0.8 * split_factor``).
        means_key, quats_key, log_scales_key, opacity_key: names of the parameters in ``params``.
        opacity_is_logit: ``params[opacity_key]`` holds logits (opacity = sigmoid) rather than
            activated opacities.
    """

    grad_threshold: float = 0.002
    densify_from: int = 300
    densify_until: int = 2100
    densify_every: int = 300
    prune_from: int = 2400
    prune_until: int = 3300
    prune_every: int = 300
    min_opacity: float = 0.005
    max_screen_size: float = 60.0
    max_world_size: float = 0.1
    percent_dense: float = 0.01
    split_factor: int = 2
    split_scale_divisor: float = 1.6
    means_key: str = "means"
    quats_key: str = "quats"
    log_scales_key: str = "log_scales"
    opacity_key: str = "opacity_logits"
    opacity_is_logit: bool = True

    def __post_init__(self) -> None:
        for name in ("densify_every", "prune_every", "split_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.split_scale_divisor <= 0:
            raise ValueError(f"split_scale_divisor: expected > 0, got {self.split_scale_divisor}")

    def is_densify_step(self, step: int) -> bool:
        """Whether ``step`` densifies (and prunes)."""
        return self.densify_from <= step <= self.densify_until and step % self.densify_every == 0

    def is_prune_step(self, step: int) -> bool:
        """Whether ``step`` only prunes."""
        return (
            not self.is_densify_step(step)
            and self.prune_from <= step <= self.prune_until
            and step % self.prune_every == 0
        )


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

    def reset(self) -> None:
        """Zero every statistic (same ``N``)."""
        for t in (self.grad_accum, self.count, self.max_radii):
            t.zero_()


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
    if state.num_gaussians == 0 and N > 0:
        fresh = DensifyState.create(N, dev)
        state.grad_accum, state.count, state.max_radii = fresh.grad_accum, fresh.count, fresh.max_radii
    if state.num_gaussians != N:
        raise ValueError(
            f"state: tracks {state.num_gaussians} Gaussians but the gradient has N={N}; "
            "use the state returned with the current Gaussians by densify_and_prune"
        )
    if state.grad_accum.device != dev:
        for name in ("grad_accum", "count", "max_radii"):
            setattr(state, name, getattr(state, name).to(dev))
    with torch.no_grad():
        scale = torch.tensor([width / 2.0, height / 2.0], device=dev, dtype=means2d_grad.dtype)
        vis = visible.to(means2d_grad.dtype)[..., None]
        s = (means2d_grad * scale * vis).sum(0)  # [N,2]
        seen = visible.any(0)
        state.grad_accum += torch.where(seen, s.norm(dim=-1), torch.zeros_like(s[:, 0])).to(
            state.grad_accum.dtype
        )
        state.count += seen.to(state.count.dtype)
        if radii is not None:
            r = radii.amax(dim=(0, 2)).to(state.max_radii.dtype) if radii.numel() else state.max_radii
            torch.maximum(state.max_radii, r, out=state.max_radii)
    return state


# ----------------------------------------------------------------------------- densify / prune
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


def _protect_triangles(remove: Tensor, face_ids: Tensor, score: Tensor, faces_before: Tensor) -> Tensor:
    """Un-remove, for each triangle of ``faces_before`` left empty, its highest-``score`` Gaussian."""
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
    new: dict[str, nn.Parameter],
    src: Tensor,
    zero_rows: Tensor,
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
                    g[zero_rows] = 0
                    st[k] = g
            optimizer.state[p_new] = st
        group["params"][0] = p_new


def densify_and_prune(
    params: dict[str, Tensor],
    face_ids: Tensor,
    state: DensifyState,
    config: DensifyConfig,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scene_scale: float = 1.0,
    sqrt_areas: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, Tensor], Tensor, dict[str, Any]]:
    """Clone, split and prune Gaussians on the schedule of ``config``; keep every triangle covered.

    Args:
        params: ``name -> [N, ...]`` tensors (usually ``nn.Parameter``); ``config.means_key``
            (local means), ``quats_key``, ``log_scales_key`` (local) and ``opacity_key`` must be
            present, every other entry is carried along row by row.
        face_ids: ``[N]`` triangle of each Gaussian.
        state: statistics from :func:`accumulate` (updated in place for the new Gaussians).
        config: thresholds and schedule.
        step: the current (1-based) optimisation step.
        optimizer: optional Adam whose param groups are named after ``params`` (``group["name"]``);
            updated in place: new ``nn.Parameter`` objects, moments copied for kept and cloned
            Gaussians, zero for split children.
        scene_scale: extent of the scene (world units) for ``percent_dense`` / ``max_world_size``.
        sqrt_areas: ``[F]`` (or ``[B,F]``, first pose used) ``sqrt(area)`` of the triangles
            (e.g. ``triangle_frames(neutral_vertices, faces).sqrt_areas``), so sizes are world
            sizes ``sqrt(S) exp(log_s)``. Without it the clone/split decision compares the local
            scales ``exp(log_s)`` (sizes relative to the triangle) and the ``max_world_size``
            prune is skipped (a world size cannot be known).
        generator: CPU random generator for the split offsets; default: one seeded with
            ``step``, so densification never touches the global RNG and a resumed run repeats an
            uninterrupted one exactly.

    Returns:
        ``(new_params, new_face_ids, info)``. On steps off the schedule, the inputs themselves and
        ``info["action"] == "none"``. Otherwise new ``nn.Parameter`` objects (requires_grad as the
        inputs) and ``info`` with ``action`` ("densify" or "prune") and the counts ``n_before,
        n_cloned, n_split, n_pruned, n_rescued, n_after``.

    Rules (densify steps): ``average_grad >= grad_threshold`` selects Gaussians; those with
    ``max world scale <= percent_dense * scene_scale`` are cloned (an exact copy), larger ones are
    replaced by ``split_factor`` children with means ``mu + R(q) (eps * s)``, ``eps ~ N(0, I)``, in
    the parent's local frame, and scales ``s / split_scale_divisor``. Then (densify and prune steps)
    Gaussians with opacity ``< min_opacity``, screen radius ``> max_screen_size`` or world scale
    ``> max_world_size * scene_scale`` are removed, except the best (highest-opacity) Gaussian
    of a triangle that would otherwise be left empty.
    """
    keys = (config.means_key, config.quats_key, config.log_scales_key, config.opacity_key)
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"params: missing {missing}; expected keys {list(keys)} (see DensifyConfig.*_key)")
    N = params[config.means_key].shape[0]
    for k, v in params.items():
        if v.shape[0] != N:
            raise ValueError(
                f"params['{k}']: expected {N} rows (from '{config.means_key}'), got {list(v.shape)}"
            )
    if tuple(face_ids.shape) != (N,):
        raise ValueError(f"face_ids: expected shape [{N}], got {list(face_ids.shape)}")
    densify = config.is_densify_step(step)
    prune = densify or config.is_prune_step(step)
    info: dict[str, Any] = {"action": "none", "n_before": N, "n_cloned": 0, "n_split": 0}
    info.update(n_pruned=0, n_rescued=0, n_after=N)
    if not prune:
        return params, face_ids, info
    if state.num_gaussians == 0:
        state.grad_accum, state.count, state.max_radii = tuple(DensifyState.create(N, face_ids.device))
    if state.num_gaussians != N:
        raise ValueError(f"state: tracks {state.num_gaussians} Gaussians, params have N={N}")
    dev = params[config.means_key].device

    with torch.no_grad():
        vals = {k: v.detach() for k, v in params.items()}
        log_s = vals[config.log_scales_key]

        def world_size(ls: Tensor, fid: Tensor) -> Tensor:
            s = ls.exp().amax(-1)
            if sqrt_areas is not None:
                sa = sqrt_areas if sqrt_areas.dim() == 1 else sqrt_areas[0]
                s = s * sa.to(s.device, s.dtype)[fid]
            return s

        fid = face_ids.to(dev).long()
        size = world_size(log_s, fid)
        if densify:
            high = state.average_grad().to(dev) >= config.grad_threshold
            small = size <= config.percent_dense * scene_scale
            clone_idx = (high & small).nonzero(as_tuple=True)[0]
            split_idx = (high & ~small).nonzero(as_tuple=True)[0]
        else:
            clone_idx = split_idx = torch.zeros(0, dtype=torch.long, device=dev)
        k = config.split_factor
        child_src = split_idx.repeat(k)
        src = torch.cat([torch.arange(N, device=dev), clone_idx, child_src])
        n_new = clone_idx.numel() + child_src.numel()
        is_child = torch.zeros(src.numel(), dtype=torch.bool, device=dev)
        is_child[N + clone_idx.numel() :] = True
        new_vals = {name: v[src].clone() for name, v in vals.items()}
        if child_src.numel():
            mu = vals[config.means_key][child_src]
            ls = vals[config.log_scales_key][child_src]
            R = _quat_to_rotmat(vals[config.quats_key][child_src])
            gen = generator if generator is not None else torch.Generator().manual_seed(int(step))
            eps = torch.randn(mu.shape, generator=gen, dtype=mu.dtype, device="cpu").to(dev)
            new_vals[config.means_key][is_child] = mu + (R @ (eps * ls.exp())[..., None])[..., 0]
            new_vals[config.log_scales_key][is_child] = ls - math.log(config.split_scale_divisor)
        new_fid = fid[src]
        opac = new_vals[config.opacity_key].reshape(src.numel(), -1)[:, 0]
        if config.opacity_is_logit:
            opac = torch.sigmoid(opac)
        radii = torch.cat([state.max_radii.to(dev), torch.zeros(n_new, device=dev)])
        remove = torch.zeros(src.numel(), dtype=torch.bool, device=dev)
        remove[split_idx] = True  # parents replaced by their children
        pruned = opac < config.min_opacity
        if config.max_screen_size > 0:
            pruned |= radii > config.max_screen_size
        if config.max_world_size > 0 and sqrt_areas is not None:
            pruned |= (
                world_size(new_vals[config.log_scales_key], new_fid) > config.max_world_size * scene_scale
            )
        remove_all = remove | pruned
        remove_final = _protect_triangles(remove_all, new_fid, opac, torch.unique(fid))
        keep = ~remove_final
        n_rescued = int((remove_all & keep).sum())
        final_src = src[keep]
        zero_rows = is_child[keep]

    new_params: dict[str, Tensor] = {}
    for name, v in new_vals.items():
        t = v[keep].contiguous()
        old = params[name]
        new_params[name] = (
            nn.Parameter(t, requires_grad=old.requires_grad) if isinstance(old, nn.Parameter) else t
        )
    new_face_ids = new_fid[keep].to(face_ids.dtype).to(face_ids.device)
    if optimizer is not None:
        _update_optimizer(optimizer, params, new_params, final_src, zero_rows)  # type: ignore[arg-type]

    n_after = int(keep.sum())
    if densify:  # statistics restart after densification (3DGS)
        state.grad_accum = torch.zeros(n_after, device=dev)
        state.count = torch.zeros(n_after, device=dev)
        state.max_radii = torch.zeros(n_after, device=dev)
    else:  # prune-only: the survivors keep theirs (final_src indexes the old rows here)
        state.grad_accum = state.grad_accum.to(dev)[final_src]
        state.count = state.count.to(dev)[final_src]
        state.max_radii = radii[keep]
    n_parents_removed = int((remove & ~keep).sum())
    info.update(
        action="densify" if densify else "prune",
        n_cloned=int(clone_idx.numel()),
        n_split=int(split_idx.numel()),
        n_pruned=int((~keep).sum()) - n_parents_removed,
        n_rescued=n_rescued,
        n_after=n_after,
    )
    return new_params, new_face_ids, info
