"""The `headstudio` CLI: outputs of animate/render/export and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from headstudio import cli
from headstudio.commands import common
from headstudio.video import probe_video


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main([*argv, "-q"] if argv and argv[0] != "--help" else list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_error_line(rc: int, err: str, *needles: str) -> None:
    assert rc != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture
def fake_avatar_file(tmp_path: Path, point_avatar, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An avatar path whose loading yields the point avatar (until the real Avatar exists)."""
    p = tmp_path / "avatar.ply"
    p.write_bytes(b"ply\n")
    monkeypatch.setattr(common, "load_avatar", lambda path, flame, device, verify=True: point_avatar)
    return p


# ------------------------------------------------------------------------------ error paths


def test_missing_avatar(capsys, tmp_path: Path) -> None:
    rc, _, err = _run(capsys, "animate", str(tmp_path / "nope.ply"), "-o", str(tmp_path / "o.mp4"))
    _assert_one_error_line(rc, err, "nope.ply' does not exist")
    assert rc == 2 and not (tmp_path / "o.mp4").exists()


def test_wrong_formats(capsys, tmp_path: Path) -> None:
    av = tmp_path / "avatar.ply"
    av.write_bytes(b"ply\n")
    notes = tmp_path / "motion.txt"
    notes.write_text("hello")
    rc, _, err = _run(capsys, "animate", str(av), "--motion", str(notes), "-o", str(tmp_path / "o.mp4"))
    _assert_one_error_line(rc, err, "motion file", ".txt")
    rc, _, err = _run(capsys, "animate", str(notes), "-o", str(tmp_path / "o.mp4"))
    _assert_one_error_line(rc, err, "avatar", "expected one of .ply")
    rc, _, err = _run(capsys, "animate", str(av), "-o", str(tmp_path / "o.gif"))
    _assert_one_error_line(rc, err, "must end in .mp4")
    rc, _, err = _run(capsys, "export", str(av), "-o", str(tmp_path / "o.obj"))
    _assert_one_error_line(rc, err, "must end in .ply")


def test_corrupt_avatar_is_one_line(capsys, tmp_path: Path) -> None:
    pytest.importorskip("headstudio.avatar")
    av = tmp_path / "garbage.ply"
    av.write_bytes(b"this is not a ply file at all")
    rc, _, err = _run(
        capsys, "render", str(av), "--views", "2", "-o", str(tmp_path / "v.png"), "--device", "cpu"
    )
    _assert_one_error_line(rc, err, "garbage.ply")
    assert not (tmp_path / "v.png").exists()


def test_empty_prompt(capsys, tmp_path: Path) -> None:
    rc, _, err = _run(capsys, "generate", "   ", "--output", str(tmp_path / "run"))
    _assert_one_error_line(rc, err, "prompt is empty")
    assert not (tmp_path / "run").exists()
    av = tmp_path / "avatar.ply"
    av.write_bytes(b"ply\n")
    rc, _, err = _run(capsys, "eval", str(av), "--prompt", "")
    _assert_one_error_line(rc, err, "prompt is empty")


@pytest.mark.parametrize("size", ["0", "-4", "100000", "12x0", "abc"])
def test_impossible_resolution(capsys, tmp_path: Path, size: str) -> None:
    av = tmp_path / "avatar.ply"
    av.write_bytes(b"ply\n")
    rc, _, err = _run(
        capsys, "render", str(av), "--views", "2", "--size", size, "-o", str(tmp_path / "v.png")
    )
    _assert_one_error_line(rc, err, "resolution")
    assert rc == 2


def test_unknown_device(capsys, tmp_path: Path) -> None:
    av = tmp_path / "avatar.ply"
    av.write_bytes(b"ply\n")
    rc, _, err = _run(capsys, "animate", str(av), "-o", str(tmp_path / "o.mp4"), "--device", "tpu")
    _assert_one_error_line(rc, err, "unknown device 'tpu'", "cpu")
    rc, _, err = _run(capsys, "generate", "a head", "--device", "quantum", "--output", str(tmp_path / "r"))
    _assert_one_error_line(rc, err, "error: --device: unknown device 'quantum'")
    if not torch.cuda.is_available():
        rc, _, err = _run(capsys, "animate", str(av), "-o", str(tmp_path / "o.mp4"), "--device", "cuda")
        _assert_one_error_line(rc, err, "CUDA is not available")


