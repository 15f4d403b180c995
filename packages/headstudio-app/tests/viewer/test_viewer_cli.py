"""The command line of the viewer: ``headstudio view`` and ``headstudio export --format web|ply-sequence``."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from headstudio.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "web", "-o", "out.ply"], "writes a folder"),
        (["--format", "web", "-o", "out", "--jaw", "0.2"], "--jaw poses a single PLY"),
        (
            ["--format", "ply-sequence", "-o", "seq", "--motion-frame", "3"],
            "--motion-frame poses a single PLY",
        ),
        (["-o", "out.ply", "--audio", "x.wav"], "does not exist"),
        (["--format", "ply-sequence", "-o", "seq", "--include-head-model"], "applies to --format web"),
        (["--format", "gltf", "-o", "x"], "invalid choice"),
    ],
)
def test_export_rejects_impossible_combinations(
    teacher_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    os.chdir(tmp_path)
    assert main(["export", str(teacher_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert sorted(os.listdir(tmp_path)) == []


def test_export_audio_needs_web(teacher_path: Path, tone_wav: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["export", str(teacher_path), "-o", str(tmp_path / "a.ply"), "--audio", str(tone_wav)]) == 2
    assert "use it with --format web" in capsys.readouterr().err


def test_export_web_and_ply_sequence_commands(
    teacher_path: Path, tone_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from flame_core.motion import procedural_talking_motion

    motion = tmp_path / "talk.npz"
    procedural_talking_motion(num_frames=12).save(motion)
    web = tmp_path / "web"
    code = main(["export", str(teacher_path), "--format", "web", "-o", str(web), "--motion", str(motion),
                 "--audio", str(tone_wav), "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "index.html" in capsys.readouterr().out
    text = (web / "data.js").read_text()
    manifest = json.loads(text[text.index("=") + 1 : text.rindex(";")])["manifest"]
    assert [p["name"] for p in manifest["presets"]] == ["neutral", "smile", "open_mouth", "blink", "surprise"]
    assert manifest["motion"]["frames"] == 12 and manifest["head_model"] is not None
    seq = tmp_path / "seq"
    args = ["export", str(teacher_path), "--format", "ply-sequence", "-o", str(seq), "--motion", str(motion)]
    assert main([*args, "-q"]) == 0
    assert len(list(seq.glob("frame_*.ply"))) == 12


def test_view_serves_until_ctrl_c(teacher_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "headstudio.cli", "view", str(teacher_path), "--no-browser", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = ""
        deadline = time.time() + 240
        while "headstudio viewer at" not in line and time.time() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
        assert "headstudio viewer at http://127.0.0.1:" in line, (line, proc.poll())
        url = line.split()[3]
        with urllib.request.urlopen(url + "avatar.json", timeout=30) as r:
            manifest = json.load(r)
        assert manifest["motion"]["frames"] == 120 and len(manifest["presets"]) == 5
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "viewer stopped" in out and "error" not in err


def test_view_rejects_a_taken_port(teacher_path: Path, serve: Any, teacher: Any, capsys: Any) -> None:
    srv = serve(teacher)
    assert main(["view", str(teacher_path), "--no-browser", "--port", str(srv.port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot listen on 127.0.0.1:{srv.port}"), err
