"""Mesh regularisation: the paper's hinge form and the public code's form of docs/METHOD.md, each
checked against a direct formula and hand-computed values and gradients, and a pull on each
violator that does not fade as compliant Gaussians are added."""

from __future__ import annotations

import math

import pytest
import torch
from headstudio.errors import HeadStudioError
from headstudio.train.regularization import REGULARIZER_TERMS, mesh_regularization, triangle_tolerance


def weighted(
    parts: dict[str, torch.Tensor], lambda_pos: float = 0.1, lambda_scale: float = 0.1
) -> torch.Tensor:
    """``L_reg = λ_pos·loss_pos + λ_s·loss_scale`` (the trainer's weighting of the two terms)."""
    return lambda_pos * parts["loss_pos"] + lambda_scale * parts["loss_scale"]


def two_triangles() -> tuple[torch.Tensor, torch.Tensor]:
    """A right triangle with legs 0.02 and a larger one with legs 0.1, in different planes."""
    v = torch.tensor(
        [
            [0.0, 0.0, 0.0],
            [0.02, 0.0, 0.0],
            [0.0, 0.02, 0.0],
            [0.0, 0.0, 0.1],
            [0.1, 0.0, 0.1],
            [0.0, 0.0, 0.2],
        ],
        dtype=torch.float64,
    )
    return v[None], torch.tensor([[0, 1, 2], [3, 4, 5]])


def direct(means, log_scales, face_ids, verts, faces, lp, ls):  # noqa: ANN001, ANN202
    """docs/METHOD.md, one Gaussian at a time with plain Python math."""
    v = verts[0].tolist()
    pos_terms, scale_terms = [], []
    for mu, ls_, f in zip(means.tolist(), log_scales.tolist(), face_ids.tolist()):
        a, b, c = (v[i] for i in faces[f].tolist())
        cen = [(a[k] + b[k] + c[k]) / 3 for k in range(3)]
        tau = max(math.dist(cen, p) for p in (a, b, c))
        e1 = [b[k] - a[k] for k in range(3)]
        e2 = [c[k] - a[k] for k in range(3)]
        cr = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]]
        sqrt_s = math.sqrt(math.hypot(*cr) / 2)
        pos_terms.append(max(sqrt_s * math.hypot(*mu) - 0.5 * tau, 0.0) / sqrt_s)
        over = [max(sqrt_s * math.exp(x) - 0.5 * tau, 0.0) for x in ls_]
        scale_terms.append(math.hypot(*over) / sqrt_s)

    def violator_mean(terms: list[float]) -> float:
        bad = [t for t in terms if t > 0]
        return sum(bad) / len(bad) if bad else 0.0

    lpos, lsc = violator_mean(pos_terms), violator_mean(scale_terms)
    return lp * lpos + ls * lsc, lpos, lsc


def test_tolerance() -> None:
    verts, faces = two_triangles()
    tau = triangle_tolerance(verts, faces)
    # right triangle with legs L: centroid (L/3, L/3); farthest vertex at distance sqrt(5)/3·L
    torch.testing.assert_close(
        tau[0], torch.tensor([math.sqrt(5) / 3 * 0.02, math.sqrt(5) / 3 * 0.1], dtype=torch.float64)
    )


def test_zero_inside_the_tolerance() -> None:
    verts, faces = two_triangles()
    # √S for legs 0.02 is 0.02/√2; τ_pos = 0.5·τ ≈ 0.00745 → ‖μ‖ ≤ 0.5 in local units stays inside
    means = torch.tensor([[0.3, 0.0, 0.1], [0.0, 0.2, -0.3]], dtype=torch.float64, requires_grad=True)
    log_scales = torch.full((2, 3), math.log(0.3), dtype=torch.float64, requires_grad=True)
    parts = mesh_regularization(means, log_scales, torch.tensor([0, 1]), verts, faces)
    loss = weighted(parts, 0.1, 0.1)
    assert loss.item() == 0.0 and parts["loss_pos"].item() == 0.0 and parts["loss_scale"].item() == 0.0
    loss.backward()
    assert torch.equal(means.grad, torch.zeros_like(means)) and torch.equal(
        log_scales.grad, torch.zeros_like(log_scales)
    )


