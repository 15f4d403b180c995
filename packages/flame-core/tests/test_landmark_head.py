"""LandmarkHead (FLAME at the landmarks' vertices only) against the full model + embedding."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from flame_core.landmark_head import LandmarkHead


def _inputs(T: int, S: int, E: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "shape": torch.randn(T, S, generator=g),
        "expression": torch.randn(T, E, generator=g),
        "global_orient": 0.3 * torch.randn(T, 3, generator=g),
        "neck_pose": 0.3 * torch.randn(T, 3, generator=g),
        "jaw_pose": 0.2 * torch.randn(T, 3, generator=g),
        "eye_pose": 0.3 * torch.randn(T, 6, generator=g),
    }


@pytest.mark.parametrize(
    ("T", "S", "E", "rows"), [(1, 300, 100, None), (5, 50, 50, None), (3, 10, 7, [13, 14, 468, 1])]
)
def test_matches_full_model_values_and_gradients(T, S, E, rows, procedural_model) -> None:
    model = procedural_model
    emb = model.landmark_embedding if rows is None else model.landmark_embedding.select(rows)
    lh = LandmarkHead(model, emb)
    assert lh.fast and lh.num_vertices < model.num_vertices
    x = {k: v.requires_grad_() for k, v in _inputs(T, S, E, seed=T + S).items()}
    y = {k: v.detach().clone().requires_grad_() for k, v in x.items()}
    fast = lh(**x)
    full = emb(model(**y).vertices, model.faces)
    assert fast.shape == (T, len(emb), 3)
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=1e-5)
    w = torch.randn(fast.shape, generator=torch.Generator().manual_seed(1))
    (fast * w).sum().backward()
    (full * w).sum().backward()
    for k in x:
        torch.testing.assert_close(x[k].grad, y[k].grad, atol=1e-5, rtol=1e-4, msg=k)


def test_other_models_are_evaluated_in_full(procedural_model) -> None:
    model = procedural_model
    calls = []

    class Wrapped(torch.nn.Module):
        faces = model.faces

        def forward(self, **kw):
            calls.append(1)
            return SimpleNamespace(vertices=model(**kw).vertices)

    lh = LandmarkHead(Wrapped(), model.landmark_embedding)
    assert not lh.fast
    x = _inputs(2, 20, 20, seed=3)
    torch.testing.assert_close(
        lh(**x), LandmarkHead(model, model.landmark_embedding)(**x), atol=1e-6, rtol=1e-5
    )
    assert calls


def test_too_many_components_is_an_error(procedural_model) -> None:
    model = procedural_model
    lh = LandmarkHead(model, model.landmark_embedding)
    with pytest.raises(ValueError, match="expression"):
        lh(**_inputs(1, 10, 101, seed=0))


@pytest.mark.parametrize("posed", [False, True])
def test_expression_jacobian_is_exact(posed: bool, procedural_model) -> None:
    """The closed-form d landmarks / d expression (float64) equals autograd's, at zero head pose
    and shape (what retargeting uses) and at a random shape, neck and global pose."""
    model = procedural_model
    lh = LandmarkHead(model, model.landmark_embedding.select(list(range(0, 478, 7)))).to(torch.float64)
    x = {k: v.double() for k, v in _inputs(2, 300, 100, seed=4).items()}
    if not posed:
        x["shape"] = torch.zeros_like(x["shape"])
        x.pop("global_orient"), x.pop("neck_pose")
    poses = {k: v for k, v in x.items() if k not in ("shape", "expression")}
    jac = lh.expression_jacobian(**poses)  # [K, L, 3, E]
    assert jac.shape == (2, len(lh.embedding), 3, 100)
    for k in range(2):

        def one(e: torch.Tensor, k: int = k) -> torch.Tensor:
            return lh(
                shape=x["shape"][k : k + 1], expression=e[None], **{n: p[k : k + 1] for n, p in poses.items()}
            )[0]

        ref = torch.autograd.functional.jacobian(one, x["expression"][k])
        torch.testing.assert_close(jac[k], ref, atol=1e-10, rtol=1e-9)


def test_missing_inputs_are_zero_and_other_models_have_no_jacobian(procedural_model) -> None:
    model = procedural_model
    lh = LandmarkHead(model, model.landmark_embedding)
    jaw = torch.tensor([[0.2, 0.0, 0.0]])
    sizes = {"shape": 300, "expression": 100, "global_orient": 3, "neck_pose": 3, "eye_pose": 6}
    zeros = {k: torch.zeros(1, n) for k, n in sizes.items()}
    torch.testing.assert_close(lh(jaw_pose=jaw), lh(jaw_pose=jaw, **zeros))
    with pytest.raises(ValueError, match="at least one input"):
        lh()

    class Full(torch.nn.Module):
        faces = model.faces

    with pytest.raises(TypeError, match="not a FlameModel"):
        LandmarkHead(Full(), model.landmark_embedding).expression_jacobian(jaw, torch.zeros(1, 6))
