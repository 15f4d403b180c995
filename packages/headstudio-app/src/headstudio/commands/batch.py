"""``batch``: many avatars from a prompts file, on a local pool of GPU slots or on Ray.

Every check that can fail happens before any work (:func:`headstudio.batch.runner.plan_batch`);
each item then runs the generate command (:mod:`.generate`) with its own GenerateOptions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..batch.report import BatchReport
from ..batch.runner import BatchOptions, open_backend, plan_batch, run_batch

__all__ = ["BatchOptions", "BatchStart", "run"]


@dataclass(frozen=True)
class BatchStart:
    """What the batch is about to do: ``items`` in all, ``todo`` to train, ``where`` they run
    (``None`` when every item is finished)."""

    items: int
    todo: int
    where: str | None


def run(options: BatchOptions, started: Callable[[BatchStart], None] | None = None) -> BatchReport:
    """Plan the batch, call ``started``, train every item not finished; returns the report.

    Raises:
        HeadStudioError: bad input (before any work).
    """
    plan = plan_batch(options)  # every input check, before any work
    backend = open_backend(options, plan)
    todo = sum(p.state.state != "finished" for p in plan)
    if started is not None:
        started(BatchStart(len(plan), todo, backend.describe() if backend is not None else None))
    return run_batch(options, plan, backend)
