"""CPU backend (``rigged_gaussians._C``, ``backend="cpu"``) vs the pure-PyTorch reference.

Forward values and the gradients of every input (means, quats, scales, opacities, colours/SH,
backgrounds, vertices, local parameters, ``means2d``, ``absgrad``) on random scenes of several
sizes, camera counts, pose batches and SH degrees (None, 0-3), square, non-square and
non-multiple-of-16 images, plus the edge cases of ``rigged_gaussians.testing`` (behind the
camera, before the near plane, far off-screen, beyond the far plane, huge and tiny scales,
zero-area triangles) and the int32 intersection-count guard.

The CPU backend computes in float32; the reference runs on float64 copies of the same inputs.
Tolerance: ``|cpu - ref| <= RTOL * max|ref| + ATOL`` per tensor with ``RTOL = 5e-4``. Measured
errors are ~1e-6 relative for images and ~1e-5..1e-4 for gradients that sum float32 terms over
many pixels (``means2d``, ``quats``); 5e-4 leaves headroom without hiding a wrong term (a
missing or mis-signed term is O(1) relative).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

rg = pytest.importorskip("rigged_gaussians")
_C = pytest.importorskip("rigged_gaussians._C", reason="rigged_gaussians._C is not built")

from functools import partial  # noqa: E402

from rigged_gaussians import reference, testing  # noqa: E402

RTOL = 5e-4
ATOL = 1e-6
SCENE_GRADS = ["means", "quats", "scales", "opacities", "colors", "backgrounds"]
RIG_GRADS = ["vertices", "means", "quats", "log_scales", "opacities", "colors", "backgrounds"]
# the CPU backend and the reference with the expected depth rendered (it is compared too)
cpu_rasterize = partial(rg.rasterize, backend="cpu", depth=True)
cpu_render_rigged = partial(rg.render_rigged, backend="cpu", depth=True)
ref_rasterize = partial(rg.rasterize, backend="torch", depth=True)
ref_render_rigged = partial(rg.render_rigged, backend="torch", depth=True)


def _f64(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in d.items()}


def _meta(meta: Any, name: str) -> torch.Tensor:
    return meta[name]


def _run(fn: Callable[..., Any], inputs: dict[str, Any], grad_keys: list[str], absgrad: bool = False) -> dict:
    """Render, back-propagate a fixed random weighting of rgb, alpha and depth, collect grads."""
    p = {
        k: (v.clone().requires_grad_(True) if k in grad_keys and k in inputs else v)
        for k, v in inputs.items()
    }
    if absgrad:
        C = p["viewmats"].shape[0] * (p["viewmats"].shape[1] if p["viewmats"].dim() == 4 else 1)
        p["absgrad"] = torch.zeros(C, p["means"].shape[0], 2, dtype=p["means"].dtype)
    rgb, alpha, meta = fn(**p)
    means2d = _meta(meta, "means2d")
    means2d.retain_grad()
    depth = _meta(meta, "depth")
    g = torch.Generator().manual_seed(7)
    w_rgb = torch.rand(rgb.shape, generator=g, dtype=torch.float64).to(rgb.dtype)
    w_a = torch.rand(alpha.shape, generator=g, dtype=torch.float64).to(rgb.dtype)
    w_d = torch.rand(depth.shape, generator=g, dtype=torch.float64).to(rgb.dtype)
    # the expected depth divides by alpha: only compare (and differentiate) it where alpha is not tiny
    depth = torch.where(alpha.reshape(depth.shape) > 0.05, depth, torch.zeros_like(depth))
    loss = (rgb * w_rgb).sum() + (alpha * w_a).sum() + 0.1 * (depth * w_d).sum()
    loss.backward()
    out = {"rgb": rgb, "alpha": alpha, "depth": depth, "means2d": means2d, "grad_means2d": means2d.grad}
    out["radii"] = _meta(meta, "radii")
    out.update({f"grad_{k}": p[k].grad for k in grad_keys if k in p})
    if absgrad:
        out["absgrad"] = p["absgrad"]
    return out


def _assert_close(cpu: dict, ref: dict) -> None:
    assert cpu.keys() == ref.keys()
    for k in ref:
        a, b = cpu[k], ref[k]
        assert b is not None, f"{k}: the reference produced no gradient"
        assert a is not None, f"{k}: the CPU backend produced no gradient"
        assert a.shape == b.shape, f"{k}: shape {tuple(a.shape)} != reference {tuple(b.shape)}"
        if k == "radii":
            # equal, except that a radius of ~1e6 px (the huge edge-case Gaussian) may round to
            # the next pixel between float32 and float64 (relative 1e-6)
            bad = (a.long() - b.long()).abs() > (b.long().abs() // 100_000)
            assert not bad.any(), f"radii differ at {bad.nonzero()[:5].tolist()}"
            continue
        a, b = a.double(), b.double()
        assert torch.isfinite(a).all(), f"{k}: non-finite values from the CPU backend"
        scale = b.abs().max().item() if b.numel() else 0.0
        err = (a - b).abs().max().item() if b.numel() else 0.0
        assert err <= RTOL * scale + ATOL, f"{k}: max abs diff {err:.3e} vs reference scale {scale:.3e}"


@pytest.mark.parametrize(
    ("n", "C", "W", "H", "sh_degree", "bg", "edge", "tile_size"),
    [
        (1, 1, 37, 53, None, False, False, 16),
        (60, 1, 32, 32, 0, True, False, 16),
        (300, 2, 48, 40, 1, True, True, 16),
        (300, 3, 64, 48, 2, False, False, 16),
        (800, 2, 64, 64, 3, True, True, 16),
        (200, 2, 40, 24, None, True, True, 8),
    ],
)
def test_rasterize_matches_reference(n, C, W, H, sh_degree, bg, edge, tile_size):
    scene = testing.random_scene(
        n, C=C, width=W, height=H, sh_degree=sh_degree, seed=n + C, backgrounds=bg, edge_cases=edge
    )
    scene["tile_size"] = tile_size
    cpu = _run(cpu_rasterize, scene, SCENE_GRADS, absgrad=True)
    ref = _run(ref_rasterize, _f64(scene), SCENE_GRADS, absgrad=True)
    _assert_close(cpu, ref)
    if edge:  # behind the camera, before near, far off-screen, beyond far: culled for camera 0
        assert (cpu["radii"][0, [0, 1, 3, 4, 7]] == 0).all()


def test_rasterize_per_camera_inputs_match_reference():
    """``[C,N,·]`` means/quats/scales/opacities/colours and per-camera SH ``[C,N,K,3]``."""
    C, n = 2, 150
    base = testing.random_scene(n, C=C, width=48, height=48, sh_degree=1, seed=3)
    g = torch.Generator().manual_seed(4)
    scene = dict(base)
    for k in ("means", "quats", "scales", "opacities", "colors"):
        v = base[k][None].repeat(C, *([1] * base[k].dim()))
        scene[k] = v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype)
    cpu = _run(cpu_rasterize, scene, SCENE_GRADS)
    ref = _run(ref_rasterize, _f64(scene), SCENE_GRADS)
    _assert_close(cpu, ref)


@pytest.mark.parametrize(
    ("n", "B", "C", "sh_degree", "bg", "edge"),
    [
        (30, 1, 1, None, False, False),
        (200, 2, 2, 1, True, True),
        (150, 3, 1, 3, False, True),
        (120, 1, 3, 0, True, False),
    ],
)
def test_render_rigged_matches_reference(n, B, C, sh_degree, bg, edge):
    rig = testing.random_rig(
        n, B=B, C=C, width=40, height=36, sh_degree=sh_degree, seed=n + B, backgrounds=bg, edge_cases=edge
    )
    if edge:
        # Gaussians bound to a zero-area triangle collapse onto its centroid (sqrt_area = 1e-6):
        # several of them tie in depth below float32 resolution, so any blending order among
        # them is right. Keep one Gaussian per degenerate face so the comparison is well posed.
        F = rig["faces"].shape[0]
        fid = rig["face_ids"].clone()
        fid[2:][fid[2:] >= F - 2] = 0
        rig["face_ids"] = fid
    cpu = _run(cpu_render_rigged, rig, RIG_GRADS, absgrad=True)
    ref = _run(ref_render_rigged, _f64(rig), RIG_GRADS, absgrad=True)
    _assert_close(cpu, ref)


@pytest.mark.parametrize(("B", "edge"), [(1, False), (3, True)])
def test_frames_and_deform_match_reference(B, edge):
    rig = testing.random_rig(80, B=B, seed=B, edge_cases=edge)
    out = {}
    for name, frames_fn, deform_fn, conv in (
        ("cpu", partial(rg.triangle_frames, backend="cpu"), partial(rg.deform, backend="cpu"), lambda t: t),
        ("ref", reference.triangle_frames, reference.deform, lambda t: t.double()),
    ):
        v = conv(rig["vertices"]).clone().requires_grad_(True)
        loc = {k: conv(rig[k]).clone().requires_grad_(True) for k in ("means", "quats", "log_scales")}
        cent, rot, sa = frames_fn(v, rig["faces"])
        if name == "cpu":
            m, q, s = deform_fn(
                loc["means"], loc["quats"], loc["log_scales"], rig["face_ids"], (cent, rot, sa)
            )
        else:
            m, q, s = deform_fn(
                loc["means"],
                loc["quats"],
                loc["log_scales"],
                rig["face_ids"],
                reference.triangle_frames(v, rig["faces"]),
            )
        g = torch.Generator().manual_seed(9)
        ws = [
            torch.rand(t.shape, generator=g, dtype=torch.float64).to(t.dtype)
            for t in (cent, rot, sa, m, q, s)
        ]
        loss = sum((t * w).sum() for t, w in zip((cent, rot, sa, m, q, s), ws))
        loss.backward()
        out[name] = {
            "centroids": cent,
            "rotations": rot,
            "sqrt_areas": sa,
            "means": m,
            "quats": q,
            "scales": s,
        }
        out[name].update(grad_vertices=v.grad, **{f"grad_{k}": t.grad for k, t in loc.items()})
    _assert_close(out["cpu"], out["ref"])
    assert torch.isfinite(out["cpu"]["grad_vertices"]).all()


def test_everything_culled_gives_background_and_zero_grads():
    scene = testing.random_scene(20, C=2, width=33, height=17, backgrounds=True, seed=5)
    scene["means"] = scene["means"].clone()
    scene["means"][:, 2] = -10.0  # all behind the cameras
    out = _run(cpu_rasterize, scene, SCENE_GRADS)
    assert (out["radii"] == 0).all()
    assert (out["alpha"] == 0).all()
    torch.testing.assert_close(out["rgb"], scene["backgrounds"][:, None, None, :].expand_as(out["rgb"]))
    for k in ("means", "quats", "scales", "opacities", "colors"):
        assert (out[f"grad_{k}"] == 0).all(), k


def test_zero_gaussians():
    scene = testing.random_scene(0, C=2, width=20, height=20, backgrounds=True)
    rgb, alpha, meta = cpu_rasterize(**scene)
    assert rgb.shape == (2, 20, 20, 3) and (alpha == 0).all()
    torch.testing.assert_close(rgb, scene["backgrounds"][:, None, None, :].expand_as(rgb))
    assert meta["radii"].shape == (2, 0, 2)


def test_forward_is_deterministic_across_thread_counts():
    """The forward writes every pixel from one task: identical for 1 and 2 threads. The CPU
    backend follows torch's intra-op thread count (unless RG_NUM_THREADS is set)."""
    import os

    scene = testing.random_scene(500, C=2, width=64, height=48, sh_degree=2, seed=11)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = cpu_rasterize(**scene)
        if "RG_NUM_THREADS" not in os.environ:
            assert _C.get_num_threads() == 1
        torch.set_num_threads(2)
        b = cpu_rasterize(**scene)
        if "RG_NUM_THREADS" not in os.environ:
            assert _C.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[2]["radii"], b[2]["radii"])


