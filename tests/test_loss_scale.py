"""Densification does not depend on the loss's scale, through the CLI: `headstudio generate` with
image guidance and every `loss.lambda_*` x1000 ends with the same number of Gaussians (issue 9;
before the statistic was normalised the x1000 run ended with 146,764 Gaussians instead of 11,636)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("headstudio.train.trainer")

from headstudio import cli  # noqa: E402

pytestmark = pytest.mark.slow

STEPS = 5
RUN = [
    "--device", "cpu", "-q", "--steps", str(STEPS),
    "--set", "guidance.kind=image", "--set", "train.resolution=32", "--set", "train.batch_size=2",
    "--set", "train.background=white", "--set", "init.points_per_face=1",
    "--set", "head.num_shape=10", "--set", "head.num_expression=10",
    "--set", "train.log_every=1", "--set", "train.preview_every=0", "--set", "train.checkpoint_every=0",
    "--set", "densify.densify_from=2", "--set", "densify.densify_every=2", "--set", "densify.densify_until=4",
    "--set", "densify.prune_from=5", "--set", "densify.prune_every=5", "--set", "densify.prune_until=5",
    "--set", "densify.screen_size_from=0", "--set", "regularizer.pos_from=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def targets_dir(tmp_path_factory) -> Path:
    """Photometric targets of the procedural teacher avatar, saved as `generate` reads them."""
    from flame_core import FlameModel
    from flame_core.motion import procedural_talking_motion
    from headstudio.config import CameraConfig
    from headstudio.demo.run import render_targets
    from headstudio.demo.teacher import build_teacher_avatar

    head = FlameModel.procedural(num_shape=10, num_expression=10)
    teacher = build_teacher_avatar(head, points_per_face=1)
    motion = procedural_talking_motion(num_frames=30, num_expression=10)
    targets = render_targets(teacher, 8, 32, CameraConfig(), motion, torch.Generator().manual_seed(0))
    return targets.save(tmp_path_factory.mktemp("targets") / "targets")


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def test_every_loss_weight_x1000_ends_with_the_same_gaussian_count(tmp_path: Path, targets_dir) -> None:
    """Up to the first densification (step 2) the runs agree to rounding, so it makes the same
    decisions; after it float rounding of x1000 may move a Gaussian across the threshold, so the
    final count is compared within the issue's 2 %."""
    from headstudio.config import LossConfig

    runs = {}
    for scale in (1, 1000):
        weights = [f"loss.{f.name}={f.default * scale}" for f in dataclasses.fields(LossConfig) if f.default]
        extra = [a for w in weights for a in ("--set", w)]
        out = tmp_path / f"x{scale}"
        targets = ["--set", f"guidance.targets_dir={targets_dir}"]
        assert cli.main(["generate", "a head", "--output", str(out), *RUN, *targets, *extra]) == 0
        runs[scale] = _records(out)
    one, thousand = runs[1], runs[1000]
    assert [r["step"] for r in one] == list(range(1, STEPS + 1))
    assert one[1]["n_cloned"] + one[1]["n_split"] > 0  # densification grew the avatar on step 2
    for a, b in zip(one[:2], thousand[:2], strict=True):
        for key in ("stat_mean", "stat_p50", "stat_p99", "reg_ratio", "scale_ratio"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)
        assert b["loss"] == pytest.approx(1000 * a["loss"], rel=1e-4)
        for key in ("num_gaussians", "n_cloned", "n_split", "n_pruned"):
            assert b[key] == a[key], (a["step"], key)
    n1, n1000 = one[-1]["num_gaussians"], thousand[-1]["num_gaussians"]
    assert abs(n1000 - n1) <= 0.02 * n1, (n1, n1000)