def test_outside_matches_the_direct_formula_and_has_gradients() -> None:
    verts, faces = two_triangles()
    g = torch.Generator().manual_seed(0)
    n = 12
    means = (1.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)).requires_grad_()
    log_scales = (torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.8).requires_grad_()
    face_ids = torch.randint(0, 2, (n,), generator=g)
    verts = verts.clone().requires_grad_()
    parts = mesh_regularization(means, log_scales, face_ids, verts, faces)
    loss = weighted(parts, 0.1, 0.3)
    ref, ref_pos, ref_scale = direct(
        means.detach(), log_scales.detach(), face_ids, verts.detach(), faces, 0.1, 0.3
    )
    assert loss.item() > 0
    assert loss.item() == pytest.approx(ref, rel=1e-10)
    assert parts["loss_pos"].item() == pytest.approx(ref_pos, rel=1e-10)
    assert parts["loss_scale"].item() == pytest.approx(ref_scale, rel=1e-10)
    loss.backward()
    for t in (means, log_scales, verts):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_gradcheck_and_weights() -> None:
    verts, faces = two_triangles()
    means = torch.tensor([[2.0, 0.1, 0.3], [0.1, 1.5, 1.5]], dtype=torch.float64, requires_grad=True)
    log_scales = torch.tensor([[0.5, -3.0, 0.2], [0.1, 0.3, -2.0]], dtype=torch.float64, requires_grad=True)
    fid = torch.tensor([0, 1])

    def f(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return weighted(mesh_regularization(m, s, fid, verts, faces), 0.1, 0.1)

    assert torch.autograd.gradcheck(f, (means, log_scales))
    parts = mesh_regularization(means, log_scales, fid, verts, faces)
    assert weighted(parts, 1.0, 0.0).item() == pytest.approx(parts["loss_pos"].item())
    assert weighted(parts, 0.0, 2.0).item() == pytest.approx(2.0 * parts["loss_scale"].item())


def test_batch_of_poses_is_averaged_and_scale_invariant() -> None:
    verts, faces = two_triangles()
    means = torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64)
    ls = torch.zeros(1, 3, dtype=torch.float64)
    one = weighted(mesh_regularization(means, ls, torch.tensor([0]), verts, faces))
    # a mesh twice as large: same local parameters give the same relative excess
    two = weighted(mesh_regularization(means, ls, torch.tensor([0]), 2 * verts, faces))
    assert one.item() == pytest.approx(two.item())
    both = weighted(mesh_regularization(means, ls, torch.tensor([0]), torch.cat([verts, 2 * verts]), faces))
    assert both.item() == pytest.approx(one.item())
    with pytest.raises(HeadStudioError, match="face_ids"):
        mesh_regularization(means, ls, torch.tensor([0, 1]), verts, faces)


def test_precomputed_frames_agree() -> None:
    from rigged_gaussians.reference import triangle_frames

    verts, faces = two_triangles()
    means = torch.tensor([[2.0, 0.1, 0.3], [0.1, 1.5, 1.5]], dtype=torch.float64)
    ls = torch.tensor([[0.5, -3.0, 0.2], [0.1, 0.3, -2.0]], dtype=torch.float64)
    a = mesh_regularization(means, ls, torch.tensor([0, 1]), verts, faces)
    b = mesh_regularization(
        means, ls, torch.tensor([0, 1]), verts, faces, frames=triangle_frames(verts, faces)
    )
    assert set(a) == set(b) == set(REGULARIZER_TERMS)
    for k in a:
        assert a[k].item() == pytest.approx(b[k].item(), rel=1e-12)


