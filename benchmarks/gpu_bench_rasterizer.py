"""GPU benchmark of rigged_gaussians' CUDA rasterizer (fps at 1024x1024) against gsplat.

Measures ``render_rigged`` (triangle frames + fused deformation/projection + rasterizer) with
100k and 300k Gaussians, forward, backward and both, batch (cameras) 1 and 8, and gsplat's
``rasterization`` on the same world-space scene (deformed once, outside the timed region, so
gsplat gets no deformation cost), built on this machine (``pip install gsplat`` compiles its CUDA
code on first use: the warm-up below, timed and printed). Prints fps and the gsplat/ours time
ratios for the forward and the backward (backward = forward+backward - forward), then the goal
line at 100k Gaussians, 1024^2, one camera: >= 1,000 fps forward and >= 1.3x gsplat forward and
backward. Before timing, the two images are compared (max abs difference printed).

Usage: ``python benchmarks/gpu_bench_rasterizer.py [--quick] [--iters N]`` (``nox -s gpu_bench``).
Exits with a clear message when no CUDA GPU or no CUDA build is present.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
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


def _gsplat_world(rg: object, s: dict) -> dict:
    """The scene's world Gaussians (deformed once by rigged_gaussians, untimed) for gsplat."""
    with torch.no_grad():
        fr = rg.triangle_frames(s["vertices"], s["faces"])
        d = rg.deform(s["means"], s["quats"], s["log_scales"], s["face_ids"], fr)
    return {
        "means": d.means[0].clone().requires_grad_(True),
        "quats": d.quats[0].clone().requires_grad_(True),
        "scales": d.scales[0].clone().requires_grad_(True),
        "opacities": s["opacities"].clone().requires_grad_(True),
        "colors": s["colors"].clone().requires_grad_(True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k Gaussians, batch 1 only")
    parser.add_argument("--iters", type=int, default=50, help="timed iterations per config")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        _fail("no CUDA GPU visible to torch; run this on a machine with an NVIDIA GPU")
    try:
        import rigged_gaussians as rg
    except ImportError as exc:
        _fail(f"rigged_gaussians is not installed ({exc}); pip install ./packages/rigged-gaussians")
    if not rg.cuda_available():
        _fail(f"rigged_gaussians was built without CUDA ({rg.build_info()}); reinstall with RG_CUDA=ON")
    try:
        from gsplat import rasterization as gs_rasterization
    except ImportError:
        gs_rasterization = None
        print("gsplat not importable: printing rigged_gaussians numbers only")
    info = rg.build_info()
    print(f"device: {torch.cuda.get_device_name()}  image {SIZE}x{SIZE}  iters {args.iters}")
    cuda = f"CUDA {info['cuda_runtime']} (driver {info['cuda_driver']}), sm {info['cuda_architectures']}"
    print(f"rigged_gaussians: {cuda}")

    sizes = [100_000] if args.quick else [100_000, 300_000]
    batches = [1] if args.quick else [1, 8]
    header = f"{'N':>8} {'B':>3} {'pass':>8} {'ours fps':>10} {'gsplat fps':>11} {'gsplat/ours':>12}"
    goal: dict[str, tuple[float, float]] = {}
    rows = []
    for N in sizes:
        for B in batches:
            s = _scene(N, B, "cuda")
            params = {k: s[k].clone().requires_grad_(True) for k in ("means", "quats",
                      "log_scales", "opacities", "colors")}  # fmt: skip
            verts = s["vertices"].clone().requires_grad_(True)

            def ours(backward: bool, p=params, v=verts, sc=s) -> tuple:
                rgb, alpha, _ = rg.render_rigged(
                    v, sc["faces"], p["means"], p["quats"], p["log_scales"], p["opacities"],
                    p["colors"], sc["face_ids"], sc["viewmats"], sc["Ks"], SIZE, SIZE,
                    backend="cuda",
                )  # fmt: skip
                if backward:
                    (rgb.sum() + alpha.sum()).backward()
                return rgb, alpha

            gs = None
            if gs_rasterization is not None:
                w = _gsplat_world(rg, s)

                def gs(backward: bool, w=w, sc=s) -> tuple:
                    rgb, alpha, _ = gs_rasterization(
                        w["means"], w["quats"], w["scales"], w["opacities"], w["colors"],
                        sc["viewmats"][0], sc["Ks"][0], SIZE, SIZE,
                    )  # fmt: skip
                    if backward:
                        (rgb.sum() + alpha.sum()).backward()
                    return rgb, alpha

                if not rows:  # first use compiles gsplat's CUDA code (JIT): time it, untimed later
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        gs(False)
                    torch.cuda.synchronize()
                    print(f"gsplat CUDA warm-up (JIT build on first use): {time.perf_counter() - t0:.1f} s")
                with torch.no_grad():
                    diff = (ours(False)[0] - gs(False)[0]).abs().max().item()
                print(f"N={N} B={B}: max |ours - gsplat| over the images = {diff:.2e}")

            times = {}
            for backward, name in ((False, "fwd"), (True, "fwd+bwd")):
                ctx = torch.enable_grad() if backward else torch.no_grad()
                with ctx:
                    t_ours = _time(lambda b=backward: ours(b), args.iters)
                    t_gs = _time(lambda b=backward, f=gs: f(b), args.iters) if gs else float("nan")
                times[name] = (t_ours, t_gs)
            times["bwd"] = tuple(b - f for f, b in zip(times["fwd"], times["fwd+bwd"], strict=True))
            for name in ("fwd", "bwd", "fwd+bwd"):
                t_ours, t_gs = times[name]
                rows.append(
                    f"{N:>8} {B:>3} {name:>8} {B / t_ours:>10.1f} {B / t_gs:>11.1f} {t_gs / t_ours:>12.2f}"
                )
                if N == 100_000 and B == 1:
                    goal[name] = (B / t_ours, t_gs / t_ours)
    print(header)
    print("-" * len(header))
    print("\n".join(rows))
    print("fps counts images (cameras) per second; gsplat/ours = gsplat time / ours (>1: ours faster)")
    if goal:
        fps, r_fwd = goal["fwd"]
        met = "met" if fps >= 1000 else "MISSED"
        print(
            f"goal (100k, {SIZE}^2, B=1): forward {fps:.0f} fps (>= 1000: {met}), "
            f"gsplat/ours forward {r_fwd:.2f} and backward {goal['bwd'][1]:.2f} (>= 1.3 each)"
        )


if __name__ == "__main__":
    main()
