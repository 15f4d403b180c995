"""Binding-aware densification: the gradient statistic, grow (clone / split) and prune, triangle
coverage, the schedule, the step hooks and the in-place optimizer update."""

from __future__ import annotations

import math

import pytest
import rigged_gaussians as rg
import torch
from rigged_gaussians import reference, testing
from rigged_gaussians._types import RasterMeta
from rigged_gaussians.strategy import (
    DensifyConfig,
    DensifyInfo,
    DensifyState,
    accumulate,
    grow,
    prune,
    step_post_backward,
    step_pre_backward,
)
from torch import nn

CFG = DensifyConfig(
    grad_threshold=0.002, densify_from=1, densify_until=100, densify_every=1, prune_from=200,
    prune_until=300, prune_every=10, scene_extent=1.0, max_world_size=0.1, screen_size_from=0,
)  # fmt: skip


def _params(n: int, seed: int = 0, log_scale: float = -6.0, opacity: float = 0.5) -> dict[str, nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    logit = math.log(opacity / (1 - opacity))
    return {
        "means": nn.Parameter(torch.randn(n, 3, generator=g) * 0.1),
        "quats": nn.Parameter(torch.randn(n, 4, generator=g)),
        "log_scales": nn.Parameter(torch.full((n, 3), log_scale)),
        "opacity_logits": nn.Parameter(torch.full((n,), logit)),
        "sh": nn.Parameter(torch.randn(n, 4, 3, generator=g)),
    }


def _state(avg_grads: list[float]) -> DensifyState:
    st = DensifyState.create(len(avg_grads))
    st.grad_accum += torch.tensor(avg_grads) * 2
    st.count += 2
    return st


# ----------------------------------------------------------------------------- accumulate
def test_accumulate_formula() -> None:
    g = torch.tensor([[[1.0, 2.0], [0.5, 0.0], [3.0, 3.0]], [[1.0, -1.0], [0.0, 0.0], [1.0, 1.0]]])
    vis = torch.tensor([[True, True, False], [True, False, False]])
    radii = torch.tensor([[[3, 4], [1, 1], [0, 0]], [[7, 2], [0, 0], [0, 0]]], dtype=torch.int32)
    st = accumulate(DensifyState(), g, vis, width=20, height=10, radii=radii)
    # n=0: (1*10 + 1*10, 2*5 - 1*5) = (20, 5); n=1: (5, 0); n=2 invisible
    a = torch.tensor([math.hypot(20, 5), 5.0, 0.0])
    a = a / a.norm()  # normalised over the step's visible Gaussians
    torch.testing.assert_close(st.grad_accum, a)
    torch.testing.assert_close(st.count, torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(st.max_radii, torch.tensor([7.0, 1.0, 0.0]))
    # a second step, ten times the gradient, seen only by Gaussian 1: its normalised value is 1
    vis2 = torch.tensor([[False, True, False], [False, False, False]])
    accumulate(st, 10 * g, vis2, width=20, height=10)
    torch.testing.assert_close(st.count, torch.tensor([1.0, 2.0, 0.0]))
    torch.testing.assert_close(st.average_grad(), torch.tensor([a[0], (a[1] + 1) / 2, 0.0]))
    # a step without any gradient adds nothing but counts the visible Gaussians
    accumulate(st, torch.zeros_like(g), vis, width=20, height=10)
    torch.testing.assert_close(st.count, torch.tensor([2.0, 3.0, 0.0]))


def _decisions(scale: float, seed: int = 0) -> tuple[list[int], list[int], int]:
    """Grow then prune after three steps of random screen-space gradients ``x scale``: the face ids
    of the clones and children, and the count after pruning."""
    gen = torch.Generator().manual_seed(seed)
    n = 400
    st = DensifyState()
    for _ in range(3):
        grad = torch.randn(2, n, 2, generator=gen) * torch.rand(1, n, 1, generator=gen) ** 4
        vis = torch.rand(2, n, generator=gen) < 0.7
        accumulate(st, grad * scale, vis, width=64, height=48)
    p = _params(n, log_scale=-4.0)
    with torch.no_grad():
        p["log_scales"][::3] = math.log(0.5)  # some large (split), the others small (clone)
        p["opacity_logits"][::7] = -9.0  # some transparent (pruned)
    fid = torch.arange(n) // 2
    cfg = DensifyConfig(grad_threshold=0.05)
    out, out_fid, info = grow(p, fid, st, cfg, step=3)
    assert 0 < info.n_cloned + info.n_split < n  # the threshold separates
    kept, _, pruned = prune(out, out_fid, st, cfg)
    return out_fid.tolist(), out["means"].detach().sum(-1).tolist(), pruned.n_after


def test_statistic_does_not_depend_on_the_loss_scale() -> None:
    base = _decisions(1.0)
    for scale in (1000.0, 1e-3, 7.3):
        fid, means, n_after = _decisions(scale)
        assert fid == base[0] and n_after == base[2]  # the same Gaussians grow, split and go
        assert means == pytest.approx(base[1])


def test_statistic_does_not_depend_on_the_batch_size() -> None:
    gen = torch.Generator().manual_seed(3)
    grad = torch.randn(1, 50, 2, generator=gen)
    vis = torch.rand(1, 50, generator=gen) < 0.8
    one = accumulate(DensifyState(), grad, vis, width=32, height=32)
    four = accumulate(DensifyState(), grad.expand(4, -1, -1), vis.expand(4, -1), width=32, height=32)
    torch.testing.assert_close(one.grad_accum, four.grad_accum)
    torch.testing.assert_close(one.grad_accum.norm(), torch.tensor(1.0))


def test_accumulate_from_meta_of_a_render() -> None:
    s = testing.random_scene(30, C=2, width=32, height=32)
    s["means"].requires_grad_(True)
    rgb, alpha, meta = rg.rasterize(**s, backend="torch")
    with pytest.raises(ValueError, match="retain_grad"):
        accumulate(DensifyState(), meta)
    rgb, alpha, meta = rg.rasterize(**s, backend="torch")
    meta.means2d.retain_grad()
    rgb.square().sum().backward()
    st = accumulate(DensifyState(), meta)
    assert st.num_gaussians == 30
    assert (st.count == meta.visible.any(0).float()).all()
    assert (st.grad_accum[meta.visible.any(0)] > 0).all()
    torch.testing.assert_close(st.max_radii, meta.radii.amax(dim=(0, 2)).float())
    with pytest.raises(ValueError, match="tracks 30 Gaussians"):
        accumulate(st, torch.zeros(2, 5, 2), torch.ones(2, 5, dtype=torch.bool), 32, 32)


# ----------------------------------------------------------------------------- schedule
def test_schedule_defaults() -> None:
    c = DensifyConfig()
    # the public HeadStudio code's events: its bounds are exclusive (300 < step < 2100 densifies,
    # 2400 < step < 3300 prunes only), ours inclusive; threshold 0.001 as its published commands
    assert c.enabled and c.grad_threshold == 0.001 and c.min_opacity == 0.005
    steps = range(1, 10_001)
    assert [s for s in steps if c.is_densify_step(s)] == [600, 900, 1200, 1500, 1800]
    assert [s for s in steps if c.is_prune_step(s)] == [2700, 3000]
    assert [c.is_active(s) for s in (1, 3000, 3001)] == [True, True, False]
    off = DensifyConfig(enabled=False)
    assert not any(off.is_densify_step(s) or off.is_prune_step(s) or off.is_active(s) for s in (1, 300, 2400))
    with pytest.raises(ValueError, match="densify_every"):
        DensifyConfig(densify_every=0)


def _meta(grad: torch.Tensor, radii: torch.Tensor | None = None, track: bool = True) -> RasterMeta:
    """A RasterMeta whose ``means2d`` (``[M,N,2]``) received the gradient ``grad`` by backward."""
    m, n, _ = grad.shape
    leaf = torch.zeros(m, n, 2, requires_grad=True)
    means2d = leaf * 1.0  # a non-leaf tensor, as a render's
    if track:
        means2d.retain_grad()
    (means2d * grad).sum().backward()
    radii = torch.zeros(m, n, 2, dtype=torch.int32) if radii is None else radii
    return RasterMeta(
        depth=torch.zeros(m, 4, 4, 1), radii=radii, means2d=means2d, depths=torch.ones(m, n),
        visible=torch.ones(m, n, dtype=torch.bool), width=4, height=4,
    )  # fmt: skip


def test_off_schedule_returns_inputs() -> None:
    p = _params(4)
    fid = torch.tensor([0, 0, 1, 2])
    st = _state([1.0] * 4)
    out, out_fid, info = step_post_backward(p, fid, st, CFG, 150, _meta(torch.ones(1, 4, 2)))
    assert info == DensifyInfo(action="none", n_before=4, n_after=4) and out is p and out_fid is fid
    assert st.count.tolist() == [3.0] * 4  # the step still feeds the statistic


# ----------------------------------------------------------------------------- grow: clone / split
def test_clone_small_high_gradient() -> None:
    p = _params(4, log_scale=-6.0)  # exp(-6) = 0.0025 <= percent_dense
    fid = torch.tensor([0, 0, 1, 2])
    st = _state([0.01, 0.0, 0.001, 0.003])
    out, out_fid, info = grow(p, fid, st, CFG, step=5)
    assert info == DensifyInfo(action="densify", n_before=4, n_cloned=2, n_split=0, n_after=6, n_candidates=2)
    assert out["means"].shape[0] == 6 and isinstance(out["means"], nn.Parameter)
    assert out_fid.tolist() == [0, 0, 1, 2, 0, 2]  # clones inherit their parent's triangle
    for k in p:
        torch.testing.assert_close(out[k][4], p[k][0].detach())
        torch.testing.assert_close(out[k][5], p[k][3].detach())
        torch.testing.assert_close(out[k][:4], p[k].detach())
    # the originals keep their statistics, the clones start at zero
    torch.testing.assert_close(st.average_grad(), torch.tensor([0.01, 0.0, 0.001, 0.003, 0.0, 0.0]))


def test_split_large_children_in_parent_local_frame() -> None:
    n = 3000
    p = _params(n, log_scale=math.log(0.2))
    q = torch.tensor([0.9, 0.1, -0.3, 0.2])
    with torch.no_grad():
        p["quats"][:] = q
        p["means"][:] = torch.tensor([0.1, -0.2, 0.3])
        p["log_scales"][:] = torch.log(torch.tensor([0.3, 0.1, 0.05]))
    fid = torch.arange(n) % 7
    gen = torch.Generator().manual_seed(0)
    out, out_fid, info = grow(p, fid, _state([1.0] * n), CFG, generator=gen)
    assert info.n_split == n and info.n_after == 2 * n
    # children: parents removed, two per parent, same triangle, scales / 1.6
    assert out_fid.tolist() == fid.repeat(2).tolist()
    torch.testing.assert_close(out["log_scales"], p["log_scales"].detach().repeat(2, 1) - math.log(1.6))
    torch.testing.assert_close(out["sh"], p["sh"].detach().repeat(2, 1, 1))
    # offsets ~ N(0, R diag(s^2) R^T) in the local frame of the parent
    d = out["means"].detach() - p["means"].detach().repeat(2, 1)
    R = reference.quat_to_rotmat(reference.quat_normalize(q[None].double()))[0].float()
    cov = R @ torch.diag(torch.tensor([0.3, 0.1, 0.05]) ** 2) @ R.T
    torch.testing.assert_close(d.T @ d / d.shape[0], cov, atol=2e-3, rtol=0.1)
    assert d.mean(0).abs().max() < 0.02


def test_world_size_uses_sqrt_areas() -> None:
    p = _params(2, log_scale=0.0)  # local scale 1
    fid = torch.tensor([0, 1])
    sa = torch.tensor([0.005, 0.05])  # world sizes 0.005 (clone) and 0.05 (split)
    out, out_fid, info = grow(p, fid, _state([1.0, 1.0]), CFG, sqrt_areas=sa)
    assert info.n_cloned == 1 and info.n_split == 1
    assert out_fid.tolist() == [0, 0, 1, 1]
    # without sqrt_areas the local scale (1 > 0.01) says split both
    _, _, info = grow(_params(2, log_scale=0.0), fid, _state([1.0, 1.0]), CFG)
    assert info.n_split == 2


def test_clone_split_boundary_is_a_fraction_of_the_scene_extent() -> None:
    # world sizes 0.0075 and 0.0085: the boundary is 0.01 x 4 scene units x 0.2 m = 0.008 m
    p = _params(2, log_scale=0.0)
    sa = torch.tensor([0.0075, 0.0085])
    cfg = DensifyConfig(scene_extent=4.0)
    _, _, info = grow(p, torch.tensor([0, 1]), _state([1.0, 1.0]), cfg, scene_scale=0.2, sqrt_areas=sa)
    assert (info.n_cloned, info.n_split) == (1, 1)


# ----------------------------------------------------------------------------- budget
def test_budget_grows_the_highest_statistic_first_and_is_never_exceeded() -> None:
    n = 10
    avg = [0.5, 0.0, 0.9, 0.3, 0.7, 0.0, 0.2, 0.8, 0.1, 0.6]  # all but 1 and 5 are candidates
    p = _params(n, log_scale=-6.0)  # small: clones (one new Gaussian each)
    fid = torch.arange(n)
    cfg = DensifyConfig(**{**CFG.__dict__, "grad_threshold": 0.05, "max_gaussians": 13})
    out, out_fid, info = grow(p, fid, _state(avg), cfg)
    assert info.n_after == 13 and info.n_cloned == 3 and info.n_candidates == 8 and info.budget_bound
    assert out_fid[n:].tolist() == [2, 4, 7]  # 0.9, 0.8, 0.7: the three highest
    # splits cost split_factor - 1 each: with 3 children per split, 4 free places take 2 splits
    big = _params(n, log_scale=0.0)
    cfg3 = DensifyConfig(**{**cfg.__dict__, "split_factor": 3, "max_gaussians": 14})
    out, out_fid, info = grow(big, fid, _state(avg), cfg3)
    assert (info.n_split, info.n_after, info.budget_bound) == (2, 14, True)
    counts = torch.bincount(out_fid, minlength=n).tolist()
    assert [f for f in range(n) if counts[f] == 3] == [2, 7]  # the two highest became 3 children
    # enough room: everything grows and the budget did not bind
    roomy = DensifyConfig(**{**cfg.__dict__, "max_gaussians": 18})
    _, _, info = grow(p, fid, _state(avg), roomy)
    assert (info.n_cloned, info.n_after, info.budget_bound) == (8, 18, False)
    # already at (or above) the budget: nothing grows
    _, _, info = grow(p, fid, _state(avg), DensifyConfig(**{**cfg.__dict__, "max_gaussians": 8}))
    assert (info.n_cloned, info.n_split, info.n_after, info.budget_bound) == (0, 0, 10, True)
    # 0: no budget
    _, _, info = grow(p, fid, _state(avg), DensifyConfig(**{**cfg.__dict__, "max_gaussians": 0}))
    assert (info.n_cloned, info.budget_bound) == (8, False)
    with pytest.raises(ValueError, match="max_gaussians"):
        DensifyConfig(max_gaussians=-1)


def test_budget_holds_through_the_step_hook() -> None:
    p = _params(30, log_scale=-6.0)
    fid = torch.arange(30)
    cfg = DensifyConfig(**{**CFG.__dict__, "grad_threshold": 0.0, "max_gaussians": 40})
    for step in (1, 2, 3):  # every Gaussian is a candidate at every step
        meta = _meta(torch.ones(1, len(fid), 2))
        p, fid, info = step_post_backward(p, fid, DensifyState(), cfg, step, meta)
        assert len(fid) == 40 and info.budget_bound


# ----------------------------------------------------------------------------- prune
def test_prune_low_opacity_large_screen_and_world_size() -> None:
    p = _params(5)
    with torch.no_grad():
        p["opacity_logits"][1] = -8.0  # sigmoid = 0.0003 < 0.005
        p["log_scales"][3] = math.log(0.5)  # > max_world_size 0.1
    fid = torch.tensor([0, 0, 0, 0, 0])
    st = _state([0.0] * 5)
    st.max_radii[2] = 100.0  # > max_screen_size 60
    _, _, info = prune(p, fid, DensifyState.create(5), CFG)
    assert info.n_pruned == 1  # without sqrt_areas no world size is known: only opacity
    out, out_fid, info = prune(p, fid, st, CFG, sqrt_areas=torch.ones(1))
    assert info == DensifyInfo(action="prune", n_before=5, n_pruned=3, n_rescued=0, n_after=2)
    torch.testing.assert_close(out["means"], p["means"].detach()[[0, 4]])
    assert st.num_gaussians == 2


def test_screen_size_pruning_starts_at_screen_size_from() -> None:
    p = _params(3)
    st = _state([0.0] * 3)
    st.max_radii[1] = 100.0  # > max_screen_size 60
    cfg = DensifyConfig(**{**CFG.__dict__, "screen_size_from": 1500})
    _, _, early = prune(p, torch.tensor([0, 0, 0]), st, cfg, step=1200)
    assert early.n_pruned == 0
    _, _, late = prune(p, torch.tensor([0, 0, 0]), st, cfg, step=1500)
    assert late.n_pruned == 1


def test_prune_keeps_best_gaussian_of_each_triangle() -> None:
    p = _params(6)
    with torch.no_grad():
        p["opacity_logits"][:] = torch.tensor([-9.0, -7.0, -8.0, 0.0, -9.0, -9.5])
    fid = torch.tensor([1, 1, 1, 3, 4, 4])  # triangle 1: all pruned; 4: all pruned; 0, 2: never had any
    out, out_fid, info = prune(p, fid, _state([0.0] * 6), CFG)
    assert sorted(out_fid.tolist()) == [1, 3, 4]
    kept = {f: o for f, o in zip(out_fid.tolist(), out["opacity_logits"].tolist(), strict=True)}
    assert kept[1] == -7.0 and kept[4] == -9.0  # the highest opacity of each triangle
    assert info.n_rescued == 2 and info.n_pruned == 3


def test_prune_only_keeps_survivor_statistics() -> None:
    p = _params(3)
    with torch.no_grad():
        p["opacity_logits"][0] = -9.0
    st = _state([0.1, 0.2, 0.3])
    st.max_radii[:] = torch.tensor([1.0, 2.0, 3.0])
    prune(p, torch.tensor([1, 1, 1]), st, CFG)
    torch.testing.assert_close(st.average_grad(), torch.tensor([0.2, 0.3]))
    torch.testing.assert_close(st.max_radii, torch.tensor([2.0, 3.0]))


@pytest.mark.parametrize("op", [grow, prune])
def test_errors(op) -> None:
    p = _params(3)
    with pytest.raises(ValueError, match=r"params: missing \['opacity_logits'\]"):
        op({k: v for k, v in p.items() if k != "opacity_logits"}, torch.zeros(3), _state([0] * 3), CFG)
    with pytest.raises(ValueError, match=r"face_ids: expected shape \[3\]"):
        op(p, torch.zeros(4, dtype=torch.long), _state([0] * 3), CFG)
    with pytest.raises(ValueError, match=r"params\['sh'\]: expected 3 rows"):
        op(dict(p, sh=torch.zeros(2, 4, 3)), torch.zeros(3, dtype=torch.long), _state([0] * 3), CFG)
    with pytest.raises(ValueError, match="tracks 4 Gaussians"):
        op(p, torch.zeros(3, dtype=torch.long), _state([0] * 4), CFG)


# ----------------------------------------------------------------------------- optimizer
def test_optimizer_updated_in_place() -> None:
    p = _params(4, log_scale=-6.0)
    with torch.no_grad():
        p["log_scales"][1] = math.log(0.5)  # large -> split
        p["opacity_logits"][2] = -9.0  # pruned (triangle 1 keeps Gaussian 3)
    opt = torch.optim.Adam([{"name": k, "params": [v], "lr": 1e-2} for k, v in p.items()], betas=(0.9, 0.99))
    loss = sum((v**2).sum() for v in p.values())
    loss.backward()
    opt.step()
    old_m = {k: opt.state[v]["exp_avg"].clone() for k, v in p.items()}
    old_v = {k: opt.state[v]["exp_avg_sq"].clone() for k, v in p.items()}
    fid = torch.tensor([0, 0, 1, 1])
    # Gaussian 0: clone; 1: split into 2; 2: pruned; 3: kept
    cfg = DensifyConfig(**{**CFG.__dict__, "max_world_size": 0.0})
    st = _state([1.0, 1.0, 0.0, 0.0])
    steps_before = {k: opt.state[v]["step"].clone() for k, v in p.items()}
    grown, grown_fid, g = grow(p, fid, st, cfg, optimizer=opt, step=5)
    out, out_fid, pr = prune(grown, grown_fid, st, cfg, optimizer=opt)
    assert (g.n_cloned, g.n_split, pr.n_pruned, pr.n_after) == (1, 1, 1, 5)
    # rows: 0 (kept), 3 (kept), clone of 0, two children of 1
    assert out_fid.tolist() == [0, 1, 0, 0, 0]
    for group in opt.param_groups:
        name = group["name"]
        assert group["params"][0] is out[name]
        st_ = opt.state[out[name]]
        for got, old in ((st_["exp_avg"], old_m[name]), (st_["exp_avg_sq"], old_v[name])):
            torch.testing.assert_close(got[[0, 1]], old[[0, 3]])  # survivors keep their moments
            assert got[2:].eq(0).all()  # the clone and the split children start at zero
        assert torch.equal(st_["step"], steps_before[name])  # Adam's step count is untouched
        assert p[name] not in opt.state and grown[name] not in opt.state
    loss = sum((v**2).sum() for v in out.values())
    loss.backward()
    opt.step()  # the optimizer keeps working with the new parameters


# ----------------------------------------------------------------------------- step hooks
def test_pre_backward_keeps_the_gradient_only_while_active() -> None:
    s = testing.random_scene(20, C=1, width=16, height=16)
    s["means"].requires_grad_(True)
    _, _, meta = rg.rasterize(**s, backend="torch")
    assert step_pre_backward(meta, CFG, 5) and meta.means2d.retains_grad
    for cfg, step in ((CFG, 301), (DensifyConfig(enabled=False), 5)):
        _, _, meta = rg.rasterize(**s, backend="torch")
        assert not step_pre_backward(meta, cfg, step) and not meta.means2d.retains_grad
        p = _params(20)
        fid = torch.zeros(20, dtype=torch.long)
        out, _, info = step_post_backward(p, fid, DensifyState(), cfg, step, meta)
        assert out is p and info.action == "none"  # nothing tracked: nothing happens


def test_post_backward_grows_prunes_and_restarts_the_statistics() -> None:
    p = _params(4, log_scale=-6.0)
    with torch.no_grad():
        p["opacity_logits"][2] = -9.0
    fid = torch.tensor([0, 0, 1, 1])
    st = DensifyState()
    grad = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])  # only Gaussian 0 moves
    calls: list[int] = []

    def areas() -> torch.Tensor:
        calls.append(1)
        return torch.ones(2)

    cfg = DensifyConfig(**{**CFG.__dict__, "densify_every": 2})
    out, out_fid, info = step_post_backward(p, fid, st, cfg, 1, _meta(grad), sqrt_areas=areas)
    assert info.action == "none" and out is p and not calls  # step 1: statistics only
    torch.testing.assert_close(st.grad_accum, torch.tensor([1.0, 0.0, 0.0, 0.0]))  # the only one: 1
    out, out_fid, info = step_post_backward(p, fid, st, cfg, 2, _meta(grad), sqrt_areas=areas)
    assert info == DensifyInfo(
        action="densify", n_before=4, n_cloned=1, n_split=0, n_pruned=1, n_rescued=0, n_after=4,
        n_candidates=1,
    )  # fmt: skip
    assert calls == [1] and out_fid.tolist() == [0, 0, 1, 0]
    assert st.num_gaussians == 4 and not st.grad_accum.any() and not st.count.any()  # restarted
    radii = torch.tensor([[[70, 70], [1, 1], [1, 1], [1, 1]]], dtype=torch.int32)
    out2, out_fid2, info = step_post_backward(out, out_fid, st, cfg, 210, _meta(grad, radii))
    assert info == DensifyInfo(action="prune", n_before=4, n_pruned=1, n_after=3)  # too large on screen
    torch.testing.assert_close(st.count, torch.ones(3))  # the survivors keep their statistics


