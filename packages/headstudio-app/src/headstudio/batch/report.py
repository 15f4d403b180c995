"""What a batch tells: ``DIR/batch.jsonl`` (one record per item, rewritten atomically after
every change, so it is current even if the batch is killed) and the summary table."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_output

__all__ = ["ItemRecord", "BatchReport", "write_records", "read_records", "summary_table", "STATUSES"]

log = logging.getLogger(__name__)

#: Every status a record can have (``running`` / ``retrying`` only while the batch runs).
STATUSES = ("done", "skipped", "failed", "interrupted", "pending", "running", "retrying")


@dataclass
class ItemRecord:
    """One line of ``batch.jsonl``.

    Attributes:
        item: 1-based position in the prompts file.
        name: the item's folder under the batch's output.
        prompt: the prompt.
        output: the folder.
        status: ``done`` (trained in this run), ``skipped`` (finished before), ``failed`` (every
            attempt failed), ``interrupted`` (stopped by Ctrl-C with a checkpoint to continue
            from), ``pending`` (not started).
        attempts: attempts in this run.
        seconds: time spent on it in this run.
        gaussians: Gaussians of its avatar (done or skipped).
        error: the last attempt's one-line error.
        resumed: this run continued it from a checkpoint.
        clip_score: mean CLIP score over the models (with ``--eval``, when they could be loaded).
        clip_scores: ``{model: score}``.
    """

    item: int
    name: str
    prompt: str
    output: str
    status: str = "pending"
    attempts: int = 0
    seconds: float = 0.0
    gaussians: int | None = None
    error: str | None = None
    resumed: bool = False
    clip_score: float | None = None
    clip_scores: dict[str, float] = field(default_factory=dict)

    def to_json(self, with_clip: bool) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 2)
        if not with_clip and self.clip_score is None:
            d.pop("clip_score")
            d.pop("clip_scores")
        return d


@dataclass
class BatchReport:
    """The outcome of a batch: its records (file order), whether Ctrl-C stopped it, its wall time
    and a line about the CLIP scores when they could not be computed."""

    records: list[ItemRecord]
    stopped: bool = False
    seconds: float = 0.0
    eval_note: str | None = None

    def count(self, *statuses: str) -> int:
        return sum(r.status in statuses for r in self.records)

    @property
    def left(self) -> list[ItemRecord]:
        """Items a re-run would still have to train (interrupted, pending, failed)."""
        return [r for r in self.records if r.status not in ("done", "skipped")]


def write_records(path: Path, records: list[ItemRecord], with_clip: bool) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text("".join(json.dumps(r.to_json(with_clip)) + "\n" for r in records), encoding="utf-8")


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """An earlier run's records by folder name (unreadable lines are left out)."""
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("name"), str):
            out[rec["name"]] = rec
    return out


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return (
        f"{s // 3600}h{s % 3600 // 60:02d}m"
        if s >= 3600
        else f"{s // 60}m{s % 60:02d}s"
        if s >= 60
        else f"{seconds:.1f}s"
    )


def summary_table(report: BatchReport, with_clip: bool, width: int = 60) -> str:
    """The table printed at the end: one row per item, then the totals."""
    head = ["#", "name", "status", "tries", "time", "Gaussians", *(["CLIP"] if with_clip else []), "error"]
    rows = []
    for r in report.records:
        clip = [f"{r.clip_score:.4f}" if r.clip_score is not None else "-"] if with_clip else []
        error = (r.error or "")[:width] + ("…" if r.error and len(r.error) > width else "")
        rows.append([
            str(r.item), r.name, r.status, str(r.attempts), _duration(r.seconds) if r.attempts else "-",
            str(r.gaussians) if r.gaussians is not None else "-", *clip, error,
        ])  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [head, *rows]
    ]
    counts = [
        f"{report.count(s)} {s}"
        for s in ("done", "skipped", "failed", "interrupted", "pending")
        if report.count(s)
    ]
    lines.append(f"{', '.join(counts)} in {_duration(report.seconds)}; {len(report.left)} left")
    return "\n".join(lines)
