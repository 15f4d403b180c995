"""Helpers for tests of ``headstudio batch`` (the local pool's and the Ray backend's): tiny item
settings for the tiny models of :func:`fsds_guidance.testing.save_tiny_pipeline`, and killing an
item's process in the middle of its training.

Example::

    base, cn = save_tiny_pipeline(tmp_path)
    killer = KillAfterCheckpoint(out / "kratos")       # SIGKILL once it wrote a checkpoint
    settings = tiny_item_settings(base, cn)                # key=value overrides of each item
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import torch

from ..avatar import Avatar
from ..train.run_folder import RunFolder
from .launch import ITEM_MODULE

__all__ = ["tiny_item_settings", "item_process", "KillAfterCheckpoint", "avatar_tensors"]

#: Tiny items: 32² renders, the tiny models at 64², one point per face, 10 shape / expression
#: terms, a log line and a checkpoint every step.
TINY_SETTINGS = (
    "train.resolution=32",
    "train.guidance_resolution=64",
    "train.batch_size=1",
    "init.points_per_face=1",
    "head.num_shape=10",
    "head.num_expression=10",
    "train.log_every=1",
    "train.checkpoint_every=1",
)


def tiny_item_settings(
    base_model: str | Path, controlnet: str | Path, flame: str | Path | None = None
) -> list[str]:
    """``key=value`` overrides of a tiny item that loads the models saved at ``base_model`` /
    ``controlnet`` (hub layout) through the real loader, and the FLAME file ``flame`` when given
    (e.g. the procedural head saved once: each item then reads it instead of building it)."""
    sets = [*TINY_SETTINGS, f"guidance.base_model={base_model}", f"guidance.controlnet={controlnet}"]
    if flame is not None:
        sets.append(f"head.flame_path={flame}")
    return sets


def item_process(folder: Path) -> int | None:
    """The pid of the item process training ``folder`` (Linux ``/proc``)."""
    needle = json.dumps(str(folder))[1:-1].encode()  # as it is written in its options
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if ITEM_MODULE.encode() in argv and any(needle in a for a in argv):
            return int(entry)
    return None


def _parent(pid: int) -> int:
    stat = Path("/proc", str(pid), "stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


class KillAfterCheckpoint:
    """A thread that SIGKILLs the process training ``folder`` as soon as it has written a
    checkpoint (``parent=True``: the process that started it, e.g. a Ray worker running its task).

    Attributes:
        killed: the pid killed (``None`` until then).
        finished_before: whether the avatar was already written when it was killed.
    """

    def __init__(self, folder: Path, parent: bool = False, timeout: float = 600.0) -> None:
        self.folder, self.parent = folder, parent
        self.killed: int | None = None
        self.finished_before: bool | None = None
        self._deadline = time.monotonic() + timeout
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while time.monotonic() < self._deadline and self.killed is None:
            pid = item_process(self.folder) if RunFolder(self.folder).has_checkpoint() else None
            if pid is not None:
                try:
                    target = _parent(pid) if self.parent else pid
                    self.finished_before = RunFolder(self.folder).avatar.exists()
                    os.kill(target, signal.SIGKILL)
                except (OSError, ValueError):  # it ended between the look and the kill: look again
                    continue
                self.killed = target
            time.sleep(0.02)

    def join(self, timeout: float = 1.0) -> None:
        self._thread.join(timeout)


def avatar_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The Gaussians of the avatar at ``path`` (read through the avatar loader and its checks)."""
    a = Avatar.load(path)
    out = {k: p.detach() for k, p in a.gaussian_params().items()}
    out["face_ids"] = a.face_ids
    return out