@pytest.mark.parametrize("form", ["paper", "code"])
def test_a_violators_pull_does_not_depend_on_how_many_gaussians_comply(form: str) -> None:
    verts, faces = two_triangles()
    violator_mean = torch.tensor([[2.0, 0.1, 0.3]], dtype=torch.float64)
    violator_scale = torch.tensor([[0.5, -3.0, 0.2]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    grads = []
    for n_compliant in (0, 10, 1000):
        # compliant: means inside 0.5 local units, scales 0.3: within both tolerances
        means = torch.cat([violator_mean, 0.2 * torch.rand(n_compliant, 3, generator=g, dtype=torch.float64)])
        scales = torch.cat([violator_scale, torch.full((n_compliant, 3), math.log(0.3), dtype=torch.float64)])
        means.requires_grad_(True)
        scales.requires_grad_(True)
        fid = torch.cat([torch.tensor([0]), torch.randint(0, 2, (n_compliant,), generator=g)])
        parts = mesh_regularization(means, scales, fid, verts, faces, form=form, unit=0.2)
        weighted(parts).backward()
        assert (means.grad[1:] == 0).all() and (scales.grad[1:] == 0).all()  # compliant: no pull
        grads.append((parts["loss_pos"].item(), means.grad[0].clone(), scales.grad[0].clone()))
    for loss, gm, gs in grads[1:]:
        assert loss == pytest.approx(grads[0][0], rel=1e-12)
        torch.testing.assert_close(gm, grads[0][1], rtol=1e-12, atol=0)
        torch.testing.assert_close(gs, grads[0][2], rtol=1e-12, atol=0)
    assert grads[0][1].abs().max() > 0 and grads[0][2].abs().max() > 0


@pytest.mark.parametrize("form", ["paper", "code"])
def test_no_violator_gives_zero_not_nan(form: str) -> None:
    verts, faces = two_triangles()
    means = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    parts = mesh_regularization(
        means, torch.full((3, 3), -5.0, dtype=torch.float64), torch.zeros(3), verts, faces, form=form
    )
    assert parts["loss_pos"].item() == 0.0 and parts["loss_scale"].item() == 0.0
    weighted(parts).backward()
    assert torch.equal(means.grad, torch.zeros_like(means))


# ------------------------------------------------------------------- the public code's form


def direct_code(means, log_scales, face_ids, verts, faces, unit):  # noqa: ANN001, ANN202
    """The public code's terms (docs/METHOD.md), one Gaussian at a time with plain Python math:
    smooth L1 (β = 1) of the whole offset over the area, and each violating axis's whole scale
    over the area, in scene units of ``unit``; means over the violators."""
    v = verts[0].tolist()
    pos, scale = [], []
    for mu, ls_, f in zip(means.tolist(), log_scales.tolist(), face_ids.tolist()):
        a, b, c = (v[i] for i in faces[f].tolist())
        cen = [(a[k] + b[k] + c[k]) / 3 for k in range(3)]
        tol = 0.5 * max(math.dist(cen, p) for p in (a, b, c))
        e1 = [b[k] - a[k] for k in range(3)]
        e2 = [c[k] - a[k] for k in range(3)]
        cr = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]]
        area = math.hypot(*cr) / 2
        d = math.sqrt(area) * math.hypot(*mu)
        if d > tol:
            x = d / unit
            pos.append((0.5 * x * x if x < 1 else x - 0.5) / (area / unit**2))
        for x in ls_:
            s_world = math.sqrt(area) * math.exp(x)
            if s_world > tol:
                scale.append((s_world / unit) / (area / unit**2))
    return (sum(pos) / len(pos) if pos else 0.0), (sum(scale) / len(scale) if scale else 0.0)


