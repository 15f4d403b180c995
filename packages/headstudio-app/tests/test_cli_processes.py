"""The ``headstudio`` console script as real processes: ``-q`` silences every progress bar
wherever it is given, and a run folder that another process writes is refused with one line that
names that process (exit 2, nothing written)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from headstudio.train.run_folder import RunFolder

#: What tqdm draws on stderr (a bar's "|" frame and its rate).
BAR_MARKS = ("it/s]", "s/it]", "%|")
#: A process that owns a run folder (as a running command would) until it is killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from headstudio.train.run_folder import RunFolder
    with RunFolder(sys.argv[1]).lock(command="headstudio demo --output " + sys.argv[1]):
        print("locked", flush=True)
        time.sleep(600)
    """
)


def _headstudio(*argv: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    exe = shutil.which("headstudio")
    cmd = [exe] if exe else [sys.executable, "-m", "headstudio.cli"]
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _has_bar(stderr: str) -> bool:
    return any(m in stderr for m in BAR_MARKS)


@pytest.mark.slow
def test_quiet_draws_no_bar_wherever_it_is_given(tmp_path: Path) -> None:
    """`headstudio --device cpu -q demo --quick` drew the training, turntable and animate bars: the
    subcommand's own defaults replaced the -q and --device given before it."""
    demo = tmp_path / "demo"
    res = _headstudio("--device", "cpu", "-q", "demo", "--quick", "--size", "16", "--steps", "2", "--output",
                      str(demo), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert not _has_bar(res.stderr), res.stderr
    assert '"device": "cpu"' in res.stdout  # --device before the command reached it too
    avatar = demo / "avatar.ply"
    turntable = ("render", str(avatar), "--turntable", "--frames", "3", "--size", "16")
    loud = _headstudio("--device", "cpu", *turntable, "-o", str(tmp_path / "a.mp4"), cwd=tmp_path)
    assert loud.returncode == 0 and _has_bar(loud.stderr), loud.stderr  # a bar is drawn without -q
    for quiet in (["-q", *turntable], [*turntable, "-q"]):
        res = _headstudio("--device", "cpu", *quiet, "-o", str(tmp_path / "b.mp4"), cwd=tmp_path)
        assert res.returncode == 0 and not _has_bar(res.stderr), res.stderr


@pytest.mark.parametrize("command", ["demo", "generate"])
def test_a_folder_written_by_another_process_is_refused(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
        argv = ["demo", "--quick"] if command == "demo" else ["generate", "a head", "--steps", "1"]
        res = _headstudio("--device", "cpu", "-q", *argv, "--output", str(folder), cwd=tmp_path)
        assert res.returncode == 2
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith(
            f"error: '{folder}' is being written by another process (pid {holder.pid} on "
        )
        assert f"on {socket.gethostname()}: headstudio demo --output {folder}); " in lines[0]
        assert lines[0].endswith("wait for it to end, or give another --output.")
        assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before  # nothing written
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
        holder.stderr.close()
    # killed (SIGKILL): its lock went with it
    assert RunFolder(folder).holder() is None
    assert os.listdir(folder) == [RunFolder.LOCK]
