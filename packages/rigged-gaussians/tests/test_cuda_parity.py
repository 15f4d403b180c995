"""CUDA backend vs CPU backend: forward values and every gradient (skipped without a GPU).

The same comparisons as the CPU-vs-reference parity tests: random scenes of several sizes,
camera counts, pose batches and SH degrees, plus edge cases (Gaussians behind the camera, far
off-screen, huge/tiny scales, zero-area triangles). Run with ``nox -s gpu_tests``.
"""

from __future__ import annotations

import math

import pytest
import torch

rg = pytest.importorskip("rigged_gaussians")
from rigged_gaussians import testing  # noqa: E402

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not rg.cuda_available(), reason=testing.NO_CUDA)]

DEV = "cuda"


def _close(a: torch.Tensor, b: torch.Tensor, name: str, rtol: float = 2e-3) -> None:
    """Compare ``a`` (CUDA) with ``b`` (CPU) relative to the scale of ``b``.

    The mean error must be within ``rtol`` of the scale; the max error within ``5 * rtol``:
    float rounding can flip a single alpha-threshold (1/255) or early-stop (T <= 1e-4) decision
    at an isolated pixel, which moves that pixel by up to ~4e-3 of the colour scale.
    """
    a = a.detach().float().cpu()
    b = b.detach().float().cpu()
    assert a.shape == b.shape, f"{name}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    assert torch.isfinite(a).all(), f"{name}: non-finite values from CUDA"
    scale = max(b.abs().max().item(), 1e-6)
    diff = (a - b).abs()
    err_max, err_mean = diff.max().item(), diff.mean().item()
    assert err_mean <= rtol * scale, f"{name}: mean abs diff {err_mean:.3e} (scale {scale:.3e})"
    assert err_max <= 5 * rtol * scale + 1e-5, f"{name}: max abs diff {err_max:.3e} (scale {scale:.3e})"


def _cameras(C: int, width: int, height: int, dist: float = 4.0) -> tuple:
    """``C`` cameras on a small arc looking at the origin: viewmats [C,4,4], Ks [C,3,3]."""
    viewmats, Ks = [], []
    for c in range(C):
        a = 0.3 * (c - (C - 1) / 2)
        R = torch.tensor([[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0], [math.sin(a), 0.0, math.cos(a)]])
        vm = torch.eye(4)
        vm[:3, :3] = R
        vm[:3, 3] = torch.tensor([0.05 * c, -0.02, dist])
        viewmats.append(vm)
        f = 1.1 * max(width, height)
        Ks.append(torch.tensor([[f, 0.0, width / 2 + 0.3], [0.0, f, height / 2 - 0.7], [0, 0, 1]]))
    return torch.stack(viewmats), torch.stack(Ks)


