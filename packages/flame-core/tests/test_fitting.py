"""fit_to_landmarks recovers known parameters from landmarks the procedural model made itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flame_core.fitting import fit_to_landmarks, project

SIZE = (512, 512)
FOCAL = 700.0


@pytest.fixture(scope="module")
def model(procedural_model):
    return procedural_model


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


def _talking(T: int = 8) -> dict[str, torch.Tensor]:
    """Jaw opening 0.02..0.27 rad, a blink (expression 5, 6), a smile (0) and a small head turn."""
    t = torch.linspace(0, 1, T)
    jaw = torch.zeros(T, 3)
    jaw[:, 0] = 0.02 + 0.25 * torch.sin(torch.pi * t) ** 2
    ex = torch.zeros(T, 10)
    ex[:, 0] = 0.5 * t
    ex[T // 2, 5] = ex[T // 2, 6] = 1.0
    go = torch.zeros(T, 3)
    go[:, 1] = 0.1 * t
    return {"jaw_pose": jaw, "expression": ex, "global_orient": go}


def test_weights_ignore_landmarks_given_zero_weight(model):
    """Landmarks with weight 0 can be anything: corrupting them does not change the fit at all,
    while the same corruption moves an unweighted fit's jaw."""
    truth = _talking(4)
    px = _render(model, **truth)
    bad = px.clone()
    rows = torch.arange(0, 478, 7)
    bad[:, rows] += 40.0
    w = torch.ones(478)
    w[rows] = 0.0
    kw = dict(focal=FOCAL, num_expression=10, steps=60, lbfgs_steps=20)
    clean = fit_to_landmarks(model, px, SIZE, weights=w, **kw)
    r = fit_to_landmarks(model, bad, SIZE, weights=w, **kw)
    for k in ("jaw_pose", "expression", "global_orient", "translation"):
        torch.testing.assert_close(r.params[k], clean.params[k], msg=k)
    assert float((r.params["jaw_pose"][:, 0] - truth["jaw_pose"][:, 0]).abs().max()) < 0.05
    unweighted = fit_to_landmarks(model, bad, SIZE, **kw)
    assert float((unweighted.params["jaw_pose"] - r.params["jaw_pose"]).abs().max()) > 0.02
    with pytest.raises(ValueError, match="weights"):
        fit_to_landmarks(model, px, SIZE, weights=torch.ones(3))
    with pytest.raises(ValueError, match="all zero"):
        fit_to_landmarks(model, px, SIZE, weights=torch.zeros(478))


def test_jaw_first_recovers_jaw_blink_and_smile(model):
    truth = _talking(8)
    px = _render(model, **truth)
    r = fit_to_landmarks(model, px, SIZE, focal=FOCAL, num_expression=10, jaw_first=True, lbfgs_steps=50)
    assert float(r.error_px.max()) < 0.5
    assert float((r.params["jaw_pose"][:, 0] - truth["jaw_pose"][:, 0]).abs().max()) < 0.02
    ex = r.params["expression"]
    assert float(ex[4, 5]) > 0.8 and float(ex[4, 6]) > 0.8  # the blink
    assert float(ex[[0, 1, 7], 5].abs().max()) < 0.15
    # an infinite anchor keeps the first stage's jaw: it is then the jaw of a fit without expression
    fixed = fit_to_landmarks(
        model, px, SIZE, focal=FOCAL, num_expression=10, jaw_first=True, jaw_anchor=float("inf"),
        steps=60, lbfgs_steps=10,
    )  # fmt: skip
    assert float((fixed.params["jaw_pose"][:, 0] - truth["jaw_pose"][:, 0]).abs().max()) < 0.06


def test_pairs_fit_differences_and_are_checked(model):
    """A detector that puts the whole eye region 6 px too high but the lids the right distance
    apart: weighted by pairs, the fitted lid gap follows the detector's gap."""
    truth = _talking(4)
    px = _render(model, **truth)
    shifted = px.clone()
    eye = [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173]
    shifted[:, eye, 1] -= 6.0
    pairs = [(159, 145), (158, 153), (160, 144)]
    kw = dict(focal=FOCAL, num_expression=10, steps=120, lbfgs_steps=40)
    with_pairs = fit_to_landmarks(model, shifted, SIZE, pairs=pairs, pair_weights=50.0, **kw)

    def gap(r) -> torch.Tensor:
        with torch.no_grad():
            out = model(
                shape=r.shape.expand(4, -1),
                **{
                    k: r.params[k]
                    for k in ("expression", "jaw_pose", "global_orient", "neck_pose", "eye_pose")
                },
            )
            lm = project(model.landmark_embedding(out.vertices, model.faces), r.translation, FOCAL, SIZE)
        return lm[:, 145, 1] - lm[:, 159, 1]

    true_gap = px[:, 145, 1] - px[:, 159, 1]
    assert float((gap(with_pairs) - true_gap).abs().max()) < 0.5
    with pytest.raises(ValueError, match=r"\[K, 2\]"):
        fit_to_landmarks(model, px, SIZE, pairs=[1, 2, 3])
    with pytest.raises(ValueError, match="not fitted"):
        fit_to_landmarks(model, px[:, :10], SIZE, landmark_ids=list(range(10)), pairs=[(1, 400)])


def test_per_component_expression_prior(model):
    truth = _talking(2)
    px = _render(model, **truth)
    prior = torch.full((10,), 1e-3)
    prior[0] = 1e3  # expression 0 (the smile) made prohibitively expensive
    r = fit_to_landmarks(
        model, px, SIZE, focal=FOCAL, num_expression=10, expression_prior=prior, steps=80, lbfgs_steps=20
    )
    assert float(r.params["expression"][:, 0].abs().max()) < 0.01
    with pytest.raises(ValueError, match="expression_prior"):
        fit_to_landmarks(model, px, SIZE, num_expression=10, expression_prior=torch.ones(4))
