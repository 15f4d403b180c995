"""A folder owned by one process at a time: ``fcntl.flock`` on a lock file inside it, with the
owner's pid, host and command written in it.

The kernel drops an flock when its process ends, however it ends (SIGKILL included), so a lock
left by a killed process never blocks. The lock is re-entrant within a process: a command and the
trainer it runs both take it. A second process is refused with :class:`RunFolderBusy`, whose one
line names the owner, or waits (``wait=True``). When the owner made the folder and wrote nothing
else into it, releasing removes the lock file and the folder again, so a refused or failed
command leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import HeadStudioError

__all__ = ["FolderLock", "RunFolderBusy", "process_command"]

log = logging.getLogger(__name__)

#: How long a refused process waits for the holder to have written who it is (seconds).
_HOLDER_WAIT_S = 2.0


class RunFolderBusy(HeadStudioError):
    """Another process writes the run folder; ``holder`` is what it wrote in the lock file
    (``pid``, ``host``, ``command``, ``started``)."""

    def __init__(self, folder: Path, holder: dict[str, Any]) -> None:
        pid, host = holder.get("pid", "?"), holder.get("host", "?")
        command = holder.get("command") or "a command that did not say which"
        super().__init__(
            f"'{folder}' is being written by another process (pid {pid} on {host}: {command}); wait for it "
            "to end, or give another «output»."
        )
        self.holder = holder


def process_command() -> str:
    """This process's command line as a user would type it: ``headstudio demo --quick`` for the
    console script (run by its interpreter), else the interpreter's name and its arguments."""
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    for i, arg in enumerate(argv[:2]):
        if Path(arg).name == "headstudio":  # the console script, or the interpreter running it
            argv = ["headstudio", *argv[i + 1 :]]
            break
    else:
        if argv:
            argv[0] = Path(argv[0]).name
    return shlex.join(argv)[:300]


class _Held:
    """A lock this process holds: its descriptor and how many ``with`` blocks hold it."""

    def __init__(self, fd: int, created: bool) -> None:
        self.fd, self.count, self.created = fd, 1, created


_HELD: dict[Path, _Held] = {}
_HELD_GUARD = threading.Lock()


class _Held:
    """A lock this process holds: its descriptor and how many ``with`` blocks hold it."""

    def __init__(self, fd: int, created: bool) -> None:
        self.fd, self.count, self.created = fd, 1, created


_HELD: dict[Path, _Held] = {}
_HELD_GUARD = threading.Lock()


class FolderLock:
    """The lock of ``folder``: the file ``folder/name``."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path, self.name = Path(folder), name
        self.lock_file = self.path / name

    def holder(self) -> dict[str, Any] | None:
        """What the process that holds the lock wrote (``pid``, ``host``, ``command``), or
        ``None`` when nobody holds it."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._read_holder()
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def _read_holder(self) -> dict[str, Any]:
        deadline = time.monotonic() + _HOLDER_WAIT_S
        while True:  # the holder writes who it is right after taking the lock
            try:
                text = self.lock_file.read_text(encoding="utf-8")
                doc = json.loads(text)
                if isinstance(doc, dict) and doc.get("pid"):
                    return doc
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                return {}
            time.sleep(0.05)

    def held_here(self) -> bool:
        """Whether this process holds the lock."""
        with _HELD_GUARD:
            return self._key() in _HELD

    def _key(self) -> Path:
        return self.path.resolve()  # one key for every spelling of the folder (symlinks too)

    @contextlib.contextmanager
    def hold(self, wait: bool = False, command: str | None = None) -> Iterator[Path]:
        """Own the folder while the block runs (module docstring); creates the folder.

        Raises:
            RunFolderBusy: another process holds the lock (``wait=False``).
        """
        key = self._key()
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None:
                held.count += 1
        if held is None:
            held = self._acquire(wait, command)
            with _HELD_GUARD:
                _HELD[key] = held
        try:
            yield self.path
        finally:
            with _HELD_GUARD:
                held.count -= 1
                last = held.count == 0
                if last:
                    del _HELD[key]
            if last:
                self._release(held)

    def _acquire(self, wait: bool, command: str | None) -> _Held:
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        waited_since: float | None = None
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not wait:
                        raise RunFolderBusy(self.path, self._read_holder()) from None
                    if waited_since is None:
                        waited_since = time.monotonic()
                        h = self._read_holder()
                        log.warning(
                            "waiting for another process that writes %s (pid %s on %s)",
                            self.path, h.get("pid", "?"), h.get("host", "?"),
                        )  # fmt: skip
                    fcntl.flock(fd, fcntl.LOCK_EX)
                if not self._same_file(fd):  # its holder removed the file meanwhile: take the new one
                    os.close(fd)
                    continue
            except BaseException:
                os.close(fd)
                raise
            break
        if waited_since is not None:
            log.warning("lock of %s taken after %.1f s", self.path, time.monotonic() - waited_since)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command or process_command(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        return _Held(fd, created)

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.lock_file)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _release(self, held: _Held) -> None:
        """Clear the lock file; remove it (and the folder) when this process made the folder and
        wrote nothing else into it, so a refused or failed command leaves nothing behind."""
        try:
            os.ftruncate(held.fd, 0)
            if held.created and self.path.is_dir() and os.listdir(self.path) == [self.name]:
                self.lock_file.unlink()
                with contextlib.suppress(OSError):
                    self.path.rmdir()
        except OSError as err:  # pragma: no cover - a vanished folder
            if err.errno not in (errno.ENOENT, errno.ENOTEMPTY):
                log.debug("releasing %s: %s", self.lock_file, err)
        finally:
            os.close(held.fd)  # drops the flock
