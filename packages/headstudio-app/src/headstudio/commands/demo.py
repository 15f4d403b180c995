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
    unless given); ``size`` / ``steps`` (``None``: the demo's defaults); ``photo``: run the photo
    part instead, on this photograph or, with ``"astronaut"``, scikit-image's astronaut."""

    output: Path = Path("outputs/demo")
    quick: bool = False
    size: int | None = None
    steps: int | None = None
    device: str = "auto"
    progress: bool = True
    photo: Path | str | None = None


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
    if options.photo is not None:
        return _photo(options, folder)
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


#: the photo part's ``quick`` size and steps
QUICK_PHOTO_SIZE = 96
QUICK_PHOTO_STEPS = 20


def _photo(options: DemoOptions, folder: RunFolder) -> DemoResult:
    """The demo's photo part (:mod:`headstudio.demo.photo`) in ``folder``."""
    import time

    from ..demo.photo import DEMO_PHOTO_SIZE, DEMO_PHOTO_STEPS, astronaut_photo, write_photo_outputs
    from . import generate

    size, steps = options.size, options.steps
    if options.quick:
        size, steps = size or QUICK_PHOTO_SIZE, steps or QUICK_PHOTO_STEPS
    size = check_size(size or DEMO_PHOTO_SIZE)[0]
    steps = steps or DEMO_PHOTO_STEPS
    device = str(resolve_device(options.device))
    with folder.lock():
        folder.path.mkdir(parents=True, exist_ok=True)
        image = Path(options.photo) if str(options.photo) != "astronaut" else astronaut_photo(folder.path)
        run_dir = folder.path / "photo_avatar"
        if run_dir.exists():  # the demo always starts afresh
            import shutil

            shutil.rmtree(run_dir)
        started = time.perf_counter()
        res = generate.run_photo(
            generate.GenerateOptions(
                "", image=image, output=run_dir, steps=steps, device=device, progress=options.progress,
                overrides=(f"train.resolution={size}",),
            )
        )  # fmt: skip
        assert res.avatar is not None
        numbers = write_photo_outputs(
            folder.path, run_dir, res.avatar, time.perf_counter() - started, progress=options.progress
        )
        return DemoResult(folder.path, {**numbers, "steps": steps})