def test_intersection_count_overflow_raises():
    """2^31 tile intersections (32768 image-covering Gaussians x 65536 tiles) raise, never wrap."""
    n, size = 32768, 4096
    vm, Ks = testing.cameras(1, size, size)
    means = torch.zeros(n, 3)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)
    scales = torch.full((n, 3), 10.0)
    with pytest.raises(OverflowError, match="int32"):
        cpu_rasterize(means, quats, scales, torch.full((n,), 0.5), torch.rand(n, 3), vm, Ks, size, size)


def test_native_rasterizer_rejects_int32_overflow():
    a = _C.RasterArgs()
    a.C, a.N, a.CH, a.width, a.height, a.tile_w, a.tile_h, a.n_isects = 1, 1, 4, 16, 16, 1, 1, 2**31
    with pytest.raises(OverflowError, match="int32"):
        _C.rasterize_to_pixels_fwd_cpu(a)


def test_too_many_channels_is_a_clear_error():
    scene = testing.random_scene(4, C=1, width=16, height=16)
    scene["colors"] = torch.rand(4, 5)
    with pytest.raises(ValueError, match="colors"):
        cpu_rasterize(**scene)


def test_float64_inputs_render_rigged_cpu_matches_reference():
    """float64 inputs through the public API (converted to float32 for the CPU backend)."""
    rig = testing.random_rig(150, B=2, C=2, width=36, height=30, sh_degree=2, seed=8, dtype=torch.float64)
    cpu = _run(cpu_render_rigged, rig, RIG_GRADS)
    ref = _run(ref_render_rigged, rig, RIG_GRADS)
    _assert_close(cpu, ref)


