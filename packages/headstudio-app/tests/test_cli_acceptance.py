"""Regression tests for defects found by acceptance-testing the `headstudio` CLI as a user."""

from __future__ import annotations

from pathlib import Path

import pytest
from headstudio import cli
from headstudio.commands import common, generate
from headstudio.commands import demo as demo_command


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main([*argv, "-q"])
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_error_line(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, (rc, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "internal error" not in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], lines[0]


def test_garbage_flame_pkl_is_a_user_error(capsys, tmp_path: Path) -> None:
    """A --flame file that is not a FLAME pickle was reported as an internal error (exit 1)."""
    av = tmp_path / "avatar.ply"
    av.write_bytes(b"ply\n")
    pkl = tmp_path / "bad.pkl"
    pkl.write_text("garbage\n")
    out = tmp_path / "o.mp4"
    rc, _, err = _run(capsys, "animate", str(av), "--flame", str(pkl), "-o", str(out), "--device", "cpu")
    _assert_one_error_line(rc, err, "bad.pkl", "not a readable FLAME model")
    assert err.startswith("error: --flame: ")  # the library names its argument, the CLI the flag
    assert not out.exists()


def test_outputs_are_not_owner_only(tmp_path: Path) -> None:
    """Videos and JSON written atomically came out mode 0600 (mkstemp's), unreadable to others."""
    import os

    import numpy as np
    from headstudio._atomic import atomic_output
    from headstudio.video import write_video

    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
        with atomic_output(tmp_path / "m.npz") as tmp:  # as MotionSequence.save: mkstemp + rename
            tmp.unlink()
            os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
        write_video(tmp_path / "v.mp4", [np.zeros((16, 16, 3), np.uint8)] * 2, fps=10.0)
    finally:
        os.umask(old)
    for name in ("a.json", "m.npz", "v.mp4"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_unreadable_wav_message_is_not_empty(
    capsys, tmp_path: Path, point_avatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text file named .wav gave 'is not a readable WAV file ().' with an empty reason."""
    av = tmp_path / "avatar.ply"
    av.write_bytes(b"ply\n")
    monkeypatch.setattr(common, "load_avatar", lambda path, flame, device, verify=True: point_avatar)
    wav = tmp_path / "voice.wav"
    wav.write_text("hi\n")
    out = tmp_path / "o.mp4"
    rc, _, err = _run(capsys, "animate", str(av), "--audio", str(wav), "-o", str(out), "--device", "cpu")
    _assert_one_error_line(rc, err, "voice.wav", "not a readable WAV file")
    assert "()" not in err
    assert not out.exists()


def test_clip_offline_fails_without_network_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, `eval` spent ~40 s in huggingface_hub retries and printed warnings before failing.

    Now the cache is tried with local_files_only=True first, and the network only if the hub is
    reachable.
    """
    import transformers
    from headstudio.errors import HeadStudioError
    from headstudio.output import evaluate

    calls: list[dict] = []

    def fake_from_pretrained(src, **kw):
        calls.append(kw)
        raise OSError("couldn't find them in the cached files")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HEADSTUDIO_CLIP_ROOT", raising=False)
    monkeypatch.setattr(transformers.CLIPModel, "from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(evaluate, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(HeadStudioError, match="hf download openai/clip-vit-base-patch32"):
        evaluate.ClipScorer("openai/clip-vit-base-patch32")
    assert calls == [{"local_files_only": True}]


def test_resume_keeps_the_runs_own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`generate --output D --resume` (the command the Ctrl-C message suggests) reset the run to
    the defaults: 10,000 steps instead of the run's --steps, and warned about every --set of the
    original run. It now starts from D/config.toml; explicit steps / overrides still apply."""
    from headstudio.config import HeadStudioConfig, save_config

    cfg = HeadStudioConfig()
    cfg.train.steps, cfg.train.resolution, cfg.guidance.kind = 7, 32, "image"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    save_config(cfg, run / "config.toml")
    seen: list = []

    class FakeTrainer:  # what the command hands the trainer
        @classmethod
        def resume(cls, folder, config, prompt, progress):
            seen.append((config, folder.holds_lock()))
            return cls()

        def train(self) -> Path:
            return run / "avatar.ply"

    monkeypatch.setattr(generate, "Trainer", FakeTrainer)
    res = generate.run(generate.GenerateOptions("a head", output=run, resume=True, device="cpu"))
    assert res.resumed and res.avatar == run / "avatar.ply"
    config, locked = seen[-1]
    assert locked  # the run folder is owned while the trainer writes it
    assert config.train.steps == 7 and config.train.resolution == 32
    assert config.guidance.kind == "image"
    generate.run(generate.GenerateOptions("a head", output=run, resume=True, device="cpu", steps=9))
    assert seen[-1][0].train.steps == 9 and seen[-1][0].train.resolution == 32


def test_procedural_head_mismatch_does_not_suggest_flame(capsys, tmp_path: Path) -> None:
    """An avatar on the procedural head whose head hash does not match said 'pass --flame <the
    right file> (the FLAME model procedural)', advice that cannot work for the procedural head."""
    import torch
    from flame_core import FlameModel
    from headstudio.avatar import Avatar
    from headstudio.config import InitConfig

    head = FlameModel.procedural(num_shape=10, num_expression=10)
    avatar = Avatar.initialize(head, InitConfig(points_per_face=1), torch.Generator().manual_seed(0))
    # an avatar made on another version of the procedural head: a valid file (its checksum holds)
    # whose recorded head hash is not this version's
    head._identity_hash = "0" * 64
    path = avatar.save(tmp_path / "avatar.ply", prompt="a test head")
    out = tmp_path / "posed.ply"
    rc, _, err = _run(capsys, "export", str(path), "-o", str(out), "--device", "cpu")
    _assert_one_error_line(rc, err, "procedural head", "re-create the avatar")
    assert "--flame" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["render", "AV", "--views", "2", "-o", "OUT.png", "--elevation", "nan"],
        ["export", "AV", "-o", "OUT.ply", "--jaw", "nan"],
        ["export", "AV", "-o", "OUT.ply", "--jaw", "inf"],
        ["export", "AV", "-o", "OUT.ply", "--expression", "0=nan"],
        ["export", "AV", "-o", "OUT.ply", "--expression", "0=inf"],
        ["drive", "AV", "--video", "IN.mp4", "-o", "OUT.mp4", "--smoothing", "nan"],
        ["drive", "AV", "--video", "IN.mp4", "-o", "OUT.mp4", "--smoothing", "-1"],
    ],
)
def test_non_finite_numbers_are_rejected(
    capsys, tmp_path: Path, point_avatar, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """NaN / inf reached the renderer or the PLY writer (exit 1, 'internal error'), or a NaN
    smoothing weight was used silently; now they are one-line usage errors."""
    av = tmp_path / "avatar.ply"
    av.write_bytes(b"ply\n")
    (tmp_path / "IN.mp4").write_bytes(b"\0")
    monkeypatch.setattr(common, "load_avatar", lambda path, flame, device, verify=True: point_avatar)
    out_name = next(a for a in argv if a.startswith("OUT"))
    argv = [str(av) if a == "AV" else str(tmp_path / a) if a in ("IN.mp4", out_name) else a for a in argv]
    rc, _, err = _run(capsys, *argv, "--device", "cpu")
    _assert_one_error_line(rc, err)
    assert "finite" in err or "positive" in err
    assert not (tmp_path / out_name).exists()


def test_generate_shows_the_guidance_load_error_as_it_is(capsys, tmp_path: Path) -> None:
    """The app rewrote fsds-guidance's load error with the model ids typed out again; now
    fsds-guidance's own message is shown as it is (on one line), then the flags that set its
    arguments."""
    missing = tmp_path / "no-such-model"
    rc, _, err = _run(
        capsys, "generate", "a head", "--output", str(tmp_path / "r"), "--device", "cpu",
        "--set", f"guidance.base_model={missing}", "--set", "init.points_per_face=1",
    )  # fmt: skip
    _assert_one_error_line(
        rc,
        err,
        "Could not load the guidance models",
        str(missing),
        "hf download",
        "--set guidance.base_model=DIR",
    )
    assert not (tmp_path / "r" / "avatar.ply").exists()


def test_demo_ctrl_c_says_rerun_demo(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in `demo` passed on the trainer's advice, `headstudio generate "the procedural
    teacher head (offline demo)" --output D --resume`, which never writes the demo's videos/PSNR."""

    def interrupted(out, **_):
        raise KeyboardInterrupt(
            f'interrupted at step 3/9; continue with: headstudio generate "x" --output {out} --resume'
        )

    monkeypatch.setattr(demo_command, "run_demo", interrupted)
    rc = cli.main(["demo", "--output", str(tmp_path / "d"), "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 130
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: demo interrupted"), err
    assert "headstudio demo --output" in err and "generate" not in err


def test_demo_removes_previous_results_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo re-run in the same directory that failed early left the previous run's avatar.ply,
    videos and demo.json beside the new targets, looking like this run's results."""
    from headstudio.demo import run as demo

    out = tmp_path / "d"
    (out / "checkpoints").mkdir(parents=True)
    names = ("checkpoints/last.pt", "avatar.ply", "turntable.mp4", "animation.mp4", "demo.json")
    for name in names:
        (out / name).write_bytes(b"old")

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    monkeypatch.setattr(demo, "demo_config", stop)  # fail right after the clean-up
    with pytest.raises(Stop):
        demo.run_demo(out, size=16, steps=1, device="cpu", progress=False)
    assert not any((out / name).exists() for name in names)
