"""The C++ CPU backend of two builds of rigged_gaussians, timed in turns on the same machine.

Each argument is a directory holding a ``rigged_gaussians`` package with its compiled ``_C`` (for
instance ``git archive <rev> packages/rigged-gaussians csrc`` built with CMake, next to the
current one). For every cell of ``bench_rasterizer.py`` (256^2 and 512^2, 10k and 50k Gaussians,
batch 1 and 8, forward and forward+backward) the two builds run in alternating subprocesses,
``--rounds`` times each, every subprocess reporting the median of ``--repeats`` renders; the
table gives the median per build and old/new. A loaded machine slows both alike, so the ratio
holds where absolute times do not.

Usage: ``python benchmarks/compare_builds.py OLD_DIR NEW_DIR [--threads 2] [--rounds 3]
[--repeats 5] [--quick]`` (not part of ``nox -s bench``: it needs two builds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

_WORKER = """
import statistics, sys, time, torch
import rigged_gaussians as rg
from rigged_gaussians import testing
size, n, b, backward, repeats, threads = (int(x) for x in sys.argv[1:7])
torch.set_num_threads(threads)
s = testing.random_scene(n, C=b, width=size, height=size, seed=0)
keys = ("means", "quats", "scales", "opacities", "colors")
times = []
for r in range(repeats + 1):
    p = dict(s)
    if backward:
        p.update({k: s[k].clone().requires_grad_(True) for k in keys})
    t0 = time.perf_counter()
    with torch.enable_grad() if backward else torch.no_grad():
        rgb, alpha, _ = rg.rasterize(**p, backend="cpu")
        if backward:
            (rgb.sum() + alpha.sum()).backward()
    if r:
        times.append(time.perf_counter() - t0)
print(statistics.median(times) * 1e3)
"""


def _time(package_dir: str, cell: tuple[int, ...], repeats: int, threads: int) -> float:
    env = dict(os.environ, PYTHONPATH=package_dir)
    cmd = [sys.executable, "-c", _WORKER, *(str(c) for c in cell), str(repeats), str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="256x256, 10k Gaussians, batch 1 only")
    args = ap.parse_args()
    sizes, counts, batches = ([256], [10_000], [1]) if args.quick else ([256, 512], [10_000, 50_000], [1, 8])
    print(f"CPU backend: {args.old} vs {args.new}, {args.threads} threads, wall-time medians")
    print(f"{'size':>5} {'N':>6} {'B':>2} {'pass':>8} {'old ms':>9} {'new ms':>9} {'old/new':>8}")
    for size in sizes:
        for n in counts:
            for b in batches:
                for backward in (0, 1):
                    cell = (size, n, b, backward)
                    old, new = [], []
                    for _ in range(args.rounds):
                        old.append(_time(args.old, cell, args.repeats, args.threads))
                        new.append(_time(args.new, cell, args.repeats, args.threads))
                    t_old, t_new = statistics.median(old), statistics.median(new)
                    name = "fwd+bwd" if backward else "fwd"
                    print(
                        f"{size:5d} {n:6d} {b:2d} {name:>8} {t_old:9.1f} {t_new:9.1f} {t_old / t_new:7.2f}x",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
