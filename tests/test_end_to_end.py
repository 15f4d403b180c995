"""End to end on the CPU through the `headstudio` CLI: generate with the tiny F-SDS models,
resume after a stop, animate the result, and the offline demo's quality bar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("flame_core.motion")
pytest.importorskip("rigged_gaussians.ply")
pytest.importorskip("headstudio.demo.teacher")

from headstudio import cli  # noqa: E402
from headstudio.train import guidance  # noqa: E402
from headstudio.video import probe_video  # noqa: E402

TINY = [
    "--device", "cpu", "-q",
    "--set", "train.resolution=64", "--set", "train.guidance_resolution=64",
    "--set", "train.batch_size=2", "--set", "init.points_per_face=1",
    "--set", "train.preview_every=2", "--set", "train.log_every=1",
    "--set", "head.num_shape=10", "--set", "head.num_expression=10",
    # densify on step 2 (after the first stop), prune on step 4: crossed by the resume test
    "--set", "densify.densify_from=2", "--set", "densify.densify_every=2", "--set", "densify.densify_until=2",
    "--set", "densify.prune_from=4", "--set", "densify.prune_every=2", "--set", "densify.prune_until=4",
    "--set", "densify.grad_threshold=0.0",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_models():
    from fsds_guidance.testing import tiny_components

    return tiny_components()


@pytest.fixture
def offline_fsds(monkeypatch: pytest.MonkeyPatch, tiny_models):
    """`headstudio generate` loads the tiny random-weight models instead of SD 1.5."""
    monkeypatch.setattr(guidance.FSDSGuidance, "_load_models", lambda self, config: tiny_models)


def _generate(out: Path, steps: int, *extra: str) -> int:
    return cli.main(
        ["generate", "a DSLR portrait of Kratos", "--output", str(out), "--steps", str(steps), *TINY, *extra]
    )


def _gaussians(path: Path) -> dict[str, torch.Tensor]:
    from headstudio.avatar import Avatar

    a = Avatar.load(path)
    out = {k: p.detach() for k, p in a.gaussian_params().items()}
    out["shape"], out["face_ids"] = a.shape.detach(), a.face_ids
    return out


def test_generate_writes_a_valid_avatar_and_animates(tmp_path: Path, offline_fsds, capsys) -> None:
    from headstudio.avatar import Avatar
    from headstudio.config import load_config

    out = tmp_path / "kratos"
    assert _generate(out, 4) == 0
    assert "avatar written to" in capsys.readouterr().out
    avatar = Avatar.load(out / "avatar.ply")  # head resolved from the file (procedural)
    assert avatar.metadata.get("prompt") == "a DSLR portrait of Kratos"
    assert avatar.num_gaussians > 0 and avatar.head.num_expression == 10
    for p in avatar.gaussian_params().values():
        assert torch.isfinite(p).all()
    cfg = load_config(out / "config.toml")
    assert (cfg.train.steps, cfg.train.resolution, cfg.guidance.kind) == (4, 64, "fsds")
    assert len((out / "log.jsonl").read_text().splitlines()) == 4
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["step_00002.png", "step_00004.png"]
    # the avatar renders and animates
    with torch.no_grad():
        vm = torch.eye(4)[None, None].clone()
        vm[..., 2, 3] = 0.6
        k = torch.tensor([[[[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]]]])
        img = avatar.render(vm, k, 64, 64).rgb
    assert img.shape == (1, 1, 64, 64, 3) and torch.isfinite(img).all()
    video = tmp_path / "talk.mp4"
    assert cli.main(["animate", str(out / "avatar.ply"), "--frames", "5", "--size", "32", "-o", str(video),
                     "--device", "cpu", "-q"]) == 0  # fmt: skip
    assert probe_video(video).num_frames == 5


def test_stopped_and_resumed_run_is_bit_identical(tmp_path: Path, offline_fsds) -> None:
    """`generate --steps 2` then `generate --steps 5 --resume` equals one `--steps 5` run."""
    small = ("--set", "train.resolution=32")
    assert _generate(tmp_path / "once", 5, *small) == 0
    assert _generate(tmp_path / "twice", 2, *small) == 0
    assert _generate(tmp_path / "twice", 5, "--resume", *small) == 0
    a, b = _gaussians(tmp_path / "once" / "avatar.ply"), _gaussians(tmp_path / "twice" / "avatar.ply")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    records = [json.loads(x) for x in (tmp_path / "twice" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    counts = [r["num_gaussians"] for r in records]
    assert counts[1] > counts[0]  # densified at step 2, before the stop: the resume carries N
    assert a["means"].shape[0] == counts[-1]


def test_generate_refuses_to_overwrite_a_run(tmp_path: Path, offline_fsds, capsys) -> None:
    assert _generate(tmp_path / "r", 1) == 0
    capsys.readouterr()
    assert _generate(tmp_path / "r", 1) == 2
    assert "--resume" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- demo

#: The demo's quality bar at the reduced size (32², 100 steps, 48 targets). Measured on the CPU:
#: 22.3 dB on held-out views and 25.4 dB on held-out expressions after training, against
#: 12.7 / 12.3 dB for the untrained initialisation (grey Gaussians on the same head). The bar
#: asks for most of that: >= 20 dB absolute (mean error below ~10 % of the range: skin, hair,
#: lips and eyes in the right places from unseen cameras and with unseen expressions) and
#: >= 6 dB above the initialisation. The teacher's hair volume (issue 22) made the small run
#: harder: at 60 steps it reached only 19.7 dB on the held-out views (the student's hair stops
#: short of the teacher's silhouette), so the run is 100 steps long, leaving ~2 dB of margin.
DEMO_MIN_PSNR = 20.0
DEMO_MIN_GAIN = 6.0


def test_demo_reaches_the_psnr_bar(tmp_path: Path) -> None:
    from headstudio.avatar import Avatar
    from headstudio.demo.run import run_demo

    res = run_demo(
        tmp_path / "demo", size=32, steps=100, device="cpu", num_targets=48, num_heldout=8, video_frames=6,
        progress=False,
    )  # fmt: skip
    for split in ("views", "expressions"):
        trained, init = res[f"psnr_heldout_{split}"], res[f"psnr_init_heldout_{split}"]
        assert trained >= DEMO_MIN_PSNR, (split, trained)
        assert trained >= init + DEMO_MIN_GAIN, (split, trained, init)
    avatar = Avatar.load(res["avatar"])
    assert avatar.num_gaussians == res["num_gaussians"]
    assert probe_video(res["turntable"]).num_frames == 6
    assert probe_video(res["animation"]).num_frames == 6
    assert (
        json.loads((tmp_path / "demo" / "demo.json").read_text())["psnr_heldout_views"]
        == res["psnr_heldout_views"]
    )
    # the saved targets reproduce the run's training set (image guidance from disk)
    from headstudio.config import load_config
    from headstudio.train.targets import TargetSet

    cfg = load_config(tmp_path / "demo" / "config.toml")
    assert cfg.guidance.kind == "image" and len(TargetSet.load(cfg.guidance.targets_dir)) == 48
