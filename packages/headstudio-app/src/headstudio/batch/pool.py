"""The local pool: one slot per visible GPU (or ``--workers N`` on the CPU), one item process at a
time in each slot, with the slot's own ``CUDA_VISIBLE_DEVICES``.

Each item is its own process (:mod:`.launch`): a crash, an out-of-memory error or a kill takes
down that item only, its GPU memory is returned when it ends, and it runs the ordinary
``generate`` command. A thread per slot waits on it.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from ..errors import HeadStudioError
from ..train.runtime import resolve_device
from .launch import AttemptResult, ItemJob, ItemProcess

__all__ = ["Slot", "plan_slots", "LocalPool"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slot:
    """Where one pool worker runs: ``device`` is the device its items are given; ``env`` its
    ``CUDA_VISIBLE_DEVICES`` (and, on the CPU, its share of the threads)."""

    index: int
    device: str
    env: dict[str, str]

    def describe(self) -> str:
        gpu = self.env.get("CUDA_VISIBLE_DEVICES")
        return f"GPU {gpu}" if self.device == "cuda" else "CPU"


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries."""
    count = torch.cuda.device_count()
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def plan_slots(device: str, workers: int | None) -> list[Slot]:
    """The pool's slots: on CUDA one per visible GPU (``workers=N``: N slots over the GPUs in
    turn; ``device="cuda:K"``: GPU K only), on the CPU ``workers`` (default 1) with the cores
    shared among them.

    Raises:
        HeadStudioError: an unknown or unavailable device (``argument="device"``), ``workers < 1``.
    """
    if workers is not None and workers < 1:
        raise HeadStudioError(f"«workers» {workers}: give at least 1.")
    dev = resolve_device(device)
    if dev.type == "cuda":
        gpus = _visible_gpus()
        if dev.index is not None or str(device).strip().lower().startswith("cuda:"):
            gpus = [gpus[dev.index or 0]]
        n = workers or len(gpus)
        return [Slot(i, "cuda", {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]}) for i in range(n)]
    n = workers or 1
    env = {"CUDA_VISIBLE_DEVICES": ""}
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    return [Slot(i, "cpu", env) for i in range(n)]


class LocalPool:
    """Run item jobs on the slots, at most one per slot at a time."""

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = slots
        self._free: queue.Queue[Slot] = queue.Queue()
        for s in slots:
            self._free.put(s)
        self._executor = ThreadPoolExecutor(max_workers=len(slots), thread_name_prefix="batch-slot")
        self._running: dict[Future, ItemProcess] = {}
        self._procs: set[ItemProcess] = set()

    def describe(self) -> str:
        kinds = sorted({s.describe() for s in self.slots})
        return f"local pool of {len(self.slots)} worker(s) on {', '.join(kinds)}"

    def capacity(self) -> int:
        return len(self.slots)

    def submit(self, job: ItemJob, options_for: Callable[[str], Any]) -> Future:
        """Start ``job`` in a free slot (the runner submits no more than :meth:`capacity` at once);
        ``options_for(device)`` gives its GenerateOptions for the slot's device."""
        slot = self._free.get_nowait()
        options = asdict(options_for(slot.device))
        proc = ItemProcess(replace(job, options=options, env={**job.env, **slot.env}))

        def run() -> AttemptResult:
            try:
                return proc.run()
            finally:  # before the future is done: the runner's next submit finds the slot free
                self._free.put(slot)

        self._procs.add(proc)  # before it starts: a Ctrl-C from now on reaches it
        fut = self._executor.submit(run)
        self._running[fut] = proc
        return fut

    def wait(self, handles: list[Future], timeout: float) -> list[tuple[Future, AttemptResult]]:
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for f in done:
            self._procs.discard(self._running.pop(f))
            err = f.exception()
            if err is None:
                out.append((f, f.result()))
            else:  # a bug in the launcher itself: the item fails with it, the batch goes on
                log.error("batch worker error: %r", err)
                out.append((f, AttemptResult("failed", 0.0, f"internal error ({type(err).__name__}: {err})")))
        return out

    def interrupt(self, sig: int = signal.SIGINT) -> None:
        for proc in list(self._procs):
            proc.interrupt(sig)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
