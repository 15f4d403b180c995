"""CPU benchmark of rigged_gaussians: the C++ CPU backend vs the pure-PyTorch reference.

Renders world-space Gaussians (``rasterize``: projection, tile intersection, sort, blending)
at 256x256 and 512x512 with 10k and 50k Gaussians and batches of 1 and 8 cameras, forward and
forward+backward, both in float32 on the same inputs, and prints the time of each and the ratio
reference / CPU backend (goal: >= 20x). Cells where the reference is infeasible on this machine
are printed as ``skipped (reason)``; nothing is extrapolated.

The reference is run camera by camera (the cameras of a batch are independent, so its time is
the sum; this also bounds its memory to one camera). It blends every (pixel, Gaussian) pair of
each tile as dense tensors: its cost for a camera is ``E = 256 x tile intersections`` elements.
The forward runs under ``no_grad`` (chunked, little memory) and is skipped when the batch's total
``E`` exceeds ``--max-ref-elements`` (time); the backward keeps ~``_REF_BYTES_BWD`` bytes per
element for autograd (measured) and is skipped when one camera would need more than
``--max-ref-gb``.

Usage: ``python benchmarks/bench_rasterizer.py [--quick] [--repeats N] [--threads T]``
(``nox -s bench``). ``--quick``: 256x256, 10k Gaussians, batch 1 only.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

import torch
from _timing import median_ms
from rigged_gaussians import _cpu, _glue, reference, testing

_REF_BYTES_BWD = 96  # bytes per element the reference keeps for autograd (measured: 72-96)


def _scene(n: int, batch: int, size: int) -> dict[str, Any]:
    return testing.random_scene(n, C=batch, width=size, height=size, seed=0)


def _ref_elements(scene: dict[str, Any]) -> list[int]:
    """``E`` of the reference for each camera of ``scene`` (256 pixels x tile intersections)."""
    with torch.no_grad():
        _, _, meta = _cpu.rasterize_cpu(**scene)
        tiles = math.ceil(scene["width"] / 16)
        offsets, _, n = _glue.isect_tiles(
            _glue.CPU, meta["radii"], meta["means2d"], meta["depths"], 16, tiles, tiles
        )
    bounds = torch.cat([offsets.reshape(-1).long(), n.reshape(1)])
    counts = (bounds[1:] - bounds[:-1]).reshape(offsets.shape[0], -1)
    return [256 * int(c.sum()) for c in counts]


def _per_camera(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` once per camera of the scene (for the reference); returns the last result."""

    def run(**scene: Any) -> Any:
        out = None
        for c in range(scene["viewmats"].shape[0]):
            sub = dict(scene, viewmats=scene["viewmats"][c : c + 1], Ks=scene["Ks"][c : c + 1])
            out = fn(**sub)
            if torch.is_grad_enabled() and out[0].requires_grad:
                (out[0].sum() + out[1].sum()).backward()
        return out

    return run


def _fwd(fn: Callable[..., Any], scene: dict[str, Any]) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            fn(**scene)

    return run


def _fwd_bwd(
    fn: Callable[..., Any], scene: dict[str, Any], backward_inside: bool = False
) -> Callable[[], None]:
    keys = ("means", "quats", "scales", "opacities", "colors")

    def run() -> None:
        p = dict(scene)
        for k in keys:
            p[k] = scene[k].clone().requires_grad_(True)
        rgb, alpha, _ = fn(**p)
        if not backward_inside:
            (rgb.sum() + alpha.sum()).backward()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="256x256, 10k Gaussians, batch 1 only")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median)")
    ap.add_argument("--ref-repeats", type=int, default=1, help="timed runs per reference cell")
    ap.add_argument("--threads", type=int, default=0, help="torch/CPU-backend threads (0: torch default)")
    ap.add_argument(
        "--max-ref-elements", type=float, default=1.5e9, help="skip reference forwards above this E"
    )
    ap.add_argument(
        "--max-ref-gb", type=float, default=5.0, help="skip reference backwards above this memory"
    )
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sizes, counts, batches = ([256], [10_000], [1]) if args.quick else ([256, 512], [10_000, 50_000], [1, 8])

    print(f"rigged_gaussians CPU backend vs reference, float32, {torch.get_num_threads()} threads")
    print(f"{'size':>5} {'N':>6} {'B':>2} {'pass':>8} {'cpu ms':>9} {'ref ms':>10} {'ref/cpu':>8}")
    for size in sizes:
        for n in counts:
            for batch in batches:
                scene = _scene(n, batch, size)
                E = _ref_elements(scene)
                ref_fn = _per_camera(reference.rasterize)
                for name in ("fwd", "fwd+bwd"):
                    if name == "fwd":
                        t_cpu = median_ms(_fwd(_cpu.rasterize_cpu, scene), args.repeats)
                    else:
                        t_cpu = median_ms(_fwd_bwd(_cpu.rasterize_cpu, scene), args.repeats)
                    gb = max(E) * _REF_BYTES_BWD / 2**30
                    if name == "fwd" and sum(E) > args.max_ref_elements:
                        ref = f"skipped (E={sum(E):.1e} > {args.max_ref_elements:.1e} elements)"
                    elif name == "fwd+bwd" and gb > args.max_ref_gb:
                        ref = f"skipped (autograd needs ~{gb:.0f} GB per camera > {args.max_ref_gb:g} GB)"
                    else:
                        make = _fwd(ref_fn, scene) if name == "fwd" else _fwd_bwd(ref_fn, scene, True)
                        t_ref = median_ms(make, args.ref_repeats)
                        ref = f"{t_ref:10.1f} {t_ref / t_cpu:7.1f}x"
                    print(f"{size:5d} {n:6d} {batch:2d} {name:>8} {t_cpu:9.1f} {ref}", flush=True)


if __name__ == "__main__":
    main()
