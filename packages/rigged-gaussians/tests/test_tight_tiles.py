"""Tight tiles (opacity-aware radii + the exact ellipse/tile test) change nothing but the work.

A Gaussian is dropped from a tile only where it has ``alpha < 1/255`` at every pixel of the tile,
which the rasterizer skips anyway. So the images (rgb, alpha, expected depth) and every gradient
(means, quats, scales, opacities, colours/SH, backgrounds, vertices and local parameters,
``means2d``, ``absgrad``) are compared with ``torch.equal``, bit for bit, with ``tight_tiles``
on and off, on random scenes of several sizes, tile sizes and SH degrees, for the C++ CPU
backend (float32) and the PyTorch reference (float64), and the tight lists are checked to be
strictly shorter.
"""

from __future__ import annotations

from typing import Any

import pytest
import rigged_gaussians as rg
import torch
from rigged_gaussians import _backend, reference, testing
from rigged_gaussians._types import Gaussians

HAS_EXT = _backend._extension() is not None
BACKENDS = ["torch", pytest.param("cpu", marks=pytest.mark.skipif(not HAS_EXT, reason="_C not built"))]
WORLD = ["means", "quats", "scales", "opacities", "colors", "backgrounds"]
RIGGED = ["vertices", "means", "quats", "log_scales", "opacities", "colors", "backgrounds"]


def _render(fn: Any, inputs: dict[str, Any], keys: list[str], tight: bool, backend: str) -> dict:
    dtype = torch.float64 if backend == "torch" else torch.float32
    p = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in inputs.items()}
    p.update({k: p[k].clone().requires_grad_(True) for k in keys})
    n_cams = p["viewmats"].shape[0] * (p["viewmats"].shape[1] if p["viewmats"].dim() == 4 else 1)
    absgrad = torch.zeros(n_cams, p["means"].shape[0], 2, dtype=dtype)
    rgb, alpha, meta = fn(**p, backend=backend, tight_tiles=tight, depth=True, absgrad=absgrad)
    meta.means2d.retain_grad()
    g = torch.Generator().manual_seed(1)
    depth = torch.where(alpha.reshape(meta.depth.shape) > 0.05, meta.depth, 0.0)
    loss = sum(
        (t * torch.rand(t.shape, generator=g, dtype=torch.float64).to(dtype)).sum()
        for t in (rgb, alpha, depth)
    )
    loss.backward()
    out = {
        "rgb": rgb,
        "alpha": alpha,
        "depth": meta.depth,
        "grad_means2d": meta.means2d.grad,
        "absgrad": absgrad,
    }
    out.update({f"grad_{k}": p[k].grad for k in keys})
    return out


def _assert_bit_identical(a: dict, b: dict) -> None:
    for k in a:
        assert a[k] is not None and torch.isfinite(a[k]).all(), k
        if not torch.equal(a[k], b[k]):
            diff = (a[k] - b[k]).abs().max().item()
            raise AssertionError(f"{k}: differs with tight tiles (max abs diff {diff:.3e})")
    assert a["grad_means"].abs().sum() > 0 and a["rgb"].std() > 0  # not vacuous


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("n", "C", "W", "H", "sh_degree", "tile_size", "edge"),
    [
        (300, 2, 48, 40, None, 16, False),
        (800, 1, 64, 64, 1, 16, False),
        (150, 3, 37, 53, 3, 8, True),
        (400, 2, 70, 45, 2, 24, False),
    ],
)
def test_rasterize_images_and_gradients_bit_identical(backend, n, C, W, H, sh_degree, tile_size, edge):
    s = testing.random_scene(
        n, C=C, width=W, height=H, sh_degree=sh_degree, seed=n + C, backgrounds=True, edge_cases=edge
    )
    s["scales"] = s["scales"] * 2  # overlapping: saturating pixels and early stops
    s["tile_size"] = tile_size
    tight = _render(rg.rasterize, s, WORLD, True, backend)
    loose = _render(rg.rasterize, s, WORLD, False, backend)
    _assert_bit_identical(tight, loose)


@pytest.mark.parametrize("backend", BACKENDS)
def test_render_rigged_images_and_gradients_bit_identical(backend):
    rig = testing.random_rig(300, B=2, C=2, width=48, height=40, sh_degree=1, seed=6, backgrounds=True)
    _assert_bit_identical(
        _render(rg.render_rigged, rig, RIGGED, True, backend),
        _render(rg.render_rigged, rig, RIGGED, False, backend),
    )


def test_tight_lists_are_shorter_subsets() -> None:
    """The tight intersections are strictly fewer, each tile's list an in-order subset."""
    s = testing.random_scene(600, C=2, width=64, height=48, seed=3)
    counts = {}
    for tight in (True, False):
        st = rg.RasterSettings(64, 48, tight_tiles=tight)
        g = Gaussians(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"])
        p = reference.projection(g, s["viewmats"], s["Ks"], st)
        isect = reference.isect_tiles(
            p.means2d, p.radii, p.depths, p.conics, s["opacities"].expand(2, 600), st
        )
        counts[tight] = isect
    t, lo = counts[True], counts[False]
    assert 0 < t.n_isects < 0.9 * lo.n_isects
    ends_t = torch.cat([t.offsets.reshape(-1)[1:].long(), torch.tensor([t.n_isects])])
    ends_l = torch.cat([lo.offsets.reshape(-1)[1:].long(), torch.tensor([lo.n_isects])])
    for a, b, c, d in zip(t.offsets.reshape(-1), ends_t, lo.offsets.reshape(-1), ends_l, strict=True):
        it = iter(lo.flatten_ids[c:d].tolist())
        assert all(x in it for x in t.flatten_ids[a:b].tolist())
