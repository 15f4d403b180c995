"""Grow and prune: the densification operations of :mod:`rigged_gaussians.strategy` (which
re-exports :func:`grow` and :func:`prune`; the conventions are in its docstring)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rigged_gaussians._densify_types import PARAM_KEYS, DensifyConfig, DensifyInfo, DensifyState

__all__ = ["grow", "prune"]


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