def _simd_check_outputs() -> dict[str, torch.Tensor]:
    """Images and gradients of one edge-case scene (run in-process and with RG_RASTER_SIMD=0)."""
    s = testing.random_scene(
        600, C=2, width=56, height=40, sh_degree=1, seed=5, backgrounds=True, edge_cases=True
    )
    keys = ("means", "opacities", "colors")
    p = {k: (v.clone().requires_grad_(True) if k in keys else v) for k, v in s.items()}
    rgb, alpha, _ = cpu_rasterize(**p)
    g = torch.Generator().manual_seed(1)
    loss = (rgb * torch.rand(rgb.shape, generator=g)).sum() + (
        alpha * torch.rand(alpha.shape, generator=g)
    ).sum()
    loss.backward()
    return {"rgb": rgb.detach(), "alpha": alpha.detach(), **{f"grad_{k}": p[k].grad for k in keys}}


_SCALAR_SCRIPT = """
import sys, torch
sys.path.insert(0, sys.argv[2])
import rigged_gaussians._C as C
from test_cpu_parity import _simd_check_outputs
assert not C.rasterize_uses_simd()
torch.save(_simd_check_outputs(), sys.argv[1])
"""


@pytest.mark.skipif(
    not _C.rasterize_uses_simd(), reason="this CPU runs only the scalar kernels (no AVX2/FMA)"
)
def test_simd_and_scalar_rasterizers_agree(tmp_path):
    """The AVX2 kernels (used here) and the portable scalar ones (RG_RASTER_SIMD=0) agree."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "scalar.pt"
    env = dict(os.environ, RG_RASTER_SIMD="0")
    cmd = [sys.executable, "-c", _SCALAR_SCRIPT, str(out), str(Path(__file__).parent)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    scalar = torch.load(out)
    for k, v in _simd_check_outputs().items():
        ref = scalar[k]
        err = (v - ref).abs().max().item()
        assert err <= 1e-4 * ref.abs().max().item() + 1e-6, f"{k}: SIMD vs scalar max diff {err:.3e}"


@pytest.mark.parametrize("sh_degree", [None, 3])
def test_public_api_per_camera_sh_and_backgrounds_match_reference(sh_degree):
    """``rg.rasterize(backend="cpu")`` with every Gaussian input per camera (``[C,N,·]``, SH
    ``[C,N,16,3]``) and backgrounds ``[C,3]``: images and all gradients equal the reference's."""
    C, n = 3, 120
    base = testing.random_scene(
        n, C=C, width=40, height=36, sh_degree=sh_degree, seed=11, backgrounds=True, edge_cases=True
    )
    g = torch.Generator().manual_seed(12)
    scene = dict(base)
    for k in ("means", "quats", "scales", "opacities", "colors"):
        v = base[k][None].repeat(C, *([1] * base[k].dim()))
        scene[k] = v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype)
    scene["opacities"] = scene["opacities"].clamp(0.01, 0.99)
    scene["scales"] = scene["scales"].abs()
    if sh_degree is not None:
        assert scene["colors"].shape == (C, n, 16, 3)

    cpu = _run(cpu_rasterize, scene, SCENE_GRADS)
    ref = _run(ref_rasterize, _f64(scene), SCENE_GRADS)
    _assert_close(cpu, ref)
    assert cpu["grad_backgrounds"].abs().sum() > 0 and cpu["grad_colors"].shape == scene["colors"].shape


