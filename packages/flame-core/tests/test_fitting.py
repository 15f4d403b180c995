"""fit_to_landmarks recovers known parameters from landmarks the procedural model made itself."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _procedural_model import procedural_model  # noqa: E402
from flame_core.fitting import fit_to_landmarks, project  # noqa: E402

SIZE = (512, 512)
FOCAL = 700.0


@pytest.fixture(scope="module")
def model():
    return procedural_model()


def _render(model, **kw) -> torch.Tensor:
    with torch.no_grad():
        out = model(**kw)
        lm = model.landmark_embedding(out.vertices, model.faces)
    T = lm.shape[0]
    tr = torch.tensor([[0.01, -0.015, 0.65]]).repeat(T, 1)
    return project(lm, tr, FOCAL, SIZE)


def test_fit_single_frame(model):
    ex = torch.zeros(1, 10)
    ex[0, 0], ex[0, 3] = 0.8, -0.6
    px = _render(
        model,
        jaw_pose=torch.tensor([[0.22, 0.0, 0.0]]),
        global_orient=torch.tensor([[0.05, 0.2, -0.03]]),
        expression=ex,
    )
    assert px.min() > 0 and px.max() < 512
    r = fit_to_landmarks(model, px, SIZE, focal=FOCAL)
    assert abs(float(r.params["jaw_pose"][0, 0]) - 0.22) < 0.02
    assert float(r.error_px[0]) < 1.0
    # global and neck yaw are interchangeable up to translation for face landmarks: check the sum
    yaw = float(r.params["global_orient"][0, 1] + r.params["neck_pose"][0, 1])
    assert abs(yaw - 0.2) < 0.03
    assert abs(float(r.translation[0, 2]) - 0.65) < 0.05
    assert r.shape.shape[0] == 1
    assert r.camera["focal"] == FOCAL and r.camera["principal_point"] == (256.0, 256.0)


def test_fit_sequence_with_smoothing(model):
    T = 6
    t = torch.linspace(0, 1, T)
    jaw = torch.zeros(T, 3)
    jaw[:, 0] = 0.1 + 0.1 * torch.sin(4 * t)
    go = torch.zeros(T, 3)
    go[:, 1] = 0.15 * torch.sin(3 * t)
    px = _render(model, jaw_pose=jaw, global_orient=go)
    r = fit_to_landmarks(model, px, SIZE, focal=FOCAL, smoothing=0.01, steps=120)
    assert r.error_px.shape == (T,)
    assert float(r.error_px.max()) < 1.5
    assert float((r.params["jaw_pose"][:, 0] - jaw[:, 0]).abs().max()) < 0.03
    motion = r.motion
    assert motion.jaw_pose.shape == (T, 3) and motion.fps == 30.0
    # the motion's translation is the head's displacement from frame 0 in FLAME axes: re-rendering
    # the motion with frame 0's camera gives the same pixels as the per-frame cameras
    torch.testing.assert_close(motion.translation[0], torch.zeros(3))
    with torch.no_grad():
        lm = model.landmark_embedding(model(**motion.flame_kwargs()).vertices, model.faces)
    px_fixed = project(lm, r.translation[:1].expand(T, -1), FOCAL, SIZE)
    kw = {k: v for k, v in motion.flame_kwargs().items() if k != "translation"}
    with torch.no_grad():
        lm0 = model.landmark_embedding(model(**kw).vertices, model.faces)
    torch.testing.assert_close(px_fixed, project(lm0, r.translation, FOCAL, SIZE), atol=1e-3, rtol=0)


def test_fit_rejects_bad_input(model):
    with pytest.raises(ValueError, match=r"\[T, L, 2\]"):
        fit_to_landmarks(model, np.zeros((1, 478, 3)), SIZE)
    bad = np.zeros((1, 478, 2))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_to_landmarks(model, bad, SIZE)
    with pytest.raises(ValueError, match="landmark_ids"):
        fit_to_landmarks(model, np.zeros((1, 10, 2)), SIZE, landmark_ids=[1, 2])
