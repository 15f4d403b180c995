"""One attempt at one item: start its process (the CLI's item entry point, :data:`ITEM_MODULE`,
which runs ``generate`` with the item's options), wait for it, and say how it went.

The same code runs in a thread of the local pool and inside a Ray task. The process gets its
own session (a Ctrl-C in the terminal reaches the batch, which forwards it), its output goes to
the item's log file, and its ``error:`` line becomes the item's error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ..train.run_folder import RunFolder, check_avatar

__all__ = ["ItemJob", "AttemptResult", "ItemProcess", "EXIT_INTERRUPTED", "ITEM_MODULE"]

#: The module an item's process runs (``python -m``): it reads the item's GenerateOptions (JSON)
#: and runs the generate command with the CLI's messages and exit statuses.
ITEM_MODULE = "headstudio.cli.item"

#: ``headstudio generate``'s exit status after a Ctrl-C / SIGTERM (checkpoint written).
EXIT_INTERRUPTED = 130
_ERROR_PREFIX = "error: "


@dataclass(frozen=True)
class ItemJob:
    """What a worker process needs to train one item (plain values: it travels to Ray workers).

    Attributes:
        name: the item's folder name.
        output: its folder (the run folder of its generate).
        options: its :class:`~headstudio.commands.generate.GenerateOptions` as plain values
            (``dataclasses.asdict``; paths as strings), for the device of its slot.
        log: the log file the process writes to (appended).
        attempt: 1 for the first attempt of this run.
        env: extra environment variables (``CUDA_VISIBLE_DEVICES``, ``OMP_NUM_THREADS``).
        cwd: the batch's working directory (relative paths in ``options`` are read from it), where
            it exists (a Ray node may not have it).
    """

    name: str
    output: str
    options: dict[str, Any]
    log: str
    attempt: int = 1
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


@dataclass
class AttemptResult:
    """How an attempt ended.

    Attributes:
        status: ``done`` (a valid avatar), ``failed`` or ``interrupted`` (stopped by a signal
            after writing its checkpoint).
        seconds: wall time of the attempt.
        error: one line saying what went wrong (``None`` when done).
        resumed: it continued from a checkpoint.
        gaussians: the avatar's Gaussians (when done).
        returncode: the process's exit status (negative: killed by that signal).
    """

    status: Literal["done", "failed", "interrupted"]
    seconds: float
    error: str | None = None
    resumed: bool = False
    gaussians: int | None = None
    returncode: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _error_line(log: Path, offset: int, code: int) -> str:
    """The attempt's ``error:`` line in its log (else its last line), one line."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    errors = [ln[len(_ERROR_PREFIX) :] for ln in lines if ln.startswith(_ERROR_PREFIX)]
    if code < 0:
        return f"the worker was killed by {_signal_name(code)}" + (f" ({errors[-1][:200]})" if errors else "")
    text = errors[-1] if errors else (lines[-1] if lines else "no output")
    return f"{text[:300]} (exit status {code})" if not errors else text[:400]


class ItemProcess:
    """The process of one attempt: :meth:`run` starts it and waits; :meth:`interrupt` (from
    another thread, or a Ctrl-C / Ray cancel arriving in :meth:`run`) forwards a signal to it."""

    def __init__(self, job: ItemJob) -> None:
        self.job = job
        self._proc: subprocess.Popen | None = None
        self._guard = threading.Lock()
        self._cancelled = False
        self._signals = 0

    def command(self) -> list[str]:
        """``python -m ITEM_MODULE OPTIONS_JSON PARENT_PID``."""
        options = json.dumps(self.job.options, default=str)
        return [sys.executable, "-m", ITEM_MODULE, options, str(os.getpid())]

    def interrupt(self, sig: int = signal.SIGINT) -> None:
        """Forward ``sig`` to the process (the first SIGINT makes its training checkpoint and stop
        after its step, a second stops it at once); before it starts: never start it."""
        with self._guard:
            self._cancelled = True
            if self._proc is not None and self._proc.poll() is None:
                self._signals += 1
                self._proc.send_signal(sig)

    def run(self) -> AttemptResult:
        j = self.job
        started = time.perf_counter()
        folder = RunFolder(j.output)
        resumed = folder.has_checkpoint()
        log = Path(j.log)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **j.env, "PYTHONUNBUFFERED": "1"}
        with open(log, "ab") as fh:
            offset = fh.tell()
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            fh.write(
                f"=== {stamp} attempt {j.attempt} on {os.uname().nodename}: generate "
                f"{j.options.get('prompt')}\n".encode()
            )
            fh.flush()
            with self._guard:
                if self._cancelled:
                    return AttemptResult("interrupted", 0.0, "stopped before it started", resumed)
                self._proc = subprocess.Popen(
                    self.command(), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                    cwd=j.cwd if j.cwd and Path(j.cwd).is_dir() else None, start_new_session=True,
                )  # fmt: skip
            code = self._wait()
        seconds = time.perf_counter() - started
        if code == 0:
            meta, reason = check_avatar(folder.avatar)
            if meta is None:
                return AttemptResult("failed", seconds, f"generate ended but {reason}", resumed, returncode=0)
            return AttemptResult("done", seconds, None, resumed, int(meta["num_gaussians"]), 0)
        status = "interrupted" if code == EXIT_INTERRUPTED else "failed"
        return AttemptResult(status, seconds, _error_line(log, offset, code), resumed, returncode=code)

    def _wait(self) -> int:
        """Wait for the process; a KeyboardInterrupt here (Ctrl-C, ``ray.cancel``) is forwarded to
        it as SIGINT and the wait goes on, so the item always writes its checkpoint first."""
        assert self._proc is not None
        while True:
            try:
                return self._proc.wait()
            except KeyboardInterrupt:
                self.interrupt(signal.SIGINT if self._signals < 2 else signal.SIGKILL)