def test_usage_errors_are_one_line(capsys) -> None:
    rc, _, err = _run(capsys, "animate")
    _assert_one_error_line(rc, err, "required")
    rc, _, err = _run(capsys, "frobnicate")
    _assert_one_error_line(rc, err, "frobnicate")
    assert cli.main(["--help"]) == 0
    assert "generate" in capsys.readouterr().out


def test_resume_without_checkpoint(capsys, tmp_path: Path) -> None:
    rc, _, err = _run(
        capsys, "generate", "a head", "--resume", "--output", str(tmp_path / "run"), "--device", "cpu"
    )
    _assert_one_error_line(rc, err, "no checkpoint")


@pytest.mark.slow
def test_subprocess_exit_code_and_single_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "headstudio.cli", "animate", str(tmp_path / "missing.ply"), "-o", "x.mp4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    _assert_one_error_line(proc.returncode, proc.stderr, "missing.ply")


def test_ctrl_c_removes_partial_video(
    capsys, tmp_path: Path, fake_avatar_file: Path, point_avatar, monkeypatch
) -> None:
    calls = {"n": 0}
    real_render = point_avatar.render

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_render(*a, **k)

    monkeypatch.setattr(point_avatar, "render", flaky)
    out = tmp_path / "turn.mp4"
    rc, _, err = _run(
        capsys,
        "render",
        str(fake_avatar_file),
        "--turntable",
        "--frames",
        "40",
        "--size",
        "32",
        "-o",
        str(out),
    )
    _assert_one_error_line(rc, err, "interrupted")
    assert rc == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avatar.ply"]  # no partial MP4 / temporaries


def test_cuda_oom_is_one_line(
    capsys, tmp_path: Path, fake_avatar_file: Path, point_avatar, monkeypatch
) -> None:
    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(point_avatar, "render", oom)
    out = tmp_path / "t.mp4"
    rc, _, err = _run(capsys, "render", str(fake_avatar_file), "--turntable", "--size", "32", "-o", str(out))
    _assert_one_error_line(rc, err, "CUDA out of memory", "--size")
    assert not out.exists()


def test_debug_shows_traceback(capsys, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        cli.main(["animate", str(tmp_path / "nope.ply"), "-o", str(tmp_path / "o.mp4"), "--debug"])


# ------------------------------------------------------------------------------ success paths


def test_animate_render_commands(
    capsys, tmp_path: Path, fake_avatar_file: Path, sine_wav: Path, point_avatar
) -> None:
    out = tmp_path / "talk.mp4"
    rc, stdout, err = _run(
        capsys,
        "animate",
        str(fake_avatar_file),
        "--audio",
        str(sine_wav),
        "--fps",
        "10",
        "--size",
        "32",
        "-o",
        str(out),
    )
    assert rc == 0, err
    info = probe_video(out)
    assert info.num_frames == 10 and info.has_audio


def test_render_commands(capsys, tmp_path: Path, fake_avatar_file: Path) -> None:
    out = tmp_path / "turn.mp4"
    rc, stdout, err = _run(
        capsys,
        "render",
        str(fake_avatar_file),
        "--turntable",
        "--frames",
        "8",
        "--size",
        "32x24",
        "-o",
        str(out),
    )
    assert rc == 0, err
    info = probe_video(out)
    assert (info.num_frames, info.width, info.height) == (8, 32, 24)
    rc, stdout, err = _run(
        capsys, "render", str(fake_avatar_file), "--views", "3", "--size", "32", "-o", str(tmp_path / "views")
    )
    assert rc == 0, err
    assert len(list((tmp_path / "views").glob("view_*.png"))) == 3


def test_export_command_posed_differs(capsys, tmp_path: Path, fake_avatar_file: Path) -> None:
    ply = pytest.importorskip("rigged_gaussians.ply")
    neutral, opened = tmp_path / "neutral.ply", tmp_path / "open.ply"
    assert _run(capsys, "export", str(fake_avatar_file), "-o", str(neutral))[0] == 0
    rc, _, err = _run(
        capsys, "export", str(fake_avatar_file), "-o", str(opened), "--jaw", "0.4", "--expression", "0=1.0"
    )
    assert rc == 0, err
    a, b = ply.load_ply(neutral), ply.load_ply(opened)
    assert np.asarray(a.means).shape == np.asarray(b.means).shape
    moved = np.linalg.norm(np.asarray(b.means) - np.asarray(a.means), axis=-1)
    assert moved.max() > 1e-3
    assert b.metadata["posed"] is True
    rc, _, err = _run(capsys, "export", str(fake_avatar_file), "-o", str(opened), "--expression", "99=1")
    _assert_one_error_line(rc, err, "out of range")
