"""The process of one batch item: ``python -m headstudio.batch.worker --lock L --output D -- ARGS``.

It prepares three things and then becomes ``python -m headstudio.cli ARGS`` (``os.execv``: the
same process, so its pid, signals and exit status are the ``generate`` command's own):

1. On Linux it asks the kernel to send it SIGTERM when the process that started it dies
   (``PR_SET_PDEATHSIG``, which survives the exec). A killed batch driver or Ray worker thus
   makes its item checkpoint and stop instead of training on unseen.
2. It takes the item's lock (``flock`` on ``L``, held through the exec until the process ends),
   so two processes never train one folder: a retried Ray task waits while the killed task's
   process writes its last checkpoint.
3. Under the lock it decides how to start: ``--resume`` when ``D/checkpoints/last.pt`` exists.

Only the standard library is imported here; the heavy imports happen once, in ``generate``.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import signal
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """SIGTERM when the parent dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            pass
    if parent and os.getppid() != parent:
        sys.stderr.write("error: the batch that started this item is gone; not starting it.\n")
        raise SystemExit(130)


def _lock(path: Path) -> int:
    """Take the item's lock (waiting for another process that holds it); returns its descriptor,
    inheritable so the lock stays held by the exec'd command."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"waiting for another process that is running this item ({path})", flush=True)
        started = time.monotonic()
        fcntl.flock(fd, fcntl.LOCK_EX)
        print(f"lock taken after {time.monotonic() - started:.1f} s", flush=True)
    os.set_inheritable(fd, True)
    return fd


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m headstudio.batch.worker")
    p.add_argument("--lock", required=True, type=Path, help="the item's lock file")
    p.add_argument("--output", required=True, type=Path, help="the item's folder (generate --output)")
    p.add_argument("--parent", type=int, default=0, help="pid of the process that started this one")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- generate PROMPT --output DIR ...")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else list(args.command)
    _die_with_parent(args.parent)
    _lock(args.lock)
    if (args.output / "checkpoints" / "last.pt").is_file() and "--resume" not in command:
        command.append("--resume")
        print(f"resuming {args.output} from its checkpoint", flush=True)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "headstudio.cli", *command])


if __name__ == "__main__":
    main()