def test_densifier_object_is_the_hooks_with_its_state_config_optimizer_and_scale() -> None:
    """``Densifier`` holds what every hook call repeated (config, statistics, optimizer, scene
    scale) and gives the same Gaussians, counts and optimizer state as the spelled-out hooks."""
    from rigged_gaussians.strategy import Densifier

    cfg = DensifyConfig(densify_from=1, densify_every=1, densify_until=5, grad_threshold=0.0, prune_from=10)
    results = []
    for use_object in (False, True):
        torch.manual_seed(0)
        s = testing.random_scene(30, C=1, width=32, height=32)
        params = {
            "means": s["means"].clone().requires_grad_(True),
            "quats": s["quats"].clone().requires_grad_(True),
            "log_scales": s["scales"].log().clone().requires_grad_(True),
            "opacity_logits": torch.logit(s["opacities"].clamp(1e-3, 1 - 1e-3)).clone().requires_grad_(True),
        }
        face_ids = torch.zeros(30, dtype=torch.int64)
        opt = torch.optim.Adam(list(params.values()), lr=1e-3)
        dens = Densifier.create(cfg, 30, optimizer=opt, scene_scale=2.0)
        state = DensifyState.create(30)
        scene = dict(s, means=params["means"])
        _, _, meta = rg.rasterize(**scene, backend="torch")
        if use_object:
            assert dens.step_pre_backward(meta, 1)
        else:
            assert step_pre_backward(meta, cfg, 1)
        (meta.means2d.square().sum() + params["means"].square().sum()).backward()
        opt.step()
        if use_object:
            out = dens.step_post_backward(params, face_ids, 1, meta, sqrt_areas=torch.ones(1))
            stats = dens.state
        else:
            out = step_post_backward(
                params,
                face_ids,
                state,
                cfg,
                1,
                meta,
                optimizer=opt,
                scene_scale=2.0,
                sqrt_areas=torch.ones(1),
            )
            stats = state
        results.append((out, stats, opt))
    (p0, f0, i0), s0, o0 = results[0]
    (p1, f1, i1), s1, o1 = results[1]
    assert i0 == i1 and i1.action == "densify" and i1.n_after > 30
    assert torch.equal(f0, f1) and all(torch.equal(p0[k], p1[k]) for k in p0)
    assert torch.equal(s0.grad_accum, s1.grad_accum) and torch.equal(s0.count, s1.count)
    assert [len(o0.state[p]) for p in o0.param_groups[0]["params"]] == [
        len(o1.state[p]) for p in o1.param_groups[0]["params"]
    ]
