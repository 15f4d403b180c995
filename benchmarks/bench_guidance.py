"""CPU benchmark of fsds_guidance (tiny random models; no download).

1. One F-SDS step (forward + backward to the renders) with the tiny models at batch 1 and 8:
   ours (one batched ControlNet+UNet call over the 3 conditions) vs a baseline evaluating the
   three conditions with three separate calls, measured in the same run.
2. Control-map drawing, batch 8 at 512², 478 landmarks: vectorised torch drawing vs the naive
   per-segment loop (``draw_control_map_naive``), on a face-like layout (short segments along
   each contour) and a random layout (long segments, worst case).

Usage: ``python benchmarks/bench_guidance.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import math

import torch
from _timing import median_ms
from fsds_guidance import FSDS, FSDSConfig
from fsds_guidance.control import CONTROL_PALETTE, draw_control_map, draw_control_map_naive
from fsds_guidance.testing import tiny_components
from mediapipe.tasks.python.vision import FaceLandmarksConnections as conn


class ThreeCallFSDS(FSDS):
    """Baseline: one ControlNet+UNet call per condition (3 calls per step)."""

    def predict_noise(self, latents_noisy, t, embeddings, control):
        bsz = latents_noisy.shape[0]
        parts = embeddings.split(bsz, dim=0)
        return torch.cat(
            [super(ThreeCallFSDS, self).predict_noise(latents_noisy, t, e, control) for e in parts]
        )


def bench_step(repeats: int) -> None:
    models = tiny_components(seed=0)
    cfg = FSDSConfig(image_size=64)
    ours, base = FSDS(models, cfg), ThreeCallFSDS(models, cfg)
    print("F-SDS step, tiny models, CPU fp32, 64² renders (forward + backward), median ms")
    print(f"{'batch':>5} {'3 calls':>10} {'1 batched':>10} {'speed-up':>9}")
    for bsz in (1, 8):
        images = torch.rand(bsz, 3, 64, 64, requires_grad=True)
        control = torch.zeros(bsz, 3, 64, 64)
        az = torch.linspace(-180, 180, bsz)
        el = torch.zeros(bsz)

        def step(f: FSDS, images=images, control=control, az=az, el=el) -> None:
            out = f(images, control, "a portrait of a man", az, el, step=10)
            out.loss.backward()

        t_base = median_ms(lambda: step(base), repeats, warmup=2)
        t_ours = median_ms(lambda: step(ours), repeats, warmup=2)
        print(f"{bsz:>5} {t_base:>10.2f} {t_ours:>10.2f} {t_base / t_ours:>8.2f}x")


def face_like_layout(bsz: int, size: int = 512, seed: int = 0) -> torch.Tensor:
    """``[B, 478, 2]``: each contour set's points walked in order around its own ellipse."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(bsz, 478, 2, generator=g) * size * 0.3 + size * 0.35
    cx, cy = size / 2, size / 2
    boxes = {  # centre offset and radii (fraction of size) per feature
        "FACE_LANDMARKS_FACE_OVAL": (0.0, 0.0, 0.32, 0.42),
        "FACE_LANDMARKS_LEFT_EYE": (0.12, -0.08, 0.06, 0.025),
        "FACE_LANDMARKS_RIGHT_EYE": (-0.12, -0.08, 0.06, 0.025),
        "FACE_LANDMARKS_LEFT_EYEBROW": (0.12, -0.16, 0.08, 0.02),
        "FACE_LANDMARKS_RIGHT_EYEBROW": (-0.12, -0.16, 0.08, 0.02),
        "FACE_LANDMARKS_LIPS": (0.0, 0.2, 0.1, 0.04),
    }
    for name, _ in CONTROL_PALETTE:
        edges = [(c.start, c.end) for c in getattr(conn, name)]
        order: list[int] = []
        for a, b in edges:  # the sets are listed as consecutive polylines
            for v in (a, b):
                if v not in order:
                    order.append(v)
        dx, dy, rx, ry = boxes[name]
        for k, v in enumerate(order):
            ang = 2 * math.pi * k / len(order)
            pts[:, v, 0] = cx + size * (dx + rx * math.cos(ang))
            pts[:, v, 1] = cy + size * (dy + ry * math.sin(ang))
    pts[:, 468] = torch.tensor([cx - 0.12 * size, cy - 0.08 * size])
    pts[:, 473] = torch.tensor([cx + 0.12 * size, cy - 0.08 * size])
    return pts + torch.randn(bsz, 478, 2, generator=g)


def bench_control(repeats: int) -> None:
    bsz, size = 8, 512
    vis = torch.ones(bsz, 478, dtype=torch.bool)
    layouts = {
        "face-like": face_like_layout(bsz, size),
        "random": torch.rand(bsz, 478, 2, generator=torch.Generator().manual_seed(1)) * size,
    }
    print(f"\ncontrol map, batch {bsz} at {size}², 478 landmarks, CPU, median ms")
    print(f"{'layout':>10} {'naive loop':>11} {'vectorised':>11} {'speed-up':>9}")
    for name, pts in layouts.items():
        fast = draw_control_map(pts, vis, size=size)
        if not torch.equal(fast, draw_control_map_naive(pts, vis, size=size)):
            raise RuntimeError("vectorised drawing differs from the naive reference")
        t_naive = median_ms(lambda p=pts: draw_control_map_naive(p, vis, size=size), max(repeats // 4, 2))
        t_fast = median_ms(lambda p=pts: draw_control_map(p, vis, size=size), repeats, warmup=2)
        print(f"{name:>10} {t_naive:>11.1f} {t_fast:>11.1f} {t_naive / t_fast:>8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_step(args.repeats)
    bench_control(args.repeats)


if __name__ == "__main__":
    main()
