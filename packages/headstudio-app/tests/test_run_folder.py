"""RunFolder: the layout, the states (new, resumable, finished, damaged), the resume rule and the
folder's lock, taken by real processes (one killed with SIGKILL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from headstudio.errors import HeadStudioError
from headstudio.train.run_folder import RunFolder

#: A process that takes the folder's lock, says so, and holds it until it is killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from headstudio.train.run_folder import RunFolder
    with RunFolder(sys.argv[1]).lock(command="holder for the test"):
        open(sys.argv[1] + "/written-by-holder", "w").close()
        print("locked", flush=True)
        time.sleep(600)
    """
)
#: A process that tries to take the lock: exit 0 when it got it, else its one line and exit 2.
TAKER = textwrap.dedent(
    """
    import sys
    from headstudio.train.run_folder import RunFolder, RunFolderBusy
    try:
        with RunFolder(sys.argv[1]).lock(wait=sys.argv[2] == "wait"):
            open(sys.argv[1] + "/written-by-taker", "w").close()
    except RunFolderBusy as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    """
)


def _start_holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()  # blocks until it holds the lock (or died)
    assert line.strip() == "locked", proc.stderr.read()
    return proc


def _take(folder: Path, wait: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", TAKER, str(folder), "wait" if wait else "now"],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


def test_layout() -> None:
    f = RunFolder("runs/kratos")
    assert f.checkpoint == Path("runs/kratos/checkpoints/last.pt")
    assert f.previous_checkpoint == Path("runs/kratos/checkpoints/previous.pt")
    assert f.set_aside_checkpoint == Path("runs/kratos/checkpoints/last.set-aside.pt")
    assert f.config == Path("runs/kratos/config.toml")
    assert f.avatar == Path("runs/kratos/avatar.ply")
    assert f.log == Path("runs/kratos/log.jsonl")
    assert f.preview(12) == Path("runs/kratos/previews/step_00012.png")
    assert os.fspath(f) == "runs/kratos"


def test_second_process_is_refused_naming_the_writer_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = _start_holder(folder)
    try:
        before = sorted(os.listdir(folder))
        lock_text = (folder / RunFolder.LOCK).read_text()
        res = _take(folder)
        assert res.returncode == 2
        line = res.stderr.strip()
        assert "\n" not in line
        assert f"pid {holder.pid} on {socket.gethostname()}: holder for the test" in line, line
        assert "another «output»" in line
        assert sorted(os.listdir(folder)) == before  # nothing written
        assert (folder / RunFolder.LOCK).read_text() == lock_text  # the holder's record is intact
        assert RunFolder(folder).holder()["pid"] == holder.pid
    finally:
        _stop(holder)


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = _start_holder(folder)
    os.kill(holder.pid, signal.SIGKILL)
    _stop(holder)
    assert (folder / RunFolder.LOCK).is_file()  # its file is still there, its lock is not
    assert RunFolder(folder).holder() is None
    res = _take(folder)
    assert res.returncode == 0, res.stderr
    assert (folder / "written-by-taker").is_file()


def test_wait_takes_the_lock_when_the_holder_dies(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = _start_holder(folder)
    try:
        taker = subprocess.Popen(
            [sys.executable, "-c", TAKER, str(folder), "wait"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        deadline, seen = time.monotonic() + 60, ""
        while "waiting for another process" not in seen and time.monotonic() < deadline:
            seen += _peek(taker)
        assert f"(pid {holder.pid} on" in seen, seen
        assert not (folder / "written-by-taker").exists()  # it waits
        os.kill(holder.pid, signal.SIGKILL)
        out, err = taker.communicate(timeout=120)
        assert taker.returncode == 0, seen + err
        assert (folder / "written-by-taker").is_file()
    finally:
        _stop(holder)


def _peek(proc: subprocess.Popen) -> str:
    """What ``proc`` wrote on stderr so far (it logs one line when it starts waiting)."""
    import select

    if proc.poll() is not None:
        return proc.stderr.read()
    ready, _, _ = select.select([proc.stderr], [], [], 0.05)
    return proc.stderr.readline() if ready else ""


def test_the_lock_is_reentrant_in_one_process_and_a_failed_command_leaves_nothing(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "new")
    with folder.lock(command="outer"):
        with folder.lock(command="inner"):  # the command and the trainer it runs
            assert folder.holds_lock()
        assert folder.holds_lock()
        assert folder.holder()["command"] == "outer"
    assert not folder.holds_lock()
    assert not folder.path.exists()  # made by the lock, nothing else written: removed again
    with folder.lock():
        (folder.path / "log.jsonl").write_text("{}\n")
    assert folder.path.is_dir() and (folder.path / RunFolder.LOCK).read_text() == ""


def test_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("x")
    with pytest.raises(HeadStudioError, match="exists and is not a directory"):
        with RunFolder(tmp_path / "run").lock():
            pass


def test_resume_rule(tmp_path: Path) -> None:
    f = RunFolder(tmp_path / "run")
    assert f.resolve_resume(None) is False
    assert f.resolve_resume(False) is False
    with pytest.raises(
        HeadStudioError, match=r"«resume»: no checkpoint at .*last\.pt'; run without «resume»"
    ):
        f.resolve_resume(True)
    f.checkpoints.mkdir(parents=True)
    f.checkpoint.write_bytes(b"not a checkpoint")
    assert f.resolve_resume(None) is True
    assert f.resolve_resume(True) is True
    with pytest.raises(HeadStudioError, match=r"already holds a run \(checkpoints/last\.pt\); continue it"):
        f.resolve_resume(False)


def test_states(tmp_path: Path, tiny_run: Path) -> None:
    assert RunFolder(tmp_path / "absent").inspect().state == "new"
    run = RunFolder(tiny_run)
    assert run.inspect().state == "finished"
    assert run.inspect().gaussians and run.inspect().gaussians > 0
    from headstudio.config import load_config

    more = load_config(run.config, ["train.steps=5"])
    state = run.inspect("a portrait", more)
    assert state.state == "resumable" and "has 2 steps of the 5 asked" in state.note
    with pytest.raises(HeadStudioError, match="holds the avatar of another item .*prompt 'a portrait'"):
        run.inspect("another prompt", more)
    run.avatar.unlink()
    assert run.inspect().state == "resumable"
    run.checkpoint.write_bytes(run.checkpoint.read_bytes()[:100])
    damaged = run.inspect()
    assert damaged.state == "damaged" and "previous.pt" in damaged.note


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run on the tiny models (checkpoint every step: previous.pt is there)."""
    from flame_core.model import FlameModel
    from fsds_guidance.testing import tiny_components
    from headstudio.config import HeadStudioConfig
    from headstudio.train.guidance import FSDSGuidance
    from headstudio.train.trainer import Trainer

    cfg = HeadStudioConfig()
    cfg.head.num_shape, cfg.head.num_expression = 10, 10
    t = cfg.train
    t.steps, t.batch_size, t.resolution, t.guidance_resolution, t.device = 2, 1, 32, 64, "cpu"
    t.log_every, t.preview_every, t.checkpoint_every = 1, 0, 1
    cfg.init.points_per_face = 1
    cfg.densify.enabled = False
    head = FlameModel.procedural(num_shape=10, num_expression=10)
    guidance = FSDSGuidance(
        cfg.guidance, head, "cpu", models=tiny_components(), prompt="a portrait", image_size=64, seed=0
    )
    out = tmp_path_factory.mktemp("tiny") / "run"
    Trainer.new(cfg, "a portrait", out, guidance=guidance, head=head, progress=False).train()
    return out


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (
            ["/venv/bin/python3", "/venv/bin/headstudio", "demo", "--output", "my run"],
            "headstudio demo --output 'my run'",
        ),
        (["/venv/bin/headstudio", "generate", "a head"], "headstudio generate 'a head'"),
        (["/usr/bin/python3.11", "-m", "headstudio.cli", "demo"], "python3.11 -m headstudio.cli demo"),
    ],
)
def test_the_lock_names_the_command_as_typed(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], shown: str
) -> None:
    from headstudio.train.folder_lock import process_command

    monkeypatch.setattr(sys, "orig_argv", argv)
    assert process_command() == shown
