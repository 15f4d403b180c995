"""CPU benchmark of ``headstudio batch``: the wall time of one 3-item batch with 1 worker (the
baseline) and with 2 workers, in the same run.

Each item is a real ``headstudio generate`` process that loads the tiny random-weight models
saved in the hub layout (:func:`fsds_guidance.testing.save_tiny_pipeline`) through the real loader,
with the tiny item settings of the tests (:data:`headstudio.batch.testing.TINY_SETTINGS`) and
the procedural head saved as a FLAME file.
The time is the whole command's (process start, imports, model loading, training, avatar
writing); on a CPU the workers share the cores (``OMP_NUM_THREADS`` = cores / workers), so the
speed-up comes from overlapping the per-item start-up with training. Repeats alternate between
the two sizes so background load hits both alike; each run also prints the CPU seconds of the
batch and its item processes (what a quiet machine would need, whatever the load).

Usage: ``python benchmarks/bench_batch.py [--steps N] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flame_core.procedural import build_procedural_head
from fsds_guidance.testing import save_tiny_pipeline
from headstudio.batch.testing import tiny_item_settings

PROMPTS = "a DSLR portrait of Kratos\nan old wizard\na young woman with red hair\n"


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _batch(root: Path, items: list[str], workers: int, steps: int, run: int) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of the batch and its item processes)`` of one batch."""
    out = root / f"w{workers}-{run}"
    cmd = [sys.executable, "-m", "headstudio.cli", "batch", str(root / "prompts.txt"), "-o", str(out)]
    cmd += ["--workers", str(workers), "--steps", str(steps), "--device", "cpu", "-q"]
    cmd += items
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, _children_cpu() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4, help="training steps of each item (default 4)")
    p.add_argument("--repeats", type=int, default=1, help="batches of each size (default 1)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="hs-bench-batch-") as tmp:
        root = Path(tmp)
        (root / "prompts.txt").write_text(PROMPTS)
        # the procedural head saved once as a FLAME file, as a real FLAME file would be given
        flame = build_procedural_head().save(root / "flame") / "procedural_flame.pkl"
        settings = tiny_item_settings(*save_tiny_pipeline(root / "models"), flame)
        items = [a for s in settings for a in ("--set", s)]
        times: dict[int, list[float]] = {1: [], 2: []}
        for run in range(args.repeats):
            for workers in (1, 2):
                wall, cpu = _batch(root, items, workers, args.steps, run)
                times[workers].append(wall)
                load = os.getloadavg()[0]
                print(f"run {run + 1}: {workers} worker(s): {wall:.1f} s wall, {cpu:.1f} s CPU", end="")
                print(f", load average {load:.1f}", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    load = os.getloadavg()[0]
    print(f"3-item CPU batch, {args.steps} steps each, {os.cpu_count()} cores, load average {load:.1f}:")
    print(f"  1 worker  {one:7.1f} s (baseline)")
    print(f"  2 workers {two:7.1f} s  ratio {one / two:.2f}x")


if __name__ == "__main__":
    main()
