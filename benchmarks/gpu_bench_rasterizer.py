"""GPU benchmark of rigged_gaussians' CUDA rasterizer (fps at 1024x1024).

Measures ``render_rigged`` (triangle frames + fused deformation/projection + rasterizer) with
100k and 300k Gaussians, forward and forward+backward, batch (cameras) 1 and 8, and — when
``gsplat`` is importable — gsplat's ``rasterization`` on the same world-space scene (deformed
once, outside the timed region, so gsplat gets no deformation cost), printing our/gsplat ratios.

Usage: ``python benchmarks/gpu_bench_rasterizer.py [--quick] [--iters N]`` (``nox -s gpu_bench``).
Exits with a clear message when no CUDA GPU or no CUDA build is present.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

import torch

SIZE = 1024


def _fail(msg: str) -> None:
    print(f"gpu_bench_rasterizer: {msg}")
    sys.exit(1)


def _scene(N: int, B: int, device: str) -> dict:
    """A sphere-like mesh with N local Gaussians bound to its faces and B cameras around it."""
    g = torch.Generator().manual_seed(0)
    n_lat, n_lon = 64, 128
    th = torch.linspace(0.05, math.pi - 0.05, n_lat)
    ph = torch.linspace(0, 2 * math.pi, n_lon + 1)[:-1]
    tt, pp = torch.meshgrid(th, ph, indexing="ij")
    verts = torch.stack([tt.sin() * pp.cos(), tt.cos(), tt.sin() * pp.sin()], -1).reshape(-1, 3)
    faces = []
    for i in range(n_lat - 1):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            faces += [[a, b, d], [a, d, c]]
    faces_t = torch.tensor(faces, dtype=torch.int64)
    F = faces_t.shape[0]
    viewmats, Ks = [], []
    for c in range(B):
        a = 2 * math.pi * c / max(B, 1)
        R = torch.tensor([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
        vm = torch.eye(4)
        vm[:3, :3] = R
        vm[:3, 3] = torch.tensor([0.0, 0.0, 3.0])
        viewmats.append(vm)
        f = 1.2 * SIZE
        Ks.append(torch.tensor([[f, 0, SIZE / 2], [0, f, SIZE / 2], [0, 0, 1.0]]))
    d = device
    return {
        "vertices": verts[None].to(d),
        "faces": faces_t.to(d),
        "means": (torch.rand(N, 3, generator=g) - 0.5).mul(0.5).to(d),
        "quats": torch.randn(N, 4, generator=g).to(d),
        "log_scales": (torch.rand(N, 3, generator=g) * 1.5 - 1.5).to(d),
        "opacities": (torch.rand(N, generator=g) * 0.8 + 0.1).to(d),
        "colors": torch.rand(N, 3, generator=g).to(d),
        "face_ids": torch.randint(0, F, (N,), generator=g).to(d),
        "viewmats": torch.stack(viewmats)[None].to(d),
        "Ks": torch.stack(Ks)[None].to(d),
    }


def _time(fn: Callable[[], None], iters: int) -> float:
    """Mean seconds per call of ``fn`` after warm-up, with CUDA events."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000.0 / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k Gaussians, batch 1 only")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per config")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        _fail("no CUDA GPU visible to torch; run this on a machine with an NVIDIA GPU")
    try:
        import rigged_gaussians as rg
    except ImportError as exc:
        _fail(f"rigged_gaussians is not installed ({exc}); pip install ./packages/rigged-gaussians")
    if not rg.cuda_available():
        _fail("rigged_gaussians was built without CUDA; reinstall with RG_CUDA=ON")
    try:
        from gsplat import rasterization as gs_rasterization
    except ImportError:
        gs_rasterization = None
        print("gsplat not importable: printing rigged_gaussians numbers only")

    sizes = [100_000] if args.quick else [100_000, 300_000]
    batches = [1] if args.quick else [1, 8]
    print(f"device: {torch.cuda.get_device_name()}  image {SIZE}x{SIZE}  iters {args.iters}")
    header = f"{'N':>8} {'B':>3} {'pass':>8} {'ours fps':>10} {'gsplat fps':>11} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for N in sizes:
        for B in batches:
            s = _scene(N, B, "cuda")
            params = {k: s[k].clone().requires_grad_(True) for k in ("means", "quats",
                      "log_scales", "opacities", "colors")}  # fmt: skip
            verts = s["vertices"].clone().requires_grad_(True)

            def ours(backward: bool, p=params, v=verts, sc=s) -> None:
                rgb, alpha, _ = rg.render_rigged(
                    v, sc["faces"], p["means"], p["quats"], p["log_scales"], p["opacities"],
                    p["colors"], sc["face_ids"], sc["viewmats"], sc["Ks"], SIZE, SIZE,
                    backend="cuda",
                )  # fmt: skip
                if backward:
                    (rgb.sum() + alpha.sum()).backward()

            gs = None
            if gs_rasterization is not None:
                with torch.no_grad():
                    fr = rg.triangle_frames(s["vertices"], s["faces"])
                    d = rg.deform(s["means"], s["quats"], s["log_scales"], s["face_ids"], fr)
                w = {
                    "means": d.means[0].clone().requires_grad_(True),
                    "quats": d.quats[0].clone().requires_grad_(True),
                    "scales": d.scales[0].clone().requires_grad_(True),
                    "opacities": s["opacities"].clone().requires_grad_(True),
                    "colors": s["colors"].clone().requires_grad_(True),
                }

                def gs(backward: bool, w=w, sc=s) -> None:
                    rgb, alpha, _ = gs_rasterization(
                        w["means"], w["quats"], w["scales"], w["opacities"], w["colors"],
                        sc["viewmats"][0], sc["Ks"][0], SIZE, SIZE,
                    )  # fmt: skip
                    if backward:
                        (rgb.sum() + alpha.sum()).backward()

            for backward, name in ((False, "fwd"), (True, "fwd+bwd")):
                ctx = torch.enable_grad() if backward else torch.no_grad()
                with ctx:
                    t_ours = _time(lambda b=backward: ours(b), args.iters)
                    t_gs = _time(lambda b=backward, f=gs: f(b), args.iters) if gs else float("nan")
                fps_ours = B / t_ours
                fps_gs = B / t_gs if gs else float("nan")
                ratio = t_gs / t_ours if gs else float("nan")
                print(f"{N:>8} {B:>3} {name:>8} {fps_ours:>10.1f} {fps_gs:>11.1f} {ratio:>7.2f}")
    print("fps counts images (cameras) per second; ratio = gsplat time / ours (>1: ours faster)")


if __name__ == "__main__":
    main()
