"""CPU benchmark of rigged_gaussians: the C++ CPU backend vs a pure-PyTorch baseline.

Renders world-space Gaussians (``rasterize``: projection, tile intersection, sort, blending)
at 256x256 and 512x512 with 10k and 50k Gaussians and batches of 1 and 8 cameras, forward and
forward+backward, both in float32 on the same inputs, and prints the time of each and the ratio
baseline / CPU backend (goal: >= 20x). The baseline (``_torch_baseline.py``) is the reference as
it was before it became the dense oracle: the tile-chunked PyTorch rasterizer on gsplat's 3.33
sigma tile boxes (``--tight-baseline``: on the exact tile test, as the CPU backend). Runs are
interleaved (CPU backend, baseline, CPU
backend, ...) so machine load hits both alike; times are medians. Cells where the baseline is
infeasible on this machine are printed as ``skipped (reason)``; nothing is extrapolated.

The baseline is run camera by camera (the cameras of a batch are independent, so its time is
the sum; this also bounds its memory to one camera). It blends every (pixel, Gaussian) pair of
each tile as dense tensors: its cost for a camera is ``E = 256 x tile intersections`` elements.
The forward runs under ``no_grad`` and is skipped when the batch's total ``E`` exceeds
``--max-ref-elements`` (time); the backward keeps ~``_REF_BYTES_BWD`` bytes per element for
autograd and is skipped when one camera would need more than ``--max-ref-gb``.

A second table (item "tight tiles") gives, per cell, the tile intersections and the CPU
backend's forward time with ``tight_tiles=False`` (gsplat's 3.33 sigma boxes) and the default
``tight_tiles=True`` (opacity-aware radii and the exact ellipse/tile test; same images).

Usage: ``python benchmarks/bench_rasterizer.py [--quick] [--repeats N] [--threads T]
[--cpu-time]`` (``nox -s bench``). ``--quick``: 256x256, 10k Gaussians, batch 1 only.
``--cpu-time``: time with the process's CPU time instead of the wall clock (with ``--threads
1``, the work of each side, insensitive to other processes on a loaded machine).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import _torch_baseline
import rigged_gaussians as rg
import torch
from rigged_gaussians import testing
from rigged_gaussians._glue import NativeOps
from rigged_gaussians._types import Gaussians
from rigged_gaussians.settings import RasterSettings

_REF_BYTES_BWD = 96  # bytes per element the baseline keeps for autograd (measured: 72-96)
_clock = time.perf_counter  # or time.process_time (--cpu-time)
_KEYS = ("means", "quats", "scales", "opacities", "colors")


def _scene(n: int, batch: int, size: int) -> dict[str, Any]:
    return testing.random_scene(n, C=batch, width=size, height=size, seed=0)


def _isect_counts(scene: dict[str, Any], tight: bool) -> list[int]:
    """Tile intersections of each camera of ``scene`` (the CPU backend's stages)."""
    st = RasterSettings(scene["width"], scene["height"], tight_tiles=tight)
    ops = NativeOps("cpu")
    g = Gaussians(*(scene[k] for k in _KEYS))
    with torch.no_grad():
        p = ops.projection(g, scene["viewmats"], scene["Ks"], st)
        opac = scene["opacities"].expand(p.depths.shape)
        isect = ops.isect_tiles(p.means2d, p.radii, p.depths, p.conics, opac, st)
    ends = torch.cat([isect.offsets.reshape(-1).long()[1:], torch.tensor([isect.n_isects])])
    per_tile = ends - isect.offsets.reshape(-1).long()
    return [int(c.sum()) for c in per_tile.reshape(p.depths.shape[0], -1)]


def _cpu(**scene: Any) -> tuple[Any, ...]:
    return rg.rasterize(**scene, backend="cpu")  # tight_tiles (default True) may be in scene


def _baseline(tight: bool, **scene: Any) -> tuple[Any, ...]:
    """The baseline, one camera at a time (the backward runs inside, per camera)."""
    out: tuple[Any, ...] = ()
    for c in range(scene["viewmats"].shape[0]):
        sub = dict(scene, viewmats=scene["viewmats"][c : c + 1], Ks=scene["Ks"][c : c + 1])
        out = _torch_baseline.rasterize(tight=tight, **sub)
        if torch.is_grad_enabled() and out[0].requires_grad:
            (out[0].sum() + out[1].sum()).backward()
    return out


def _run(
    fn: Callable[..., Any], scene: dict[str, Any], backward: bool, backward_inside: bool = False
) -> float:
    """Seconds of one render (and backward) of ``scene`` by ``fn``."""
    p = dict(scene)
    if backward:
        p.update({k: scene[k].clone().requires_grad_(True) for k in _KEYS})
    t0 = _clock()
    with torch.enable_grad() if backward else torch.no_grad():
        rgb, alpha = fn(**p)[:2]
        if backward and not backward_inside:
            (rgb.sum() + alpha.sum()).backward()
    return _clock() - t0


def _interleaved(fns: list[Callable[[], float] | None], repeats: list[int]) -> list[float]:
    """Median milliseconds of each of ``fns`` (``None``: skipped), run in turns after one warm-up
    round, so load changes hit every one alike."""
    times: list[list[float]] = [[] for _ in fns]
    for r in range(1 + max(repeats)):
        for i, fn in enumerate(fns):
            if fn is not None and r <= repeats[i]:
                t = fn()
                if r > 0:
                    times[i].append(t)
    return [statistics.median(t) * 1e3 if t else float("nan") for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="256x256, 10k Gaussians, batch 1 only")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per CPU-backend cell (median)")
    ap.add_argument("--ref-repeats", type=int, default=3, help="timed runs per baseline cell (median)")
    ap.add_argument("--threads", type=int, default=0, help="torch/CPU-backend threads (0: torch default)")
    ap.add_argument(
        "--max-ref-elements", type=float, default=1.5e9, help="skip baseline forwards above this E"
    )
    ap.add_argument("--max-ref-gb", type=float, default=5.0, help="skip baseline backwards above this memory")
    ap.add_argument("--tight-baseline", action="store_true", help="the baseline on the exact tile test too")
    ap.add_argument("--cpu-time", action="store_true", help="process CPU time instead of wall time")
    args = ap.parse_args()
    global _clock
    if args.cpu_time:
        _clock = time.process_time
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sizes, counts, batches = ([256], [10_000], [1]) if args.quick else ([256, 512], [10_000, 50_000], [1, 8])
    cells = [(size, n, b) for size in sizes for n in counts for b in batches]

    kind = "exact tile test" if args.tight_baseline else "3.33 sigma boxes"
    threads = torch.get_num_threads()
    clock = "process CPU time" if args.cpu_time else "wall time"
    print(
        f"rigged_gaussians CPU backend vs the PyTorch baseline ({kind}), float32, {threads} threads, {clock}"
    )
    ref_fn = partial(_baseline, args.tight_baseline)
    print(f"{'size':>5} {'N':>6} {'B':>2} {'pass':>8} {'cpu ms':>9} {'base ms':>10} {'base/cpu':>9}")
    for size, n, batch in cells:
        scene = _scene(n, batch, size)
        E = [256 * m for m in _isect_counts(scene, tight=args.tight_baseline)]
        for name, backward in (("fwd", False), ("fwd+bwd", True)):
            gb = max(E) * _REF_BYTES_BWD / 2**30
            reason = None
            if not backward and sum(E) > args.max_ref_elements:
                reason = f"E={sum(E):.1e} > {args.max_ref_elements:.1e} elements"
            elif backward and gb > args.max_ref_gb:
                reason = f"autograd needs ~{gb:.0f} GB per camera > {args.max_ref_gb:g} GB"
            cpu = lambda s=scene, b=backward: _run(_cpu, s, b)  # noqa: E731
            base = None if reason else (lambda s=scene, b=backward: _run(ref_fn, s, b, True))  # noqa: E731
            t_cpu, t_ref = _interleaved([cpu, base], [args.repeats, args.ref_repeats])
            ref = f"skipped ({reason})" if reason else f"{t_ref:10.1f} {t_ref / t_cpu:8.1f}x"
            print(f"{size:5d} {n:6d} {batch:2d} {name:>8} {t_cpu:9.1f} {ref}", flush=True)

    print(
        "\ntight tiles: tile intersections and CPU backend forward ms, gsplat's boxes vs tight (same images)"
    )
    head = f"{'isects box':>11} {'tight':>9} {'ratio':>6} {'ms box':>8} {'tight':>8}"
    print(f"{'size':>5} {'N':>6} {'B':>2} {head}")
    for size, n, batch in cells:
        scene = _scene(n, batch, size)
        loose, tight = sum(_isect_counts(scene, False)), sum(_isect_counts(scene, True))
        runs = [lambda s=scene, t=t: _run(partial(_cpu, tight_tiles=t), s, False) for t in (False, True)]
        t_loose, t_tight = _interleaved(runs, [args.repeats, args.repeats])
        row = f"{loose:11d} {tight:9d} {tight / loose:6.2f} {t_loose:8.1f} {t_tight:8.1f}"
        print(f"{size:5d} {n:6d} {batch:2d} {row}", flush=True)


if __name__ == "__main__":
    main()