def test_code_form_by_hand() -> None:
    """One Gaussian on the small triangle (legs 0.02 m: S = 2e-4 m², τ the distance from its
    centroid (0.02/3, 0.02/3) to the vertex (0.02, 0)), scene unit u = 0.2 m."""
    verts, faces = two_triangles()
    u = 0.2
    area = 0.5 * 0.02 * 0.02  # 2e-4 m²
    tol = 0.5 * math.hypot(0.02 - 0.02 / 3, 0.02 / 3)  # centroid (0.02/3, 0.02/3) to (0.02, 0)
    mu = torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    # axis 0: s' = √S·e^0.5 = 0.0233 m > tol 0.00745 m (violates); axis 1: √S·e^-3 = 7.0e-4 (complies);
    # axis 2: √S·e^0.2 = 0.0173 m (violates)
    ls = torch.tensor([[0.5, -3.0, 0.2]], dtype=torch.float64, requires_grad=True)
    parts = mesh_regularization(mu, ls, torch.tensor([0]), verts, faces, form="code", unit=u)
    # position: d = √S·2 = 0.0283 m > tol; x = d/u = 0.141 < 1, so h = x²/2 and
    # e_pos = (x²/2)/(S/u²) = ‖μ‖²/2 = 2 (local units: the area cancels in the quadratic regime)
    assert parts["loss_pos"].item() == pytest.approx(2.0, rel=1e-12)
    s0, s2 = math.sqrt(area) * math.exp(0.5), math.sqrt(area) * math.exp(0.2)
    assert s0 > tol and s2 > tol and math.sqrt(area) * math.exp(-3.0) < tol
    expected_scale = (s0 * u / area + s2 * u / area) / 2  # (s'/u)/(S/u²) = s'·u/S, mean of 2 axes
    assert parts["loss_scale"].item() == pytest.approx(expected_scale, rel=1e-12)
    (parts["loss_pos"] + parts["loss_scale"]).backward()
    # gradients by hand: d(‖μ‖²/2)/dμ = μ; d(s'_k·u/S)/d log s_k = s'_k·u/S, halved by the mean
    torch.testing.assert_close(mu.grad, torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(
        ls.grad, torch.tensor([[s0 * u / area / 2, 0.0, s2 * u / area / 2]], dtype=torch.float64)
    )


def test_code_form_linear_regime_by_hand() -> None:
    """Past x = d/u = 1 the smooth L1 is linear: e_pos = (x − 1/2)·u²/S, gradient u·√S/S along μ."""
    verts, faces = two_triangles()
    u = 0.01  # a small unit puts d = √S·3 = 0.0424 m at x = 4.24
    area = 2e-4
    mu = torch.tensor([[0.0, 3.0, 0.0]], dtype=torch.float64, requires_grad=True)
    ls = torch.full((1, 3), -5.0, dtype=torch.float64)
    parts = mesh_regularization(mu, ls, torch.tensor([0]), verts, faces, form="code", unit=u)
    x = math.sqrt(area) * 3.0 / u
    assert x > 1
    assert parts["loss_pos"].item() == pytest.approx((x - 0.5) * u * u / area, rel=1e-12)
    assert parts["loss_scale"].item() == 0.0
    parts["loss_pos"].backward()
    dx = math.sqrt(area) / u  # dx/d‖μ‖
    torch.testing.assert_close(mu.grad, torch.tensor([[0.0, dx * u * u / area, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("unit", [0.2, 0.005])
def test_code_form_matches_the_direct_formula_and_gradcheck(unit: float) -> None:
    verts, faces = two_triangles()
    g = torch.Generator().manual_seed(1)
    n = 12
    means = (1.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)).requires_grad_()
    log_scales = (torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.8).requires_grad_()
    face_ids = torch.randint(0, 2, (n,), generator=g)
    parts = mesh_regularization(means, log_scales, face_ids, verts, faces, form="code", unit=unit)
    ref_pos, ref_scale = direct_code(means.detach(), log_scales.detach(), face_ids, verts, faces, unit)
    assert ref_pos > 0 and ref_scale > 0
    assert parts["loss_pos"].item() == pytest.approx(ref_pos, rel=1e-10)
    assert parts["loss_scale"].item() == pytest.approx(ref_scale, rel=1e-10)

    def f(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return weighted(mesh_regularization(m, s, face_ids, verts, faces, form="code", unit=unit))

    assert torch.autograd.gradcheck(f, (means, log_scales))


def test_code_form_is_in_the_public_codes_scene_units() -> None:
    """The scale term is s'·u/S: linear in the scene unit u; the paper form ignores u."""
    verts, faces = two_triangles()
    mu = torch.tensor([[0.1, 0.0, 0.0]], dtype=torch.float64)
    ls = torch.tensor([[0.5, -3.0, 0.2]], dtype=torch.float64)
    fid = torch.tensor([0])
    a = mesh_regularization(mu, ls, fid, verts, faces, form="code", unit=0.1)["loss_scale"]
    b = mesh_regularization(mu, ls, fid, verts, faces, form="code", unit=0.2)["loss_scale"]
    assert b.item() == pytest.approx(2 * a.item(), rel=1e-12)
    p1 = mesh_regularization(mu, ls, fid, verts, faces, form="paper", unit=0.1)
    p2 = mesh_regularization(mu, ls, fid, verts, faces, form="paper", unit=0.2)
    assert p1["loss_scale"].item() == p2["loss_scale"].item()
    # at the same weight the code form pulls harder on a violating scale than the paper form
    assert a.item() > p1["loss_scale"].item()


def test_bad_form_or_unit_is_one_clear_line() -> None:
    verts, faces = two_triangles()
    z = torch.zeros(1, 3, dtype=torch.float64)
    with pytest.raises(HeadStudioError, match="form must be one of paper, code, got 'hinge'"):
        mesh_regularization(z, z, torch.tensor([0]), verts, faces, form="hinge")  # type: ignore[arg-type]
    with pytest.raises(HeadStudioError, match="unit must be a positive length"):
        mesh_regularization(z, z, torch.tensor([0]), verts, faces, form="code", unit=0.0)
