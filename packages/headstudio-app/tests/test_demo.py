"""The offline demo's pieces (the full run and its PSNR bar: tests/test_end_to_end.py)."""

from __future__ import annotations

import json
import math

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


@pytest.mark.parametrize("steps", [60, 200, 1000, 63])
def test_demo_config_compresses_the_schedule_into_the_run(steps):
    """Whatever the length of the run, the densification schedule the strategy will follow (its own
    ``is_densify_step`` / ``is_prune_step``) grows and prunes three times in the first two thirds,
    prunes alone once more, and leaves the last fifth of the run to settle."""
    from headstudio.demo.run import demo_config

    cfg = demo_config(48, steps, "cpu", seed=3)
    t, d = cfg.train, cfg.densify
    assert (t.steps, t.resolution, t.seed, t.device, t.background) == (steps, 48, 3, "cpu", "white")
    assert t.guidance_resolution % 8 == 0 and cfg.guidance.kind == "image"
    assert cfg.init.points_per_face == 1
    grow = [s for s in range(1, steps + 1) if d.is_densify_step(s)]
    prune_only = [s for s in range(1, steps + 1) if d.is_prune_step(s) and not d.is_densify_step(s)]
    assert len(grow) == 3 and len(prune_only) == 1
    assert grow[-1] < prune_only[0] <= 0.8 * steps
    if steps % 5 == 0:  # at 20 %, 40 %, 60 % and 80 % of the run, as the docstring says
        assert [s / steps for s in grow + prune_only] == [0.2, 0.4, 0.6, 0.8]
    assert d.screen_size_from == grow[0]
    # the shape stops learning after the last densification, before the end; a checkpoint and a
    # preview land inside the run
    assert prune_only[0] <= t.shape_stop_step < t.steps
    assert cfg.regularizer.pos_from == prune_only[0]  # the position term with the prune-only phase (issue 20)
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


@pytest.mark.slow  # a real (small) demo run
def test_cli_demo_runs_and_prints_what_it_wrote(tmp_path, monkeypatch, capsys):
    """``headstudio demo --quick --steps 2 -q`` runs the real demo (made smaller where the CLI has no
    flag: fewer targets, two-frame videos): ``--quick`` picks the size, ``--steps`` wins over its
    step count, ``-q`` turns the bars off, and what it prints is the run's own record, ``demo.json``,
    naming the avatar and videos it wrote."""
    from headstudio import cli
    from headstudio.avatar import Avatar
    from headstudio.commands import demo as demo_command
    from headstudio.demo import run as demo
    from headstudio.video import probe_video

    asked = {}

    def smaller(out, **kw):
        asked.update(kw)
        return demo.run_demo(out, **kw, num_targets=4, num_heldout=2, video_frames=2)

    monkeypatch.setattr(demo_command, "run_demo", smaller)  # the command's, not the CLI's
    out = tmp_path / "d"
    assert cli.main(["demo", "--quick", "--steps", "2", "-q", "--device", "cpu", "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "demo.json").read_text())
    assert (printed["size"], printed["steps"], printed["device"]) == (demo_command.QUICK_SIZE, 2, "cpu")
    assert asked["progress"] is False
    assert Avatar.load(printed["avatar"]).num_gaussians == printed["num_gaussians"]
    for video in ("turntable", "animation"):
        assert probe_video(printed[video]).num_frames == 2
    for key in ("psnr_heldout_views", "psnr_heldout_expressions"):
        assert math.isfinite(printed[key]) and printed[key] > 0
