"""FlameParams: FLAME's animation parameters named once, and the model's inputs are those names."""

from __future__ import annotations

import inspect

import pytest
import torch
from flame_core import FlameModel, FlameParams


def test_names_are_the_models_inputs_besides_shape() -> None:
    accepted = set(inspect.signature(FlameModel.forward).parameters) - {"self", "shape"}
    assert set(FlameParams.names()) <= accepted
    assert set(FlameParams.POSES) <= set(FlameParams.names())
    assert FlameParams.POSES[: len(FlameParams.ROTATIONS)] == FlameParams.ROTATIONS


def test_from_kwargs_and_back(procedural_model: FlameModel) -> None:
    jaw = torch.tensor([[0.2, 0.0, 0.0]])
    p = FlameParams.from_kwargs({"jaw_pose": jaw, "expression": torch.zeros(1, 5)})
    assert set(p.kwargs()) == {"jaw_pose", "expression"} and p.kwargs()["jaw_pose"] is jaw
    opened = procedural_model(**p.kwargs()).vertices
    closed = procedural_model(**FlameParams(expression=torch.zeros(1, 5)).kwargs()).vertices
    assert not torch.equal(opened, closed)  # the jaw reached the model
    with pytest.raises(ValueError, match=r"unknown FLAME parameters \['jaw'\]"):
        FlameParams.from_kwargs({"jaw": jaw})


def test_map_and_to_touch_only_the_given_tensors() -> None:
    p = FlameParams(
        expression=torch.arange(10.0).reshape(2, 5), jaw_pose=torch.ones(2, 3, dtype=torch.float64)
    )
    first = p.map(lambda t: t[:1])
    assert first.expression.tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0]] and first.jaw_pose.shape == (1, 3)
    assert first.neck_pose is None and p.expression.shape == (2, 5)  # a new value; p is unchanged
    cast = p.to(torch.float32)
    assert {v.dtype for v in cast.kwargs().values()} == {torch.float32} and cast.eye_pose is None
    assert FlameParams().to("cpu") == FlameParams()
