"""The CPU backend's gradients are bit-identical run to run and for any thread count.

Every backward of ``rigged_gaussians._C`` on the CPU sums the contributions to a shared output
(a Gaussian's gradient over the tiles it covers, a face's over its Gaussians and cameras, a
vertex's over its faces) in a fixed order, never with atomic adds: a training run resumed from
a checkpoint then ends bit-identical to an uninterrupted one. These tests render scenes with
heavy overlap (many large Gaussians per tile, many Gaussians per face, several cameras and
poses), back-propagate a fixed random weighting of the outputs several times with 1, 2 and 3
threads, and compare every gradient with ``torch.equal``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

rg = pytest.importorskip("rigged_gaussians")
_C = pytest.importorskip("rigged_gaussians._C", reason="rigged_gaussians._C is not built")

from functools import partial  # noqa: E402

from rigged_gaussians import testing  # noqa: E402

cpu_rasterize = partial(rg.rasterize, backend="cpu")
cpu_render_rigged = partial(rg.render_rigged, backend="cpu")

THREADS = (1, 2, 3)
REPEATS = 2  # runs per thread count


@contextmanager
def _threads(k: int) -> Iterator[None]:
    """Run the CPU backend on ``k`` threads (the glue follows torch's count unless
    ``RG_NUM_THREADS`` is set, so both are set), restoring both afterwards."""
    torch_before, rg_before = torch.get_num_threads(), _C.get_num_threads()
    try:
        torch.set_num_threads(k)
        _C.set_num_threads(k)
        yield
        assert _C.get_num_threads() == k, "the CPU backend did not run on the requested threads"
    finally:
        torch.set_num_threads(torch_before)
        _C.set_num_threads(rg_before)


def _grads(fn: Callable[..., Any], inputs: dict[str, Any], keys: list[str]) -> dict[str, torch.Tensor]:
    """Render, back-propagate a fixed random weighting of rgb and alpha, return the gradients
    (with ``means2d`` and ``absgrad``) and the images."""
    p = {k: (v.clone().requires_grad_(True) if k in keys else v) for k, v in inputs.items()}
    C = p["viewmats"].shape[0] * (p["viewmats"].shape[1] if p["viewmats"].dim() == 4 else 1)
    p["absgrad"] = torch.zeros(C, p["means"].shape[0], 2)
    rgb, alpha, meta = fn(**p)
    means2d = meta["means2d"]
    means2d.retain_grad()
    g = torch.Generator().manual_seed(3)
    loss = (rgb * torch.rand(rgb.shape, generator=g)).sum() + (
        alpha * torch.rand(alpha.shape, generator=g)
    ).sum()
    loss.backward()
    out = {f"grad_{k}": p[k].grad for k in keys}
    out.update(rgb=rgb.detach(), alpha=alpha.detach(), grad_means2d=means2d.grad, absgrad=p["absgrad"])
    for k, v in out.items():
        assert v is not None, f"{k}: no gradient"
        assert torch.isfinite(v).all(), f"{k}: non-finite values"
    return out


def _check_bit_identical(fn: Callable[..., Any], inputs: dict[str, Any], keys: list[str]) -> None:
    base = None
    for k in THREADS:
        for rep in range(REPEATS):
            with _threads(k):
                out = _grads(fn, inputs, keys)
            if base is None:
                base = out
                # a real check: the gradients are not all zero
                for name in ("grad_means", "grad_opacities", "grad_means2d"):
                    assert base[name].abs().sum() > 0, f"{name}: all zero"
                continue
            for name, v in out.items():
                ref = base[name]
                if not torch.equal(v, ref):
                    diff = (v - ref).abs().max().item()
                    raise AssertionError(
                        f"{name}: differs with {k} threads (run {rep}) from 1 thread "
                        f"(max abs diff {diff:.3e}): not deterministic"
                    )


def _overlapping(scene: dict[str, Any], scale: float) -> dict[str, Any]:
    """Large, fairly opaque Gaussians: every tile holds many of them, every Gaussian many tiles."""
    scene = dict(scene)
    scene["opacities"] = 0.2 + 0.5 * scene["opacities"]
    key = "log_scales" if "log_scales" in scene else "scales"
    scene[key] = scene[key] + scale if key == "log_scales" else scene[key] * scale
    return scene


def test_rasterize_gradients_bit_identical_across_threads():
    scene = testing.random_scene(700, C=3, width=64, height=56, sh_degree=2, seed=17, backgrounds=True)
    scene = _overlapping(scene, 3.0)
    keys = ["means", "quats", "scales", "opacities", "colors", "backgrounds"]
    _check_bit_identical(cpu_rasterize, scene, keys)


def test_render_rigged_gradients_bit_identical_across_threads():
    rig = testing.random_rig(600, B=2, C=2, width=48, height=40, sh_degree=1, seed=9, backgrounds=True)
    rig = _overlapping(rig, 1.0)
    keys = ["vertices", "means", "quats", "log_scales", "opacities", "colors", "backgrounds"]
    _check_bit_identical(cpu_render_rigged, rig, keys)


def test_frames_and_deform_gradients_bit_identical_across_threads():
    """The unfused path: triangle frames, then deformation of the local Gaussians."""
    rig = testing.random_rig(5000, B=3, seed=4)
    g = torch.Generator().manual_seed(5)
    base = None
    for k in THREADS:
        for _ in range(REPEATS):
            verts = rig["vertices"].clone().requires_grad_(True)
            local = {n: rig[n].clone().requires_grad_(True) for n in ("means", "quats", "log_scales")}
            with _threads(k):
                frames = rg.triangle_frames(verts, rig["faces"], backend="cpu")
                out = rg.deform(
                    local["means"],
                    local["quats"],
                    local["log_scales"],
                    rig["face_ids"],
                    frames,
                    backend="cpu",
                )
                g.manual_seed(5)
                loss = sum((o * torch.randn(o.shape, generator=g)).sum() for o in out)
                loss.backward()
            grads = {"vertices": verts.grad, **{n: t.grad for n, t in local.items()}}
            if base is None:
                base = grads
                assert base["vertices"].abs().sum() > 0
                continue
            for n, v in grads.items():
                assert torch.equal(v, base[n]), f"{n}: differs with {k} threads: not deterministic"


def test_rasterizer_internal_scratch_matches_glue_scratch(monkeypatch):
    """Called without ``isect_grads`` (e.g. directly), the extension allocates its own scratch
    and gives the same bits as with the torch buffer the glue passes."""
    scene = _overlapping(testing.random_scene(300, C=2, width=48, height=40, seed=23), 2.0)
    keys = ["means", "quats", "scales", "opacities", "colors"]
    with_glue_scratch = _grads(cpu_rasterize, scene, keys)

    original = _C.rasterize_to_pixels_bwd_cpu
    calls = []

    def without_scratch(args: Any, grads: Any) -> None:
        assert grads.isect_grads != 0, "the glue passed no scratch buffer"
        grads.isect_grads = 0
        calls.append(1)
        original(args, grads)

    monkeypatch.setattr(_C, "rasterize_to_pixels_bwd_cpu", without_scratch)
    internal = _grads(cpu_rasterize, scene, keys)
    assert calls, "the patched binding was not called"
    for name, v in with_glue_scratch.items():
        assert torch.equal(internal[name], v), f"{name}: internal scratch differs"
