"""The offline demo's pieces (the full run and its PSNR bar: tests/test_end_to_end.py)."""

from __future__ import annotations

import json

import pytest
import torch
from headstudio.errors import HeadStudioError


@pytest.fixture(scope="module")
def teacher():
    from flame_core.model import FlameModel
    from headstudio.demo.teacher import build_teacher_avatar

    head = FlameModel.procedural(num_shape=10, num_expression=10)
    return build_teacher_avatar(head, points_per_face=1).eval()


@pytest.fixture(scope="module")
def motion():
    from flame_core.motion import procedural_talking_motion

    return procedural_talking_motion(num_frames=30, num_expression=10)


def test_demo_config_compresses_the_schedule_into_the_run():
    from headstudio.demo.run import demo_config

    cfg = demo_config(48, 200, "cpu", seed=3)
    t, d = cfg.train, cfg.densify
    assert (t.steps, t.resolution, t.seed, t.device, t.background) == (200, 48, 3, "cpu", "white")
    assert t.guidance_resolution % 8 == 0 and cfg.guidance.kind == "image"
    assert cfg.init.points_per_face == 1
    densify_steps = [
        s for s in range(1, 201) if s % d.densify_every == 0 and d.densify_from <= s <= d.densify_until
    ]
    prune_steps = [s for s in range(1, 201) if s % d.prune_every == 0 and d.prune_from <= s <= d.prune_until]
    assert densify_steps == [40, 80, 120] and prune_steps == [160]
    assert 0 < t.shape_stop_step < t.steps
    assert t.checkpoint_every <= t.steps and t.preview_every <= t.steps


def test_render_targets_is_deterministic_and_follows_the_pose(teacher, motion):
    from headstudio.config import CameraConfig
    from headstudio.demo.run import render_targets

    a = render_targets(teacher, 4, 24, CameraConfig(), motion, torch.Generator().manual_seed(0))
    b = render_targets(teacher, 4, 24, CameraConfig(), motion, torch.Generator().manual_seed(0))
    assert a.images.shape == (4, 24, 24, 3) and a.viewmats.shape == (4, 4, 4)
    assert torch.equal(a.images, b.images) and torch.equal(a.flame["expression"], b.flame["expression"])
    assert set(a.flame) == {"expression", "jaw_pose", "neck_pose", "eye_pose"}
    assert a.images.min() >= 0 and a.images.max() <= 1
    assert (a.images < 0.95).any(dim=-1).float().mean() > 0.05  # the head is in view, not just background


def test_evaluate_scores_the_teacher_against_itself(teacher, motion, tmp_path):
    from headstudio.config import CameraConfig
    from headstudio.demo.run import _evaluate, render_targets
    from headstudio.train.targets import TargetSet

    ts = render_targets(teacher, 3, 24, CameraConfig(), motion, torch.Generator().manual_seed(1))
    assert _evaluate(teacher, ts) > 60  # same cameras, same poses: identical up to float noise
    ts.save(tmp_path / "t")
    assert 40 < _evaluate(teacher, TargetSet.load(tmp_path / "t")) < 80  # 8-bit PNG quantisation


def test_run_demo_rejects_bad_sizes(tmp_path):
    from headstudio.demo.run import run_demo

    with pytest.raises(HeadStudioError, match="at least 16"):
        run_demo(tmp_path, size=8, steps=1)
    with pytest.raises(HeadStudioError, match="at least 1"):
        run_demo(tmp_path, size=32, steps=0)


def test_cli_demo_passes_its_options(tmp_path, monkeypatch, capsys):
    from headstudio import cli

    seen = {}

    def fake(out, **kw):
        seen.update(kw, out=out)
        return {"psnr_heldout_views": 30.0}

    from headstudio.commands import demo

    monkeypatch.setattr(demo, "run_demo", fake)
    assert cli.main(["demo", "--quick", "-q", "--device", "cpu", "--output", str(tmp_path / "d")]) == 0
    assert seen["size"] == demo.QUICK_SIZE and seen["steps"] == demo.QUICK_STEPS
    assert seen["progress"] is False and str(seen["device"]) == "cpu"
    assert json.loads(capsys.readouterr().out)["psnr_heldout_views"] == 30.0
