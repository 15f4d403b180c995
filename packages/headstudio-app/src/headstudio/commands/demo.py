"""``demo``: the offline demo (train from a teacher, videos, PSNR) in its own run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..demo.run import run_demo
from ..output.rendering import check_size
from ..train.run_folder import RunFolder
from ..train.runtime import resolve_device

__all__ = ["DemoOptions", "DemoResult", "run", "QUICK_SIZE", "QUICK_STEPS"]

#: ``quick``: render size and training steps of the smoke run.
QUICK_SIZE = 32
QUICK_STEPS = 60


@dataclass(frozen=True)
class DemoOptions:
    """``output``: the demo's folder; ``quick``: a smoke run (``QUICK_SIZE``, ``QUICK_STEPS``
    unless given); ``size`` / ``steps`` (``None``: the demo's defaults)."""

    output: Path = Path("outputs/demo")
    quick: bool = False
    size: int | None = None
    steps: int | None = None
    device: str = "auto"
    progress: bool = True


@dataclass(frozen=True)
class DemoResult:
    """``numbers``: the demo's figures and paths (:func:`headstudio.demo.run_demo`)."""

    folder: Path
    numbers: dict[str, Any]


def run(options: DemoOptions) -> DemoResult:
    """Run the demo, owning its folder for as long as it writes.

    Raises:
        HeadStudioError: bad input, or a folder another process writes.
        KeyboardInterrupt: Ctrl-C (its outputs are incomplete; the demo always starts afresh).
    """
    folder = RunFolder(options.output)
    folder.check_is_folder()
    size, steps = options.size, options.steps
    if options.quick:
        size, steps = size or QUICK_SIZE, steps or QUICK_STEPS
    kwargs: dict[str, Any] = {"device": resolve_device(options.device), "progress": options.progress}
    if size is not None:
        kwargs["size"] = check_size(size)[0]
    if steps is not None:
        kwargs["steps"] = steps
    with folder.lock():
        return DemoResult(folder.path, run_demo(folder, **kwargs))
