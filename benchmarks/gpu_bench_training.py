"""GPU benchmark of one full HeadStudio training step (issue 5): batch 8, 1024² renders, F-SDS.

Builds the SD 1.5 UNet, a ControlNet of the same shape and the SD VAE / CLIP text encoder with
random weights from their configurations (``gpu_bench_guidance.build_full_models``, no
download), fp16 on the GPU, and times ``Trainer.train_step()``: sample 8 poses and cameras,
render the avatar (the paper's init: K = 10 Gaussians per triangle), resize to 512², F-SDS
(one batched ControlNet + UNet call over text / empty / negative), mesh regularisation,
backward through the VAE encoder, rasterizer, deformation and LBS, Adam, gradient accumulation
for densification. The baseline measured in the same run is the guidance alone (F-SDS +
backward on random 1024² images of the same batch), so the ratio is the cost of everything the
trainer adds. Peak allocated memory is reported for both. Goal (issue 5, H100): <= 90 ms/step
(10k steps in <= 15 min), peak <= 16 GB. Exits cleanly (status 0) without a GPU.

Usage::

    python benchmarks/gpu_bench_training.py [--batch 8] [--resolution 1024] [--steps 20]
    python benchmarks/gpu_bench_training.py --tiny   # CPU smoke run: tiny models, 64², 3 steps
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _config(args: argparse.Namespace, device: str):
    from headstudio.config import HeadStudioConfig

    cfg = HeadStudioConfig()
    t = cfg.train
    t.batch_size, t.resolution, t.guidance_resolution = args.batch, args.resolution, args.guidance_resolution
    t.device, t.preview_every, t.checkpoint_every, t.log_every = device, 0, 0, 0
    t.steps = args.warmup + args.steps
    cfg.init.points_per_face = args.points_per_face
    return cfg


def _models(args: argparse.Namespace, device: torch.device):
    if args.tiny:
        from fsds_guidance.testing import tiny_components

        return tiny_components(device=device)
    from gpu_bench_guidance import build_full_models

    return build_full_models(device, torch.float16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, n: int, device: torch.device) -> list[float]:
    out = []
    for _ in range(n):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a on the CPU"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--guidance-resolution", type=int, default=512)
    parser.add_argument("--points-per-face", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with the tiny test models")
    args = parser.parse_args()
    if args.tiny:
        args.batch, args.resolution, args.guidance_resolution = 2, 64, 64
        args.points_per_face, args.warmup, args.steps = 1, 1, 3
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            print("gpu_bench_training: no CUDA device available; nothing measured.")
            return 0
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    from flame_core.model import FlameModel
    from headstudio.train.guidance import FSDSGuidance
    from headstudio.train.trainer import Trainer

    cfg = _config(args, str(device))
    head = FlameModel.procedural(num_shape=cfg.head.num_shape, num_expression=cfg.head.num_expression)
    models = _models(args, device)
    guidance = FSDSGuidance(
        cfg.guidance,
        head.to(device),
        device,
        models=models,
        prompt="a DSLR portrait of Kratos",
        image_size=cfg.train.guidance_resolution,
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{name}, torch {torch.__version__}, batch {args.batch}, render {args.resolution}², guidance "
        f"{args.guidance_resolution}², {'tiny' if args.tiny else 'SD 1.5-size fp16'} models"
    )

    # baseline: the guidance alone on random renders of the same batch
    from headstudio.train.batch_sampler import TrainBatch

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer.new(
            cfg,
            prompt="a DSLR portrait of Kratos",
            output_dir=tmp,
            guidance=guidance,
            head=head,
            progress=False,
        )
        print(f"Gaussians: {trainer.avatar.num_gaussians}")
        batch: TrainBatch = trainer.sample_batch()
        with torch.no_grad():
            vertices = trainer.avatar.pose(batch.params())
        images = torch.rand(
            args.batch, 3, args.resolution, args.resolution, device=device, requires_grad=True
        )

        def guidance_only() -> None:
            out = guidance(images, batch, 1, vertices)
            out.losses["loss_sds"].backward()
            images.grad = None

        for _ in range(args.warmup):
            guidance_only()
        _peak_reset(device)
        base = _time(guidance_only, args.steps, device)
        base_peak = _peak(device)

        for _ in range(args.warmup):
            trainer.train_step()
        _peak_reset(device)
        full = _time(trainer.train_step, args.steps, device)
        full_peak_gb = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
        full_peak = _peak(device)

    b_med, f_med = statistics.median(base), statistics.median(full)
    print(f"guidance only (baseline): {b_med:8.1f} ms/step (median of {len(base)}), peak {base_peak}")
    print(
        f"full training step:       {f_med:8.1f} ms/step (median of {len(full)}, "
        f"mean {statistics.mean(full):.1f}), peak {full_peak}"
    )
    print(f"ratio full / guidance-only: {f_med / b_med:.2f}x")
    if not args.tiny:
        print(
            f"goal (H100): <= 90 ms/step -> {'met' if f_med <= 90 else 'NOT met'}; "
            f"peak <= 16 GB -> {'met' if full_peak_gb <= 16 else 'NOT met'}; "
            f"10k steps ≈ {f_med * 1e4 / 6e4:.1f} min"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
