"""The demo avatar that the face benchmarks measure when no ``--avatar`` is given (run as
``python benchmarks/<script>.py``, so this directory is on ``sys.path``)."""

from __future__ import annotations

import time
from pathlib import Path


def train_demo_avatar(out: Path) -> Path:
    """Train ``headstudio demo``'s avatar with its defaults (CPU) into ``out/demo``, print how long
    it took, and return the ``avatar.ply`` path."""
    from headstudio.demo.run import run_demo

    t0 = time.perf_counter()
    avatar = Path(run_demo(out / "demo", device="cpu", progress=False)["avatar"])
    print(f"trained the demo avatar in {time.perf_counter() - t0:.0f} s: {avatar}")
    return avatar