def _scene(N: int, sh_degree: int | None, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    K = (sh_degree + 1) ** 2 if sh_degree is not None else 0
    return {
        "means": (torch.rand(N, 3, generator=g) * 2 - 1) * 0.8,
        "quats": torch.randn(N, 4, generator=g),
        "scales": torch.rand(N, 3, generator=g) * 0.08 + 0.01,
        "opacities": torch.rand(N, generator=g) * 0.9 + 0.05,
        "colors": torch.rand(N, K, 3, generator=g) * 0.6 - 0.2
        if sh_degree is not None
        else torch.rand(N, 3, generator=g),
    }


def _grads_rasterize(backend: str, scene: dict, C: int, W: int, H: int, sh_degree, bg: bool):
    dev = DEV if backend == "cuda" else "cpu"
    params = {k: v.to(dev).clone().requires_grad_(True) for k, v in scene.items()}
    viewmats, Ks = (t.to(dev) for t in _cameras(C, W, H))
    backgrounds = torch.tensor([[0.1, 0.2, 0.3]] * C, device=dev) if bg else None
    rgb, alpha, meta = rg.rasterize(
        params["means"], params["quats"], params["scales"], params["opacities"],
        params["colors"], viewmats, Ks, W, H, sh_degree=sh_degree, backgrounds=backgrounds,
        backend=backend, depth=True,
    )  # fmt: skip
    meta.means2d.retain_grad()
    gen = torch.Generator().manual_seed(7)
    w_rgb = torch.rand(rgb.shape, generator=gen).to(dev)
    w_a = torch.rand(alpha.shape, generator=gen).to(dev)
    w_d = torch.rand(meta.depth.shape, generator=gen).to(dev)
    depth = torch.where(alpha > 0.05, meta.depth, torch.zeros_like(meta.depth))
    loss = (rgb * w_rgb).sum() + (alpha * w_a).sum() + 0.1 * (depth * w_d).sum()
    loss.backward()
    out = {"rgb": rgb, "alpha": alpha, "depth": depth, "radii": meta.radii}
    out.update({f"grad_{k}": v.grad for k, v in params.items()})
    out["grad_means2d"] = meta.means2d.grad
    return out


@pytest.mark.parametrize(
    ("N", "C", "W", "H", "sh_degree", "bg"),
    [
        (1, 1, 37, 53, None, False),
        (50, 1, 64, 64, 0, True),
        (500, 3, 37, 53, 1, False),
        (500, 2, 64, 48, 2, True),
        (2000, 3, 96, 80, 3, False),
    ],
)
def test_rasterize_matches_cpu(N, C, W, H, sh_degree, bg):
    scene = _scene(N, sh_degree, seed=N + C)
    cu = _grads_rasterize("cuda", scene, C, W, H, sh_degree, bg)
    cp = _grads_rasterize("cpu", scene, C, W, H, sh_degree, bg)
    # ceil(extent sigma) or a culling bound may round differently for a rare Gaussian
    rd = (cu["radii"].cpu() - cp["radii"]).abs()
    assert (rd > 0).float().mean().item() <= 0.005, f"radii differ for {(rd > 0).sum()} entries"
    for k in cp:
        if k != "radii":
            _close(cu[k], cp[k], k)


def test_rasterize_edge_cases_match_cpu():
    """Behind the camera, far off-screen, huge and tiny scales: finite and equal to the CPU."""
    scene = _scene(64, None, seed=3)
    scene["means"][:8, 2] = -10.0  # behind the camera (camera at z=-4 looking along +z)
    scene["means"][8:16, 0] = 50.0  # far off-screen
    scene["scales"][16:24] = 30.0  # huge
    scene["scales"][24:32] = 1e-6  # tiny
    cu = _grads_rasterize("cuda", scene, 2, 48, 40, None, True)
    cp = _grads_rasterize("cpu", scene, 2, 48, 40, None, True)
    for k in cp:
        if k != "radii":
            _close(cu[k], cp[k], k)
    assert (cu["radii"][:, :8] == 0).all(), "Gaussians behind the camera must be culled"


def _mesh(B: int, seed: int, degenerate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = 6
    u, v = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    base = torch.stack([u, v, 0.3 * torch.sin(2 * u) * torch.cos(v)], -1).reshape(-1, 3)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [[a, b, d], [a, d, c]]
    faces_t = torch.tensor(faces, dtype=torch.int64)
    verts = base[None].repeat(B, 1, 1) + 0.05 * torch.randn(B, base.shape[0], 3, generator=g)
    if degenerate:  # collapse the first face to a point
        f0 = faces_t[0]
        verts[:, f0[1]] = verts[:, f0[0]]
        verts[:, f0[2]] = verts[:, f0[0]]
    return verts, faces_t


def _grads_rigged(backend: str, B: int, C: int, N: int, sh_degree, degenerate: bool):
    dev = DEV if backend == "cuda" else "cpu"
    verts, faces = _mesh(B, seed=B + N, degenerate=degenerate)
    scene = _scene(N, sh_degree, seed=N)
    g = torch.Generator().manual_seed(11)
    face_ids = torch.randint(0, faces.shape[0], (N,), generator=g)
    if degenerate:
        face_ids[:4] = 0
    local = {
        "means": scene["means"] * 0.2,
        "quats": scene["quats"],
        "log_scales": torch.log(scene["scales"]) + 1.0,
        "opacities": scene["opacities"],
        "colors": scene["colors"],
    }
    params = {k: v.to(dev).clone().requires_grad_(True) for k, v in local.items()}
    vertices = verts.to(dev).clone().requires_grad_(True)
    vm, Ks = _cameras(C, 40, 36, dist=3.0)
    viewmats = vm[None].repeat(B, 1, 1, 1).to(dev)
    Ks = Ks[None].repeat(B, 1, 1, 1).to(dev)
    rgb, alpha, meta = rg.render_rigged(
        vertices, faces.to(dev), params["means"], params["quats"], params["log_scales"],
        params["opacities"], params["colors"], face_ids.to(dev), viewmats, Ks, 40, 36,
        sh_degree=sh_degree, backend=backend,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(5)
    w = torch.rand(rgb.shape, generator=gen).to(dev)
    wa = torch.rand(alpha.shape, generator=gen).to(dev)
    ((rgb * w).sum() + (alpha * wa).sum()).backward()
    out = {"rgb": rgb, "alpha": alpha, "grad_vertices": vertices.grad}
    out.update({f"grad_{k}": v.grad for k, v in params.items()})
    return out


@pytest.mark.parametrize(
    ("B", "C", "N", "sh_degree", "degenerate"),
    [(1, 1, 30, None, False), (2, 3, 300, 1, False), (2, 1, 300, 3, True)],
)
def test_render_rigged_matches_cpu(B, C, N, sh_degree, degenerate):
    cu = _grads_rigged("cuda", B, C, N, sh_degree, degenerate)
    cp = _grads_rigged("cpu", B, C, N, sh_degree, degenerate)
    for k in cp:
        _close(cu[k], cp[k], k, rtol=3e-3)


@pytest.mark.parametrize(("B", "N", "degenerate"), [(1, 20, False), (3, 200, True)])
def test_frames_and_deform_match_cpu(B, N, degenerate):
    verts, faces = _mesh(B, seed=N, degenerate=degenerate)
    scene = _scene(N, None, seed=N)
    face_ids = torch.randint(0, faces.shape[0], (N,), generator=torch.Generator().manual_seed(2))
    results = {}
    for backend in ("cuda", "cpu"):
        dev = DEV if backend == "cuda" else "cpu"
        v = verts.to(dev).clone().requires_grad_(True)
        m = scene["means"].to(dev).clone().requires_grad_(True)
        q = scene["quats"].to(dev).clone().requires_grad_(True)
        ls = torch.log(scene["scales"]).to(dev).clone().requires_grad_(True)
        # no backend argument in CONTRACTS.md: the device picks the backend
        frames = rg.triangle_frames(v, faces.to(dev))
        d = rg.deform(m, q, ls, face_ids.to(dev), frames)
        gen = torch.Generator().manual_seed(9)
        loss = sum(
            (t * torch.rand(t.shape, generator=gen).to(dev)).sum()
            for t in (d.means, d.quats, d.scales, frames.sqrt_areas, frames.rotations)
        )
        loss.backward()
        results[backend] = {
            "centroids": frames.centroids, "rotations": frames.rotations,
            "sqrt_areas": frames.sqrt_areas, "means": d.means, "quats": d.quats,
            "scales": d.scales, "grad_vertices": v.grad, "grad_means": m.grad,
            "grad_quats": q.grad, "grad_log_scales": ls.grad,
        }  # fmt: skip
    for k, ref in results["cpu"].items():
        _close(results["cuda"][k], ref, k)


@pytest.mark.parametrize(("sh_degree", "rigged"), [(None, False), (2, False), (1, True)])
def test_testing_edge_scenes_match_cpu(sh_degree, rigged):
    """The shared ``rigged_gaussians.testing`` scenes with every edge case, absgrad included."""
    if rigged:
        inputs = testing.random_rig(
            200, B=2, C=2, width=40, height=36, sh_degree=sh_degree, edge_cases=True, backgrounds=True
        )
        # one Gaussian per zero-area face: several would tie in depth below float32 resolution
        F = inputs["faces"].shape[0]
        fid = inputs["face_ids"].clone()
        fid[2:][fid[2:] >= F - 2] = 0
        inputs["face_ids"] = fid
        keys = ["vertices", "means", "quats", "log_scales", "opacities", "colors", "backgrounds"]
        n_cams = 4
    else:
        inputs = testing.random_scene(
            400, C=2, width=48, height=40, sh_degree=sh_degree, edge_cases=True, backgrounds=True
        )
        keys = ["means", "quats", "scales", "opacities", "colors", "backgrounds"]
        n_cams = 2
    fn = rg.render_rigged if rigged else rg.rasterize
    results = {}
    for backend in ("cuda", "cpu"):
        dev = DEV if backend == "cuda" else "cpu"
        p = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in inputs.items()}
        p.update({k: p[k].clone().requires_grad_(True) for k in keys})
        absgrad = torch.zeros(n_cams, p["means"].shape[0], 2, device=dev)
        rgb, alpha, meta = fn(**p, absgrad=absgrad, backend=backend)
        gen = torch.Generator().manual_seed(3)
        w = torch.rand(rgb.shape, generator=gen).to(dev)
        wa = torch.rand(alpha.shape, generator=gen).to(dev)
        ((rgb * w).sum() + (alpha * wa).sum()).backward()
        out = {"rgb": rgb, "alpha": alpha, "absgrad": absgrad}
        out.update({f"grad_{k}": p[k].grad for k in keys})
        results[backend] = out
    for k, ref in results["cpu"].items():
        assert torch.isfinite(results["cuda"][k]).all(), k
        _close(results["cuda"][k], ref, k, rtol=3e-3)
