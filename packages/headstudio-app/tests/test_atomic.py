"""Atomic files and folders (``headstudio._atomic``): temporaries named by the writer's process,
swept on the next write once that process is gone, and a folder swap whose previous folder can
always be found (the killed-writer tests in tests/test_killed_writers.py kill real writers)."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from headstudio import _atomic
from headstudio._atomic import atomic_folder, atomic_output, recover_folder, sweep_stale
from headstudio.errors import HeadStudioError


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(proc.stdout)
    assert not _atomic._pid_alive(pid)
    return pid


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def _owned(d: Path) -> bool:
    return (d / "data.js").is_file()


def _read(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in d.iterdir()}


def test_file_partials_of_finished_writers_are_swept(tmp_path: Path, dead_pid: int) -> None:
    stale = tmp_path / f".head.partial-{dead_pid}-abc.glb"
    live = tmp_path / f".head.partial-{os.getpid()}-abc.glb"  # a writer still running (this one)
    other = tmp_path / f".head.partial-{dead_pid}-abc.ply"  # another output's (its suffix)
    legacy = tmp_path / ".head.partial-k2j4_x9q.glb"  # no process id: not ours to judge
    nested = tmp_path / f"..head.partial-{dead_pid}-abc.glb.tmp-{dead_pid}"  # save_ply's own temporary
    for p in (stale, live, other, legacy, nested):
        p.write_bytes(b"half")
    folder = tmp_path / f".head.partial-{dead_pid}-xyz.glb"  # a folder output's, not a file's
    folder.mkdir()
    with atomic_output(tmp_path / "head.glb") as tmp:
        assert tmp.name.startswith(f".head.partial-{os.getpid()}-") and tmp.suffix == ".glb"
        tmp.write_bytes(b"whole")
    assert (tmp_path / "head.glb").read_bytes() == b"whole"
    assert not stale.exists() and not nested.exists()
    assert live.exists() and other.exists() and legacy.exists() and folder.is_dir()


def test_folder_replaced_by_exchange_leaves_nothing(tmp_path: Path) -> None:
    out = _folder(tmp_path / "web", {"data.js": "first", "old.txt": "gone"})
    with atomic_folder(out, _owned) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".web.partial-{os.getpid()}-")
        (tmp / "data.js").write_text("second")
    assert _read(out) == {"data.js": "second"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_atomic._umask())


@pytest.mark.parametrize("exchange", [True, False])
def test_failed_write_keeps_the_previous_folder(tmp_path: Path, monkeypatch, exchange: bool) -> None:
    if not exchange:
        monkeypatch.setattr(_atomic, "_RENAMEAT2", None)
    out = _folder(tmp_path / "web", {"data.js": "first"})
    with pytest.raises(RuntimeError), atomic_folder(out, _owned) as tmp:
        (tmp / "data.js").write_text("sec")
        raise RuntimeError("killed by an error halfway")
    assert _read(out) == {"data.js": "first"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web"]
    with atomic_folder(out, _owned) as tmp:
        (tmp / "data.js").write_text("second")
    assert _read(out) == {"data.js": "second"} and sorted(p.name for p in tmp_path.iterdir()) == ["web"]


def test_two_rename_swap_without_exchange(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_atomic, "_RENAMEAT2", None)
    assert not _atomic.exchange(tmp_path, tmp_path)
    out = _folder(tmp_path / "web", {"data.js": "first"})
    with atomic_folder(out, _owned) as tmp:
        (tmp / "data.js").write_text("second")
    assert _read(out) == {"data.js": "second"} and sorted(p.name for p in tmp_path.iterdir()) == ["web"]


def test_next_write_restores_a_folder_left_aside(tmp_path: Path, dead_pid: int) -> None:
    """A kill between the two renames: no folder under the name, the previous one aside. The next
    write puts it back before anything else, so even a write that then fails leaves it in place."""
    aside = _folder(tmp_path / f".web.old-{dead_pid}-q1", {"data.js": "first"})
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "web", _owned):
        raise RuntimeError("this write fails too")
    assert _read(tmp_path / "web") == {"data.js": "first"} and not aside.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web"]


def test_recover_leaves_live_writers_and_present_folders_alone(tmp_path: Path, dead_pid: int) -> None:
    live = _folder(tmp_path / f".web.old-{os.getpid()}-q1", {"data.js": "x"})  # a swap under way
    assert recover_folder(tmp_path / "web") is None and live.exists()
    _folder(tmp_path / "web", {"data.js": "new"})
    stale = _folder(tmp_path / f".web.old-{dead_pid}-q2", {"data.js": "old"})  # killed before its rmtree
    assert recover_folder(tmp_path / "web") is None
    assert sweep_stale(tmp_path / "web", folder=True) == [stale]
    assert live.exists() and _read(tmp_path / "web") == {"data.js": "new"}


def test_stale_partial_folders_are_swept_by_the_next_write(tmp_path: Path, dead_pid: int) -> None:
    partial = _folder(tmp_path / f".web.partial-{dead_pid}-z9", {"data.js": "hal"})
    other = _folder(tmp_path / f".website.partial-{dead_pid}-z9", {"data.js": "hal"})  # another output's
    with atomic_folder(tmp_path / "web", _owned) as tmp:
        (tmp / "data.js").write_text("whole")
    assert not partial.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "web"]


def test_a_folder_that_is_not_an_export_is_refused(tmp_path: Path, dead_pid: int) -> None:
    mine = _folder(tmp_path / "web", {"thesis.tex": "do not delete"})
    partial = _folder(tmp_path / f".web.partial-{dead_pid}-z9", {})
    with pytest.raises(HeadStudioError, match="not empty and not an earlier export; choose another -o"):
        with atomic_folder(mine, _owned):
            pytest.fail("the body must not run")
    assert _read(mine) == {"thesis.tex": "do not delete"} and partial.exists()  # nothing touched
    (tmp_path / "file").write_text("x")
    with pytest.raises(HeadStudioError, match="exists and is not a directory"):
        with atomic_folder(tmp_path / "file", _owned):
            pytest.fail("the body must not run")


def _failing_renameat2(err: int):
    def fake(*args: object) -> int:
        ctypes.set_errno(err)
        return -1

    return fake


def test_a_file_system_without_exchange_falls_back_to_two_renames(tmp_path: Path, monkeypatch) -> None:
    """``renameat2`` answering EINVAL / EXDEV (no RENAME_EXCHANGE there) is not an error; others are."""
    out = _folder(tmp_path / "web", {"data.js": "first"})
    monkeypatch.setattr(_atomic, "_RENAMEAT2", _failing_renameat2(errno.EINVAL))
    assert not _atomic.exchange(tmp_path / "a", out)
    monkeypatch.setattr(_atomic, "_RENAMEAT2", _failing_renameat2(errno.EXDEV))
    with atomic_folder(out, _owned) as tmp:
        (tmp / "data.js").write_text("second")
    assert _read(out) == {"data.js": "second"} and sorted(p.name for p in tmp_path.iterdir()) == ["web"]
    monkeypatch.setattr(_atomic, "_RENAMEAT2", _failing_renameat2(errno.EACCES))
    with pytest.raises(PermissionError, match="cannot swap"):
        _atomic.exchange(tmp_path / "a", out)