def test_unchecked_nan_vertex_masks_its_triangles_gradients():
    """``check_finite=False`` with a NaN vertex: its triangles' Gaussians are culled and the
    triangles pass no gradient, so every vertex gradient is finite and equals the render without
    those Gaussians (a NaN Jacobian times a zero gradient must not poison the shared corners)."""
    rig = testing.random_rig(100, B=1, C=1, width=32, height=32, seed=2)
    bad_faces = (rig["faces"] == 0).any(1).nonzero().flatten()
    on_bad = torch.isin(rig["face_ids"], bad_faces)
    assert 0 < int(on_bad.sum()) < len(on_bad)

    def grads(r: dict) -> tuple[torch.Tensor, torch.Tensor]:
        p = dict(r, vertices=r["vertices"].clone().requires_grad_(True))
        rgb, _, _ = rg.render_rigged(**p, backend="cpu", check_finite=False)
        w = torch.rand(rgb.shape, generator=torch.Generator().manual_seed(0))
        (rgb * w).sum().backward()
        return rgb.detach(), p["vertices"].grad

    nan_rig = dict(rig, vertices=rig["vertices"].clone())
    nan_rig["vertices"][0, 0, 0] = float("nan")
    rgb, g = grads(nan_rig)
    keep = ~on_bad
    pruned = dict(rig)
    for k in ("means", "quats", "log_scales", "opacities", "colors", "face_ids"):
        pruned[k] = rig[k][keep]
    rgb_ref, g_ref = grads(pruned)
    assert torch.isfinite(g).all() and float(g.abs().sum()) > 0
    torch.testing.assert_close(rgb, rgb_ref)
    torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-4)
