"""``headstudio batch``: plan every item before any work, then run, retry, record and report.

::

    options = BatchOptions(Path("prompts.txt"), Path("outputs/batch"), workers=2)
    plan = plan_batch(options)                # every check that can fail, before any work
    backend = open_backend(options, plan)     # the local pool, or Ray
    report = run_batch(options, plan, backend)

Outputs under ``options.output``: ``<name>/`` per item exactly as the generate command writes
its run folder (:class:`~headstudio.train.run_folder.RunFolder`, whose lock keeps two processes from
training one item), ``batch.jsonl`` (:mod:`.report`) and ``_logs/<name>.log`` (the item
processes' output, every attempt). Folder names are lower-case letters, digits and ``-``, so
they never collide with these.

Ctrl-C (or SIGTERM) stops cleanly: no new item starts, the running ones write their checkpoint
and stop after their step (a second Ctrl-C stops them at once, keeping their last checkpoint),
and the report says what is left; running the same command again continues.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from .._signals import deferred_interrupts
from ..commands.generate import GenerateOptions
from ..config import HeadStudioConfig, load_config
from ..errors import HeadStudioError, require_file
from ..output.evaluate import DEFAULT_CLIP_MODELS
from ..train.run_folder import RunFolder, RunState
from ..train.runtime import resolve_device
from .items import BatchItem, read_items
from .launch import AttemptResult, ItemJob
from .pool import LocalPool, plan_slots
from .ray_backend import RayBackend
from .report import BatchReport, ItemRecord, read_records, write_records
from .scoring import score_records

__all__ = ["BatchOptions", "PlannedItem", "Backend", "plan_batch", "open_backend", "run_batch"]

log = logging.getLogger(__name__)

RECORDS = "batch.jsonl"
LOGS = "_logs"
#: Seconds between looks at the running items (and at a Ctrl-C).
_POLL_S = 0.5


@dataclass(frozen=True)
class BatchOptions:
    """What ``headstudio batch`` was asked to do.

    Attributes:
        prompts: the prompts file (:mod:`.items`).
        output: the batch's folder.
        overrides: ``key=value`` configuration overrides of every item (before each item's own).
        config: a TOML configuration of every item.
        steps: ``train.steps`` of every item (before each item's own).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        workers: local pool size (default: one per visible GPU, 1 on the CPU).
        ray: ``None`` for the local pool; ``""`` for a local Ray cluster (or ``RAY_ADDRESS``);
            ``auto`` or an address to join one.
        retries: attempts after the first for a failed item.
        evaluate: compute CLIP scores of the finished avatars.
        clip_models: the CLIP models (hub ids or folders).
        progress: show progress bars.
    """

    prompts: Path
    output: Path
    overrides: tuple[str, ...] = ()
    config: Path | None = None
    steps: int | None = None
    device: str = "auto"
    workers: int | None = None
    ray: str | None = None
    retries: int = 1
    evaluate: bool = False
    clip_models: tuple[str, ...] = DEFAULT_CLIP_MODELS
    progress: bool = True

    def item_overrides(self, item: BatchItem) -> list[str]:
        """The batch's overrides, then its ``steps``, then the item's own (the last one wins)."""
        steps = [f"train.steps={self.steps}"] if self.steps is not None else []
        return [*self.overrides, *steps, *item.overrides]


@dataclass(frozen=True)
class PlannedItem:
    """An item with its folder, resolved configuration and the state of its folder."""

    item: BatchItem
    folder: Path
    config: HeadStudioConfig
    state: RunState

    def generate_options(self, options: BatchOptions, device: str) -> GenerateOptions:
        """The options of its ``generate`` on ``device``: continue the folder's checkpoint when
        there is one, wait for a process that still writes the folder, no progress bar."""
        return GenerateOptions(
            self.item.prompt, image=self.item.image, output=self.folder, config=options.config,
            overrides=tuple(options.item_overrides(self.item)), device=device, resume=None, progress=False,
            wait=True,
        )  # fmt: skip


class Backend(Protocol):
    """Where item processes run: :class:`~.pool.LocalPool` or :class:`~.ray_backend.RayBackend`."""

    def describe(self) -> str: ...
    def capacity(self) -> int: ...
    def submit(self, job: ItemJob, options_for: Any) -> Any: ...
    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, AttemptResult]]: ...
    def interrupt(self, sig: int = signal.SIGINT) -> None: ...
    def close(self) -> None: ...


def plan_batch(options: BatchOptions) -> list[PlannedItem]:
    """Read the prompts, resolve every item's configuration and read every item's folder.

    Raises:
        HeadStudioError: anything wrong with the input (an empty file, a malformed line, an
            unknown or bad override key, ``retries`` below 0, an output that is not a folder,
            a folder holding another item's run), before any work.
    """
    if options.retries < 0:
        raise HeadStudioError(f"«retries» {options.retries}: give 0 or more.")
    if options.config is not None:
        require_file(options.config, "config file", (".toml",))
    out = options.output
    if out.exists() and not out.is_dir():
        raise HeadStudioError(f"«output» '{out}' exists and is not a folder; give a folder for the batch.")
    items = read_items(options.prompts)
    planned = []
    for item in items:
        try:
            config = load_config(options.config, options.item_overrides(item))
        except HeadStudioError as err:
            where = "" if not item.overrides else f"{item.where}: "
            raise HeadStudioError(f"{where}{err}") from None
        folder = out / item.name
        planned.append(PlannedItem(item, folder, config, RunFolder(folder).inspect(item.prompt, config)))
    return planned


def open_backend(options: BatchOptions, plan: list[PlannedItem]) -> Backend | None:
    """The local pool, or Ray; ``None`` when every item is finished (nothing to start).

    Raises:
        HeadStudioError: a bad device / ``workers``, Ray missing or unreachable.
    """
    if options.ray is None:
        slots = plan_slots(options.device, options.workers)  # checks the device even with no work
        return LocalPool(slots) if any(p.state.state != "finished" for p in plan) else None
    if options.workers is not None:
        raise HeadStudioError(
            "«workers» sizes the local pool; with «ray» the cluster's GPUs decide (drop «workers»)."
        )
    if all(p.state.state == "finished" for p in plan):
        return None
    return RayBackend(options.ray or None, options.device, options.retries)


def _job(options: BatchOptions, p: PlannedItem, attempt: int) -> ItemJob:
    out = options.output
    name = p.item.name
    return ItemJob(
        name=name, output=str(p.folder), options={}, log=str(out / LOGS / f"{name}.log"), attempt=attempt,
        cwd=str(Path.cwd()),
    )  # fmt: skip


def _records(options: BatchOptions, plan: list[PlannedItem]) -> dict[str, ItemRecord]:
    before = read_records(options.output / RECORDS)
    records = {}
    for p in plan:
        i = p.item
        rec = ItemRecord(i.index, i.name, i.prompt, str(p.folder))
        if p.state.state == "finished":
            rec.status, rec.gaussians = "skipped", p.state.gaussians
            old = before.get(i.name) or {}
            if old.get("prompt") == i.prompt and isinstance(old.get("clip_score"), (int, float)):
                rec.clip_score, rec.clip_scores = float(old["clip_score"]), dict(old.get("clip_scores") or {})
        elif p.state.note:
            log.warning("%s: %s", i.name, p.state.note)
        records[i.name] = rec
    return records


class _Run:
    """The scheduling loop of one batch run (state shared with the Ctrl-C handler)."""

    def __init__(self, options: BatchOptions, plan: list[PlannedItem], backend: Backend | None) -> None:
        self.options, self.plan, self.backend = options, plan, backend
        self.records = _records(options, plan)
        self.stops = 0
        self.inflight: dict[Any, PlannedItem] = {}
        self.bar = tqdm(
            total=len(plan), initial=sum(r.status == "skipped" for r in self.records.values()), unit="avatar",
            desc="batch", disable=not options.progress, dynamic_ncols=True,
        )  # fmt: skip

    def request_stop(self) -> bool:
        """Ctrl-C / SIGTERM: the first stops starting items and asks the running ones to
        checkpoint and stop; a second stops them at once; a third kills them."""
        self.stops += 1
        if self.backend is not None:
            self.backend.interrupt(signal.SIGINT if self.stops <= 2 else signal.SIGKILL)
        return False  # never raise in the middle of the bookkeeping

    def save(self) -> None:
        """Write ``batch.jsonl`` and move the progress bar (done, running, failed, skipped)."""
        recs = [self.records[p.item.name] for p in self.plan]
        write_records(self.options.output / RECORDS, recs, self.options.evaluate)
        n = {s: sum(r.status == s for r in recs) for s in ("done", "failed", "skipped")}
        counts = {"done": n["done"], "running": len(self.inflight), "failed": n["failed"]}
        self.bar.set_postfix({**counts, "skipped": n["skipped"]}, refresh=False)
        finished = sum(n.values()) - self.bar.n
        self.bar.update(finished) if finished else self.bar.refresh()

    def loop(self) -> None:
        pending = deque(p for p in self.plan if p.state.state != "finished")
        backend = self.backend
        while backend is not None:
            while pending and not self.stops and len(self.inflight) < backend.capacity():
                p = pending.popleft()
                rec = self.records[p.item.name]
                rec.attempts += 1
                rec.status = "running"
                job = _job(self.options, p, rec.attempts)
                self.inflight[
                    backend.submit(job, lambda device, p=p: p.generate_options(self.options, device))
                ] = p
                self.save()
            if not self.inflight:
                break
            for handle, res in backend.wait(list(self.inflight), _POLL_S):
                self.finish(self.inflight.pop(handle), res, pending)
                self.save()
        if self.stops:
            for p in pending:
                has_checkpoint = RunFolder(p.folder).has_checkpoint()
                self.records[p.item.name].status = "interrupted" if has_checkpoint else "pending"

    def finish(self, p: PlannedItem, res: AttemptResult, pending: deque[PlannedItem]) -> None:
        rec = self.records[p.item.name]
        rec.seconds += res.seconds
        rec.resumed = rec.resumed or res.resumed
        if res.status == "done":
            rec.status, rec.gaussians, rec.error = "done", res.gaussians, None
            return
        rec.error = res.error
        if self.stops:  # stopped by us: what is left says whether it can continue
            stopped = res.status == "interrupted" or RunFolder(p.folder).has_checkpoint()
            rec.status = "interrupted" if stopped else "pending"
            rec.error = None if res.status == "interrupted" else res.error
        elif rec.attempts <= self.options.retries:  # a crash, a kill, an error: again (resuming)
            rec.status = "retrying"
            log.info("%s: attempt %d failed (%s); retrying", p.item.name, rec.attempts, res.error)
            pending.append(p)
        else:
            rec.status = "failed"


def run_batch(options: BatchOptions, plan: list[PlannedItem], backend: Backend | None) -> BatchReport:
    """Train every item that is not finished, on ``backend``; returns the report (also written
    to ``batch.jsonl`` as it changes). Ctrl-C stops cleanly (module docstring)."""
    started = time.perf_counter()
    options.output.mkdir(parents=True, exist_ok=True)
    run = _Run(options, plan, backend)
    try:
        with deferred_interrupts(run.request_stop), run.bar:
            run.save()
            run.loop()
    finally:
        if backend is not None:
            backend.close()
    records = [run.records[p.item.name] for p in plan]
    report = BatchReport(records, stopped=bool(run.stops))
    if options.evaluate and not run.stops:
        todo = [r for r in records if r.status in ("done", "skipped") and r.clip_score is None]
        device = resolve_device(options.device if options.ray is None else "auto")
        report.eval_note = score_records(todo, options.clip_models, device, progress=options.progress)
        write_records(options.output / RECORDS, records, True)
    report.seconds = time.perf_counter() - started
    return report
