"""CPU benchmark of flame_core's FLAME LBS against smplx's FLAME on the same model file.

The procedural head is saved as a FLAME pickle in a temporary directory; ``flame_core.FlameModel``
and ``smplx.FLAME`` (300 shape + 100 expression components, full pose, translation) both load
it. For each batch size both run on the same random inputs; repeats alternate between the two so
background load hits both alike. Prints median milliseconds per call, the ratio of medians
smplx / ours (> 1: ours is faster) and, as ``best``, the ratio of the fastest runs (less
sensitive to a busy machine). Forward only (``torch.no_grad``) by default; ``--backward``
adds a forward + backward column pair (gradients to shape, expression and poses).

Usage: ``python benchmarks/bench_flame.py [--threads N] [--repeats N] [--batches 1 8 256]``.

Threads: on a shared or loaded machine use ``--threads 1``; with more intra-op threads than idle
cores, OpenMP barriers wait on descheduled threads and both columns become erratic (on the
loaded 2-core development machine ``--threads 2`` gave 1.1-7x swings between runs).
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from flame_core import FlameModel
from flame_core.io import save_flame_pickle
from flame_core.procedural import build_procedural_head


def _write_model(d: Path) -> Path:
    save_flame_pickle(build_procedural_head().model_dict, d / "FLAME_NEUTRAL.pkl")
    with open(d / "flame_static_embedding.pkl", "wb") as fh:  # smplx.FLAME needs one
        pickle.dump(
            {"lmk_face_idx": np.arange(51, dtype=np.int64), "lmk_b_coords": np.full((51, 3), 1 / 3)}, fh
        )
    return d / "FLAME_NEUTRAL.pkl"


def _inputs(B: int, dtype: torch.dtype, grad: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(B)
    p = {
        "shape": torch.randn(B, 300, generator=g, dtype=dtype),
        "expression": torch.randn(B, 100, generator=g, dtype=dtype),
        "global_orient": 0.3 * torch.randn(B, 3, generator=g, dtype=dtype),
        "neck_pose": 0.3 * torch.randn(B, 3, generator=g, dtype=dtype),
        "jaw_pose": 0.3 * torch.randn(B, 3, generator=g, dtype=dtype),
        "eye_pose": 0.3 * torch.randn(B, 6, generator=g, dtype=dtype),
        "translation": 0.1 * torch.randn(B, 3, generator=g, dtype=dtype),
    }
    return {k: v.requires_grad_(grad and k != "translation") for k, v in p.items()}


def _smplx_kwargs(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        "betas": p["shape"],
        "expression": p["expression"],
        "global_orient": p["global_orient"],
        "neck_pose": p["neck_pose"],
        "jaw_pose": p["jaw_pose"],
        "leye_pose": p["eye_pose"][:, :3],
        "reye_pose": p["eye_pose"][:, 3:],
        "transl": p["translation"],
    }


def _time_pair(
    a: Callable[[], object], b: Callable[[], object], repeats: int, warmup: int
) -> tuple[float, float, float]:
    """Median ms of ``a`` and ``b`` (measured alternately) and the ratio of their fastest runs."""
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3, min(ta) / min(tb)


def _bench_batch(
    ours: torch.nn.Module, ref: torch.nn.Module, B: int, dtype: torch.dtype, reps: int, backward: bool
) -> str:
    """One table row: forward (and optionally forward + backward) times of smplx and ours."""
    p = _inputs(B, dtype, grad=False)
    sp = _smplx_kwargs(p)
    with torch.no_grad():
        diff = (ours(**p).vertices - ref(**sp).vertices).abs().max().item()
        t_ref, t_ours, best = _time_pair(lambda: ref(**sp), lambda: ours(**p), reps, warmup=2)
    line = f"{B:>5} {t_ref:>9.2f} {t_ours:>9.2f} {t_ref / t_ours:>5.2f}x {best:>5.2f}x"
    if backward:
        pg = _inputs(B, dtype, grad=True)
        spg = _smplx_kwargs(pg)
        fb_ref, fb_ours, fb_best = _time_pair(
            lambda: ref(**spg).vertices.square().sum().backward(),
            lambda: ours(**pg).vertices.square().sum().backward(),
            max(3, reps // 2),
            warmup=1,
        )
        line += f" {fb_ref:>10.2f} {fb_ours:>9.2f} {fb_ref / fb_ours:>5.2f}x {fb_best:>5.2f}x"
    return line + f"   (max |ours - smplx| = {diff:.1e} m)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per batch size (default by size)"
    )
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 256])
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--backward", action="store_true", help="also time forward + backward")
    args = ap.parse_args(argv)
    try:
        import smplx
    except ImportError:
        print("smplx is not installed (pip install smplx==0.1.28): it is the baseline", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = _write_model(Path(tmp))
        ours = FlameModel.from_file(path, dtype=dtype)
        ref = smplx.FLAME(tmp, num_betas=300, num_expression_coeffs=100, batch_size=1, dtype=dtype)
    print(
        f"FLAME LBS, procedural head (V={ours.num_vertices}, 300 shape + 100 expression, full pose), "
        f"CPU {args.dtype}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; "
        "median ms per call"
    )
    cols = f"{'batch':>5} {'smplx':>9} {'ours':>9} {'ratio':>6} {'best':>6}"
    if args.backward:
        cols += f" {'smplx f+b':>10} {'ours f+b':>9} {'ratio':>6} {'best':>6}"
    print(cols)
    for B in args.batches:
        reps = args.repeats or (30 if B <= 8 else 7 if B <= 64 else 5)
        print(_bench_batch(ours, ref, B, dtype, reps, args.backward))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
