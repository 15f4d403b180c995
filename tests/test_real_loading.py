"""`headstudio generate` through the real model loader: the tiny models on disk in the hub layout,
named with --set guidance.base_model=DIR --set guidance.controlnet=DIR; nothing is monkeypatched."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("headstudio.train.trainer")

from headstudio import cli  # noqa: E402

pytestmark = pytest.mark.slow

TINY = [
    "--device", "cpu", "-q", "--steps", "2",
    "--set", "train.resolution=64", "--set", "train.guidance_resolution=64",
    "--set", "train.batch_size=1", "--set", "init.points_per_face=1",
    "--set", "head.num_shape=10", "--set", "head.num_expression=10", "--set", "train.log_every=1",
]  # fmt: skip


def _generate(out: Path, base: Path, controlnet: Path, *extra: str) -> int:
    models = ["--set", f"guidance.base_model={base}", "--set", f"guidance.controlnet={controlnet}"]
    return cli.main(["generate", "a DSLR portrait of Kratos", "--output", str(out), *TINY, *models, *extra])


def _check_avatar(out: Path) -> None:
    from headstudio.avatar import Avatar

    avatar = Avatar.load(out / "avatar.ply")
    assert avatar.num_gaussians > 0
    assert all(torch.isfinite(p).all() for p in avatar.gaussian_params().values())
    assert len((out / "log.jsonl").read_text().splitlines()) == 2


def test_generate_loads_the_saved_models(tmp_path: Path, tiny_pipeline, capsys) -> None:
    base, controlnet = tiny_pipeline
    assert _generate(tmp_path / "run", base, controlnet) == 0
    assert "avatar written to" in capsys.readouterr().out
    _check_avatar(tmp_path / "run")
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    losses = [json.loads(line).get("loss_sds") for line in log]
    assert all(v is not None and v == v for v in losses)  # the F-SDS loss of the loaded models, not NaN


def test_generate_with_a_flame_folder_and_a_tokenizer_without_max_length(
    tmp_path: Path, tiny_pipeline, capsys
) -> None:
    """A FLAME-format head whose folder holds only the 105-point embedding, and a tokenizer folder
    that never set model_max_length (it reads back as 1e30; this ended in an internal error)."""
    from flame_core.procedural import build_procedural_head
    from fsds_guidance.testing import set_tokenizer_max_length

    base = shutil.copytree(tiny_pipeline[0], tmp_path / "sd15")
    set_tokenizer_max_length(base, None)
    flame = build_procedural_head().save(tmp_path / "flame", full_embedding=False) / "procedural_flame.pkl"
    code = _generate(tmp_path / "run", base, tiny_pipeline[1], "--set", f"head.flame_path={flame}")
    assert code == 0, capsys.readouterr().err
    _check_avatar(tmp_path / "run")


def test_dry_run_reports_and_writes_nothing(tmp_path: Path, tiny_pipeline, capsys) -> None:
    """`generate --dry-run`: the real loading path (hub-layout models, a FLAME folder), 3 training
    steps of the run's settings, ms/step, the ETA of the configured steps and peak memory; no avatar,
    no output folder. On a FLAME head without a motion file it names the motion that trains."""
    from flame_core.procedural import build_procedural_head

    flame = build_procedural_head().save(tmp_path / "flame", full_embedding=False) / "procedural_flame.pkl"
    out = tmp_path / "run"
    code = _generate(out, *tiny_pipeline, "--dry-run", "--steps", "500", "--set", f"head.flame_path={flame}")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = captured.out
    assert "dry run: 3 steps" in text and "nothing written" in text
    step_ms = re.search(r"ms per step: (\d+), (\d+), (\d+) ", text)
    assert step_ms and all(int(x) > 0 for x in step_ms.groups())
    eta = re.search(r"ETA of the whole run \(500 steps at (\d+) ms/step\): (.+) at the initial N", text)
    assert eta and int(eta.group(1)) > 0
    assert re.search(r"peak resident memory of the process: \d+\.\d\d GiB", text)
    # issue 20: the position term starts at regularizer.pos_from (2400), so the 3 steps report the
    # scale term's ratio and when the position term starts
    assert "scale term / guidance" in text and "position term starts at step regularizer.pos_from" in text
    assert not out.exists()  # no avatar, no checkpoint, no log
    motion_lines = [ln for ln in captured.err.splitlines() if "no train.motion_path" in ln]
    assert len(motion_lines) == 1 and "retargeted to" in motion_lines[0]
    assert cli.main(["generate", "a head", "--output", str(out), "--dry-run", "--resume", "-q"]) == 2
    assert "--dry-run rehearses a new run" in capsys.readouterr().err
