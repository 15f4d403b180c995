"""flame_core.retarget: landmark targets fitted to any head, checked by posing the head again."""

from __future__ import annotations

import logging

import flame_core.retarget as rt
import pytest
import torch
from flame_core import FlameModel
from flame_core.landmark_head import LandmarkHead
from flame_core.motion import MotionSequence, procedural_talking_motion
from flame_core.procedural import build_procedural_head
from flame_core.retarget import (
    PRESET_NAMES,
    LandmarkTargets,
    default_training_motion,
    expression_presets,
    fit_targets,
    retarget_motion,
)

SIZE = 512


@pytest.fixture(scope="module")
def proc() -> FlameModel:
    return FlameModel.procedural(num_shape=10, num_expression=100)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> FlameModel:
    """The procedural head saved as a FLAME pickle whose expression basis is mixed by a random
    orthogonal matrix, with only the 105-point embedding beside it (what a real FLAME folder
    carries), loaded back through :meth:`FlameModel.from_file`."""
    folder = (
        build_procedural_head()
        .disguised(seed=7)
        .save(tmp_path_factory.mktemp("mixed-basis"), full_embedding=False)
    )
    return FlameModel.from_file(folder / "procedural_flame.pkl", 10, 100, derive_landmarks=False)


def _landmarks(head: FlameModel, **kw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        lmk = head.landmark_embedding(head(**kw).vertices, head.faces)
    return lmk, head.landmark_embedding.landmark_indices


def _pixels(points: torch.Tensor, neutral: torch.Tensor) -> torch.Tensor:
    """Project head-frame points with a frontal pinhole camera whose view of ``neutral`` spans 60 %
    of a 512² image vertically (the framing of a face close-up)."""
    centre = neutral.mean(0)
    span = float(neutral[:, 1].max() - neutral[:, 1].min())
    dist = 0.5
    focal = 0.6 * SIZE * dist / span
    p = points - centre
    z = dist - p[..., 2]  # camera on +z looking back at the face
    return torch.stack([focal * p[..., 0] / z, -focal * p[..., 1] / z], -1) + SIZE / 2


def _max_px_error(head: FlameModel, fit: dict[str, torch.Tensor], targets: LandmarkTargets) -> float:
    """Pose ``head`` with the fit and compare its landmarks with the targets, in pixels."""
    got, ids = _landmarks(
        head, expression=fit["expression"], jaw_pose=fit["jaw_pose"], eye_pose=fit["eye_pose"]
    )
    neutral, _ = _landmarks(head)
    row = {int(m): i for i, m in enumerate(targets.landmark_ids.tolist())}
    rows = torch.tensor([row[int(m)] for m in ids])
    per_unit = rt.face_scale(neutral[0]) / rt.face_scale(targets.neutral[rows])
    want = neutral + targets.offsets[:, rows] * per_unit
    return float((_pixels(got, neutral[0]) - _pixels(want, neutral[0])).norm(dim=-1).max())


def test_landmark_head_on_a_mixed_basis_and_the_105_point_embedding(mixed):
    """retarget evaluates heads through flame_core.LandmarkHead (tested in full in
    test_landmark_head.py): also on a FLAME-format head with only its 105 measured rows."""
    emb = mixed.landmark_embedding
    sub = LandmarkHead(mixed, emb)
    g = torch.Generator().manual_seed(0)
    expr = torch.randn(4, 100, generator=g)
    jaw = torch.randn(4, 3, generator=g) * 0.2
    eyes = torch.randn(4, 6, generator=g) * 0.2
    full, _ = _landmarks(mixed, expression=expr, jaw_pose=jaw, eye_pose=eyes)
    assert torch.allclose(sub(expression=expr, jaw_pose=jaw, eye_pose=eyes), full, atol=1e-6)


def test_presets_fit_the_procedural_head_within_a_pixel(proc):
    targets = expression_presets()
    assert targets.names == PRESET_NAMES
    fit = fit_targets(proc, targets, cache=False)
    assert fit["expression"].shape == (5, 100) and fit["jaw_pose"].shape == (5, 3)
    assert _max_px_error(proc, fit, targets) < 1.0
    assert float(fit["jaw_pose"][PRESET_NAMES.index("open_mouth"), 0]) == pytest.approx(0.3, abs=0.01)
    assert float(fit["expression"].abs().max()) > 0.5  # the presets are not all neutral


def test_retargeted_motion_reproduces_landmarks_on_a_mixed_basis(proc, mixed):
    motion = procedural_talking_motion(num_frames=40, num_expression=100, seed=3)
    kw = {k: v for k, v in motion.flame_kwargs(None).items() if k in ("expression", "jaw_pose", "eye_pose")}
    targets = LandmarkTargets.from_poses(proc, [str(i) for i in range(40)], **kw)
    # the naive transfer (same coefficients on the other basis) moves the wrong landmarks
    assert _max_px_error(mixed, {**kw, "eye_pose": kw["eye_pose"]}, targets) > 5.0
    out = retarget_motion(motion, proc, mixed)
    fitted = out.flame_kwargs(None)
    assert _max_px_error(mixed, fitted, targets) < 1.0
    for key in ("neck_pose", "eye_pose", "global_orient", "translation"):
        assert torch.equal(fitted[key], motion.flame_kwargs(None)[key])
    assert out.fps == motion.fps and len(out) == len(motion)


def test_retarget_to_the_same_head_is_the_identity(proc):
    motion = procedural_talking_motion(num_frames=10)
    assert retarget_motion(motion, proc, FlameModel.procedural(num_shape=3, num_expression=100)) is motion


def test_default_training_motion(proc, mixed, caplog):
    plain = procedural_talking_motion(num_frames=30, num_expression=100, seed=2)
    same = default_training_motion(proc, num_frames=30, seed=2)
    assert torch.equal(same.expression, plain.expression) and torch.equal(same.jaw_pose, plain.jaw_pose)
    narrow = default_training_motion(
        FlameModel.procedural(num_shape=3, num_expression=20), num_frames=30, seed=2
    )
    assert narrow.expression.shape == (30, 20)
    with caplog.at_level(logging.INFO, logger="flame_core.retarget"):
        moved = default_training_motion(mixed, num_frames=30, seed=2)
    assert any(
        "retargeted to" in m and m.endswith("procedural_flame.pkl through landmarks")
        for m in (r.getMessage() for r in caplog.records)
    )
    assert not torch.equal(moved.expression, plain.expression)
    targets = LandmarkTargets.from_poses(
        proc, [str(i) for i in range(30)], expression=plain.expression, jaw_pose=plain.jaw_pose,
        eye_pose=plain.eye_pose,
    )  # fmt: skip
    assert _max_px_error(mixed, moved.flame_kwargs(None), targets) < 1.0


def test_cache_memory_disk_and_damage(proc, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(rt.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(rt, "_memory_cache", {})
    targets = expression_presets().select(["smile", "blink"])
    calls = []
    real = rt._fit
    monkeypatch.setattr(rt, "_fit", lambda *a: calls.append(1) or real(*a))
    first = fit_targets(proc, targets)
    files = list((tmp_path / "retarget").glob("*.pt"))
    assert len(calls) == 1 and len(files) == 1
    again = fit_targets(proc, targets)  # memory
    rt._memory_cache.clear()
    disk = fit_targets(proc, targets)  # disk
    assert len(calls) == 1
    assert torch.equal(first["expression"], again["expression"]) and torch.equal(
        first["expression"], disk["expression"]
    )
    first["expression"].zero_()  # callers get copies
    assert fit_targets(proc, targets)["expression"].abs().max() > 0
    rt._memory_cache.clear()
    files[0].write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING, logger="flame_core.retarget"):
        refit = fit_targets(proc, targets)
    assert len(calls) == 2 and torch.allclose(refit["expression"], disk["expression"])
    assert any("unreadable retarget cache" in r.getMessage() for r in caplog.records)
    # a head with another expression width, or another landmark embedding, is another cache entry
    fit_targets(FlameModel.procedural(num_shape=3, num_expression=20), targets)
    assert len(calls) == 3
    other = FlameModel.procedural(num_shape=3, num_expression=100)
    other.landmark_embedding = other.landmark_embedding.select(range(0, 468, 2))
    fit_targets(other, targets)
    assert len(calls) == 4


def test_targets_validation_and_errors(proc):
    t = expression_presets()
    assert t.select(["blink", "smile"]).names == ("blink", "smile")
    with pytest.raises(KeyError, match="no targets named"):
        t.select(["frown"])
    with pytest.raises(ValueError, match="offsets must be"):
        LandmarkTargets(("a",), torch.zeros(2, 3, 3), torch.zeros(3, 3), torch.arange(3), torch.zeros(1, 6))
    with pytest.raises(ValueError, match="one row per name"):
        LandmarkTargets.from_poses(proc, ["a", "b"], expression=torch.zeros(3, 10))
    assert t.fingerprint() == expression_presets().fingerprint() != t.select(["smile"]).fingerprint()
    bare = FlameModel(build_procedural_head().model_dict, 3, 10, source="bare")
    with pytest.raises(ValueError, match="no MediaPipe landmark embedding"):
        fit_targets(bare, t, cache=False)
    few = FlameModel(
        build_procedural_head().model_dict, 3, 10, source="few",
        landmark_embedding=build_procedural_head().embedding.select([1, 2, 3]),
    )  # fmt: skip
    with pytest.raises(ValueError, match="at least 8"):
        fit_targets(few, t, cache=False)


def test_motion_sequence_roundtrip_of_retargeted_motion(proc, mixed, tmp_path):
    out = retarget_motion(procedural_talking_motion(num_frames=8), proc, mixed)
    out.save(tmp_path / "m.npz")
    back = MotionSequence.load(tmp_path / "m.npz")
    assert torch.allclose(back.expression, out.expression)
