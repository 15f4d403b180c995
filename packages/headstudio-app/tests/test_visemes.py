"""Visemes as landmark targets: what they look like, and fitted to the procedural head and to a
FLAME-format head whose expression basis is mixed (retargeting, not copying coefficients)."""

from __future__ import annotations

import functools

import pytest
import torch
from flame_core.model import FlameModel
from flame_core.procedural import build_procedural_head
from flame_core.retarget import face_scale, landmark_error_px, neutral_landmarks
from headstudio.animate.speech.visemes import GESTURES, VISEMES, fit_visemes, viseme_poses, viseme_targets

UPPER, LOWER, RIGHT, LEFT = 13, 14, 61, 291  # inner-lip midpoints, mouth corners (MediaPipe ids)


@functools.lru_cache(maxsize=1)
def _procedural() -> FlameModel:
    return FlameModel.procedural()


def _landmarks(head: FlameModel, **kw: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return head.landmark_embedding(head(**kw).vertices, head.faces)


def test_viseme_shapes_mean_what_they_say() -> None:
    head = _procedural()
    names, expr, jaw = viseme_poses(head.num_expression)
    assert names == VISEMES + GESTURES and len(VISEMES) == 15
    lm = _landmarks(head, expression=expr, jaw_pose=jaw)
    gap = {n: float(lm[i, UPPER, 1] - lm[i, LOWER, 1]) for i, n in enumerate(names)}
    width = {n: float(lm[i, LEFT, 0] - lm[i, RIGHT, 0]) for i, n in enumerate(names)}
    assert gap["aa"] > gap["O"] > gap["E"] > gap["I"] > gap["sil"] + 0.004  # open → close vowels
    assert gap["PP"] == pytest.approx(gap["sil"], abs=1e-4)  # lips together
    assert width["U"] < width["O"] < width["sil"] < width["E"] < width["I"]  # rounded vs spread
    assert width["CH"] < width["sil"] < width["SS"]


def _target_landmarks(head: FlameModel, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The targets placed on ``head`` (its neutral face + offsets at its face scale), on the ids it has."""
    targets = viseme_targets()
    neutral, ids = neutral_landmarks(head)
    row = {int(m): i for i, m in enumerate(targets.landmark_ids.tolist())}
    # the rows the head measures (not the face oval / irises derived for a FLAME folder)
    shared = [i for i, m in enumerate(ids.tolist()) if int(m) in row and m not in head.derived_landmark_ids]
    rows = torch.tensor([row[int(ids[i])] for i in shared])
    per_unit = face_scale(neutral[shared]) / face_scale(targets.neutral[rows])
    sel = torch.tensor([targets.names.index(n) for n in names])
    goal = neutral[shared][None] + targets.offsets[sel][:, rows] * per_unit
    return goal, torch.tensor(shared)


def _fitted_error_px(head: FlameModel) -> dict[str, float]:
    """Max landmark distance (pixels, 512² frontal view) between the head posed with its fitted
    visemes and the targets."""
    basis = fit_visemes(head)
    goal, shared = _target_landmarks(head, basis.names)
    got = _landmarks(head, expression=basis.expression, jaw_pose=basis.jaw_pose)[:, shared]
    neutral, _ = neutral_landmarks(head)
    dist = (got - goal).norm(dim=-1).amax(1) / face_scale(neutral[shared])
    return dict(zip(basis.names, landmark_error_px(dist).tolist()))


def test_fitted_visemes_hit_their_targets_on_the_procedural_head() -> None:
    err = _fitted_error_px(_procedural())
    print("procedural head, max landmark error (px at 512²):", {k: round(v, 3) for k, v in err.items()})
    assert set(err) == set(VISEMES + GESTURES)
    assert max(err.values()) < 1.0


@pytest.mark.slow
def test_mixed_expression_basis_gets_the_same_mouth_shapes(tmp_path) -> None:
    """The procedural head saved as a FLAME pickle with its expression basis rotated by a random
    orthogonal matrix: no coefficient means what it meant, yet the fitted visemes put the
    landmarks (the 105 of FLAME's MediaPipe embedding file) where the targets are."""
    ph = build_procedural_head()
    mixed = FlameModel.from_file(
        ph.disguised(seed=7).save(tmp_path, full_embedding=False) / "procedural_flame.pkl"
    )
    assert mixed.identity_hash() != _procedural().identity_hash()
    # FLAME's 105 points, then the face oval and irises flame_core derives for such a folder
    assert torch.equal(mixed.landmark_embedding.landmark_indices[:105], ph.embedding105.landmark_indices)
    assert len(mixed.derived_landmark_ids) == len(mixed.landmark_embedding) - 105 > 0

    err = _fitted_error_px(mixed)
    print(
        "mixed-basis FLAME file, max landmark error (px at 512²):", {k: round(v, 3) for k, v in err.items()}
    )
    assert max(err.values()) < 1.0
    # the same mouth, different coefficients: the procedural head's viseme coefficients would be wrong here
    a, b = fit_visemes(_procedural()), fit_visemes(mixed)
    i = a.names.index("aa")
    lm_a = _landmarks(_procedural(), expression=a.expression[i : i + 1], jaw_pose=a.jaw_pose[i : i + 1])
    lm_wrong = _landmarks(mixed, expression=a.expression[i : i + 1], jaw_pose=a.jaw_pose[i : i + 1])
    ids = mixed.landmark_embedding.landmark_indices
    assert (lm_wrong[0] - lm_a[0, ids]).norm(dim=-1).max() > 1e-3
    assert not torch.allclose(a.expression, b.expression, atol=1e-2)


def test_fits_are_cached_by_identity() -> None:
    import time

    head = _procedural()
    first = fit_visemes(head)
    t = time.perf_counter()
    again = fit_visemes(head)
    assert time.perf_counter() - t < 1.0
    assert torch.equal(first.expression, again.expression) and again.identity == head.identity_hash()
