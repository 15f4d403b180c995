"""The animation sampler: random frames of a motion file or of the procedural talking motion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from flame_core import FlameParams
from flame_core.motion import MotionSequence
from headstudio.errors import HeadStudioError
from headstudio.head_motion import fit_expression, fit_flame_params
from headstudio.train.animation_sampler import AnimationSampler


def five_frames(E: int = 12) -> MotionSequence:
    t = torch.arange(5, dtype=torch.float32)[:, None]
    return MotionSequence(
        expression=(t + 1) * torch.ones(5, E),
        jaw_pose=torch.cat([0.05 * (t + 1), torch.zeros(5, 2)], 1),
        neck_pose=0.01 * (t + 1) * torch.ones(5, 3),
        eye_pose=0.02 * (t + 1) * torch.ones(5, 6),
        global_orient=torch.ones(5, 3),  # ignored by the sampler
        fps=25.0,
    )


def test_samples_are_frames_of_the_motion() -> None:
    s = AnimationSampler(five_frames(), num_expression=10, neutral_prob=0.0)
    assert len(s) == 5
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        kw = s.sample(8, g)
        assert set(kw) == {"expression", "jaw_pose", "neck_pose", "eye_pose", "global_orient"}
        assert kw["expression"].shape == (8, 10) and kw["jaw_pose"].shape == (8, 3)
        assert kw["neck_pose"].shape == (8, 3) and kw["eye_pose"].shape == (8, 6)
        assert torch.equal(kw["global_orient"], torch.zeros(8, 3))
        frame = kw["expression"][:, 0] - 1  # which frame each sample is
        assert torch.equal(frame, frame.round()) and frame.min() >= 0 and frame.max() <= 4
        f = frame.long()
        torch.testing.assert_close(kw["jaw_pose"][:, 0], 0.05 * (f + 1).float())
        torch.testing.assert_close(kw["eye_pose"], 0.02 * (f + 1).float()[:, None].expand(-1, 6))
        seen |= set(f.tolist())
    assert seen == {0, 1, 2, 3, 4}


def test_neutral_probability() -> None:
    motion = five_frames()
    all_neutral = AnimationSampler(motion, 12, neutral_prob=1.0).sample(6, torch.Generator().manual_seed(0))
    for k, v in all_neutral.items():
        assert torch.equal(v, torch.zeros_like(v)), k
    s = AnimationSampler(motion, 12, neutral_prob=0.5)
    kw = s.sample(400, torch.Generator().manual_seed(1))
    neutral = (kw["expression"].abs().sum(-1) == 0) & (kw["jaw_pose"].abs().sum(-1) == 0)
    assert 0.4 < neutral.float().mean() < 0.6
    nothing = AnimationSampler(motion, 12, neutral_prob=0.0).sample(100, torch.Generator().manual_seed(1))
    assert (nothing["expression"].abs().sum(-1) > 0).all()


def test_default_training_motion_and_determinism() -> None:
    from flame_core.model import FlameModel
    from headstudio.head_motion import TRAINING_MOTION_FRAMES, training_motion

    s = AnimationSampler(training_motion(FlameModel.procedural(num_shape=10, num_expression=20)), 20)
    assert len(s) == TRAINING_MOTION_FRAMES == 300
    a = s.sample(16, torch.Generator().manual_seed(4))
    b = s.sample(16, torch.Generator().manual_seed(4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["expression"].shape == (16, 20)
    # the talking motion opens the jaw in some frames and is not constant
    allk = s.frames(list(range(len(s))))
    assert allk["jaw_pose"][:, 0].max() > 0.03
    assert allk["expression"][:, :10].std(0).max() > 0.05
    assert torch.equal(allk["expression"][:, 10:], torch.zeros(300, 10))


def test_motion_file_and_expression_fitting(tmp_path: Path) -> None:
    p = five_frames(E=3).save(tmp_path / "m.npz")
    s = AnimationSampler(p, num_expression=6, neutral_prob=0.0)
    kw = s.frames([2])
    torch.testing.assert_close(kw["expression"], torch.tensor([[3.0, 3.0, 3.0, 0.0, 0.0, 0.0]]))
    assert fit_expression(torch.ones(2, 8), 3).shape == (2, 3)
    padded = fit_flame_params(FlameParams(expression=torch.ones(2, 3), jaw_pose=torch.ones(2, 3)), 5)
    assert torch.equal(padded.expression, torch.tensor([[1.0, 1, 1, 0, 0]] * 2))
    assert torch.equal(padded.jaw_pose, torch.ones(2, 3))
    assert fit_flame_params(FlameParams(jaw_pose=torch.ones(1, 3)), 5).expression is None
    with pytest.raises(HeadStudioError, match="does not exist"):
        AnimationSampler(tmp_path / "missing.npz", 6)
    with pytest.raises(HeadStudioError, match="neutral_prob"):
        AnimationSampler(five_frames(), 6, neutral_prob=1.5)
    with pytest.raises(HeadStudioError, match="0..4"):
        s.frames([5])
    with pytest.raises(HeadStudioError, match="batch_size"):
        s.sample(0)
