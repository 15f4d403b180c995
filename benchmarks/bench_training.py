"""CPU benchmark of one HeadStudio training step with the tiny F-SDS test models (issue 5).

Times ``Trainer.train_step()`` (sample poses and cameras, render, tiny F-SDS at 64², mesh
regularisation, backward, Adam, densification bookkeeping) at a small resolution with the
compiled C++ CPU renderer, against the same step with the pure-PyTorch reference renderer
(``backend="torch"``) measured in the same run, and prints both and their ratio.

Usage: ``python benchmarks/bench_training.py [--resolution 64] [--batch 2] [--steps 10]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def _trainer(args: argparse.Namespace, backend: str, tmp: str, models, head):
    from headstudio.config import HeadStudioConfig
    from headstudio.train.guidance import FSDSGuidance
    from headstudio.train.trainer import Trainer

    cfg = HeadStudioConfig()
    t = cfg.train
    t.batch_size, t.resolution, t.guidance_resolution, t.device = args.batch, args.resolution, 64, "cpu"
    t.preview_every = t.checkpoint_every = t.log_every = 0
    t.steps = 10**6
    cfg.init.points_per_face = args.points_per_face
    guidance = FSDSGuidance(cfg.guidance, head, "cpu", models=models, prompt="a portrait", image_size=64)
    tr = Trainer.new(cfg, prompt="a portrait", output_dir=tmp, guidance=guidance, head=head, progress=False)
    tr.render_backend = backend
    return tr


def _time(trainer, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        trainer.train_step()
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--points-per-face", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--baseline-steps", type=int, default=2, help="steps of the (slow) reference renderer"
    )
    args = parser.parse_args()

    from flame_core.model import FlameModel
    from fsds_guidance.testing import tiny_components

    head = FlameModel.procedural(num_shape=100, num_expression=100)
    models = tiny_components()
    print(
        f"CPU ({torch.get_num_threads()} threads), torch {torch.__version__}, batch {args.batch}, "
        f"render {args.resolution}², tiny F-SDS at 64², {args.points_per_face} Gaussian(s) per triangle"
    )
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        fast = _trainer(args, "auto", a, models, head)
        ours = _time(fast, 2, args.steps)
        ref = _time(_trainer(args, "torch", b, models, head), 1, args.baseline_steps)
    o, r = statistics.median(ours), statistics.median(ref)
    print(f"Gaussians: {fast.avatar.num_gaussians}")
    print(f"training step, compiled CPU renderer:  {o:9.1f} ms/step (median of {len(ours)})")
    print(f"training step, PyTorch reference:      {r:9.1f} ms/step (median of {len(ref)}, baseline)")
    print(f"speed-up vs the reference renderer: {r / o:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
