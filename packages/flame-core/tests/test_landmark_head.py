"""LandmarkHead (FLAME at the landmarks' vertices only) against the full model + embedding."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _procedural_model import procedural_model  # noqa: E402
from flame_core.landmark_head import LandmarkHead  # noqa: E402


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
def test_matches_full_model_values_and_gradients(T, S, E, rows) -> None:
    model = procedural_model()
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


def test_other_models_are_evaluated_in_full() -> None:
    model = procedural_model()
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


def test_too_many_components_is_an_error() -> None:
    model = procedural_model()
    lh = LandmarkHead(model, model.landmark_embedding)
    with pytest.raises(ValueError, match="expression"):
        lh(**_inputs(1, 10, 101, seed=0))
