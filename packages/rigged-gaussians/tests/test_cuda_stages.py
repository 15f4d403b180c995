"""CUDA backend on a real GPU (skipped without one; ``nox -s gpu_tests``): per-stage parity with
the CPU backend over tile sizes and channel counts, the device guard, the one-sync render, the
deferred input checks, the radix sort and the tight-tile image identity.

Written without a GPU in reach: the host emulation (csrc/cuda/host_check) runs the same kernel
code on the CPU, these tests run the real thing when ``nox -s gpu_tests`` has a GPU.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

rg = pytest.importorskip("rigged_gaussians")

from rigged_gaussians import _checks, testing  # noqa: E402
from rigged_gaussians._types import Gaussians  # noqa: E402
from rigged_gaussians.settings import RasterSettings  # noqa: E402

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not rg.cuda_available(), reason=testing.NO_CUDA)]


def _ops(backend: str) -> Any:
    from rigged_gaussians._glue import NativeOps

    return NativeOps(backend)


def _close(a: torch.Tensor, b: torch.Tensor, name: str, rtol: float = 2e-3) -> None:
    """Mean error within ``rtol`` of ``b``'s scale, max within ``5 rtol`` (an isolated pixel may
    flip an alpha-threshold or early-stop decision under float rounding)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    assert a.shape == b.shape, f"{name}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    assert torch.isfinite(a).all(), f"{name}: non-finite values from CUDA"
    scale = max(b.abs().max().item(), 1e-6)
    diff = (a - b).abs()
    assert diff.mean().item() <= rtol * scale, f"{name}: mean abs diff {diff.mean().item():.3e}"
    assert diff.max().item() <= 5 * rtol * scale + 1e-5, f"{name}: max abs diff {diff.max().item():.3e}"


def _projected(n: int, C: int, W: int, H: int, seed: int) -> tuple[dict[str, torch.Tensor], RasterSettings]:
    """A CPU projection of a random scene (the inputs of the later stages)."""
    s = testing.random_scene(n, C=C, width=W, height=H, seed=seed, backgrounds=True)
    s["scales"] = s["scales"] * 2
    st = RasterSettings(W, H)
    g = Gaussians(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"])
    with torch.no_grad():
        p = _ops("cpu").projection(g, s["viewmats"], s["Ks"], st)
    out = {"means2d": p.means2d, "radii": p.radii, "depths": p.depths, "conics": p.conics}
    out.update(colors=p.colors.contiguous(), opacities=s["opacities"].expand(C, n).contiguous())
    out["backgrounds"] = s["backgrounds"]
    return out, st


@pytest.mark.parametrize("tile_size", [8, 16, 24, 32])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_rasterize_to_pixels_stage_matches_cpu(tile_size: int, channels: int) -> None:
    """The same intersections (from the CPU) rasterized on both backends, forward and every
    gradient, with a null or a real background, absgrad and an alpha gradient."""
    p, st = _projected(400, 2, 53, 37, seed=tile_size + channels)
    st = RasterSettings(53, 37, tile_size=tile_size)
    g = torch.Generator().manual_seed(channels)
    colors = torch.rand(2, 400, channels, generator=g)
    isect = _ops("cpu").isect_tiles(p["means2d"], p["radii"], p["depths"], p["conics"], p["opacities"], st)
    results = {}
    for backend in ("cuda", "cpu"):
        dev = "cuda" if backend == "cuda" else "cpu"
        ins = [
            t.to(dev).clone().requires_grad_(True)
            for t in (p["means2d"], p["conics"], colors, p["opacities"])
        ]
        bg = p["backgrounds"][:, :1].expand(2, channels).contiguous().to(dev) if channels % 2 else None
        absgrad = torch.zeros(2, 400, 2, device=dev)
        iso = type(isect)(isect.offsets.to(dev), isect.flatten_ids.to(dev))
        rc, ra = _ops(backend).rasterize_to_pixels(*ins[:4], bg, iso, st, absgrad)
        w = torch.Generator().manual_seed(7)
        loss = (rc * torch.rand(rc.shape, generator=w).to(dev)).sum() + (
            ra * torch.rand(ra.shape, generator=w).to(dev)
        ).sum()
        loss.backward()
        results[backend] = [rc, ra, absgrad, *(t.grad for t in ins)]
    names = ["render_colors", "render_alphas", "absgrad", "v_means2d", "v_conics", "v_colors", "v_opacities"]
    for name, a, b in zip(names, results["cuda"], results["cpu"], strict=True):
        _close(a, b, name)


@pytest.mark.parametrize("tight", [True, False])
def test_isect_tiles_stage_matches_cpu(tight: bool) -> None:
    """Depth-sorted radix pipeline on the GPU == the CPU's counting sort, entry for entry."""
    p, _ = _projected(3000, 3, 96, 80, seed=1)
    st = RasterSettings(96, 80, tight_tiles=tight)
    args = [p[k] for k in ("means2d", "radii", "depths", "conics", "opacities")]
    cpu = _ops("cpu").isect_tiles(*args, st)
    cu = _ops("cuda").isect_tiles(*(t.cuda() for t in args), st)
    assert cpu.n_isects > 0 and cu.n_isects == cpu.n_isects
    assert torch.equal(cu.offsets.cpu(), cpu.offsets)
    assert torch.equal(cu.flatten_ids.cpu(), cpu.flatten_ids)


def test_projection_stage_matches_cpu() -> None:
    s = testing.random_scene(500, C=2, width=64, height=48, sh_degree=2, seed=4)
    st = RasterSettings(64, 48, sh_degree=2)
    out = {}
    for backend in ("cuda", "cpu"):
        dev = "cuda" if backend == "cuda" else "cpu"
        leaves = {
            k: s[k].to(dev).clone().requires_grad_(True) for k in ("means", "quats", "scales", "colors")
        }
        g = Gaussians(
            leaves["means"], leaves["quats"], leaves["scales"], s["opacities"].to(dev), leaves["colors"]
        )
        p = _ops(backend).projection(g, s["viewmats"].to(dev), s["Ks"].to(dev), st)
        w = torch.Generator().manual_seed(3)
        loss = sum(
            (t * torch.rand(t.shape, generator=w).to(dev)).sum()
            for t in (p.means2d, p.depths, p.conics, p.colors)
        )
        loss.backward()
        out[backend] = {"radii": p.radii, "means2d": p.means2d, "conics": p.conics, "colors": p.colors}
        out[backend].update({f"grad_{k}": v.grad for k, v in leaves.items()})
    rd = (out["cuda"]["radii"].cpu() - out["cpu"]["radii"]).abs()
    assert (rd > 0).float().mean().item() <= 0.005
    for k, ref in out["cpu"].items():
        if k != "radii":
            _close(out["cuda"][k], ref, k)


def test_images_are_identical_with_and_without_tight_tiles() -> None:
    """The forward has no atomics: dropping only pairs with alpha < 1/255 everywhere leaves the
    images bit-identical on the GPU too (gradients use atomics: compared with tolerance)."""
    s = testing.random_scene(
        2000, C=2, width=96, height=80, sh_degree=1, seed=5, backgrounds=True, device="cuda"
    )
    out = {}
    for tight in (True, False):
        means = s["means"].clone().requires_grad_(True)
        rgb, alpha, meta = rg.rasterize(**dict(s, means=means), tight_tiles=tight, depth=True)
        (rgb.sum() + alpha.sum()).backward()
        out[tight] = (rgb, alpha, meta.depth, means.grad)
    for name, a, b in zip(("rgb", "alpha", "depth"), out[True][:3], out[False][:3], strict=False):
        assert torch.equal(a, b), f"{name}: differs with tight tiles"
    _close(out[True][3], out[False][3], "grad_means", rtol=1e-4)


def test_render_and_backward_make_no_unintended_sync() -> None:
    """``torch.cuda.set_sync_debug_mode("error")`` raises on every synchronising torch call: a
    render and its backward run under it. The render's one intended wait (the intersection count
    with the deferred input checks) is a pinned asynchronous copy and a CUDA event's synchronize,
    which the mode does not flag; the count of those is checked by wrapping Event.synchronize."""
    rig = testing.random_rig(500, B=2, C=2, width=64, height=48, sh_degree=1, device="cuda", backgrounds=True)
    keys = ("vertices", "means", "quats", "log_scales", "opacities", "colors")
    p = {k: (v.clone().requires_grad_(True) if k in keys else v) for k, v in rig.items()}
    rg.render_rigged(**p)  # warm up (lazy initialisation may synchronise)
    torch.cuda.synchronize()
    waits = []
    original = torch.cuda.Event.synchronize

    def counted(self: torch.cuda.Event) -> None:
        waits.append(1)
        original(self)

    torch.cuda.Event.synchronize = counted  # type: ignore[method-assign]
    try:
        torch.cuda.set_sync_debug_mode("error")
        rgb, alpha, _ = rg.render_rigged(**p)
        n_forward = len(waits)
        (rgb.sum() + alpha.sum()).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
        torch.cuda.Event.synchronize = original  # type: ignore[method-assign]
    assert n_forward == 1 and len(waits) == 1


def test_deferred_input_errors_raise_and_leave_the_gpu_usable() -> None:
    rig = testing.random_rig(200, B=1, C=1, width=32, height=32, device="cuda")
    F = rig["faces"].shape[0]
    bad = dict(rig, face_ids=rig["face_ids"].clone())
    bad["face_ids"][7] = F + 10**6  # never dereferenced: the kernel flags it
    with pytest.raises(ValueError, match=r"face_ids: an index is out of range"):
        rg.render_rigged(**bad)
    bad = dict(rig, means=rig["means"].clone())
    bad["means"][3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"means: non-finite"):
        rg.render_rigged(**bad)
    rgb, alpha, _ = rg.render_rigged(**rig)  # the context is not poisoned
    torch.cuda.synchronize()
    assert torch.isfinite(rgb).all() and float(alpha.max()) > 0


def test_radix_sort_is_a_stable_sort_over_the_bits_in_use() -> None:
    g = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 5000, (100_000,), generator=g, dtype=torch.int32).cuda()
    vals = torch.arange(100_000, dtype=torch.int32, device="cuda")
    k, v = _ops("cuda")._radix_sort(keys, vals, 13, keys.device)
    ref_k, order = torch.sort(keys.long(), stable=True)
    assert torch.equal(k.long(), ref_k) and torch.equal(v.long(), order)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_inputs_on_another_gpu_run_there() -> None:
    """Tensors on cuda:1 while cuda:0 is current: the kernels run on cuda:1 (DeviceGuard) and
    the current device is restored; mixing cuda:0 and cuda:1 is an error naming both."""
    s = testing.random_scene(300, C=2, width=48, height=40, seed=2)
    ref, _, _ = rg.rasterize(**s, backend="cpu")
    torch.cuda.set_device(0)
    on1 = {k: (v.to("cuda:1") if torch.is_tensor(v) else v) for k, v in s.items()}
    rgb, _, _ = rg.rasterize(**on1)
    assert rgb.device == torch.device("cuda:1") and torch.cuda.current_device() == 0
    _close(rgb, ref, "rgb on cuda:1")
    on1["quats"] = on1["quats"].to("cuda:0")
    with pytest.raises(ValueError, match=r"on device cuda:0 but .* is on cuda:1"):
        rg.rasterize(**on1)


def test_device_guard_restores_the_current_device() -> None:
    before = torch.cuda.current_device()
    rec = _ops("cuda").record("SortArgs", torch.device("cuda", before))
    _ops("cuda").call("radix_sort", rec)  # n = 0: nothing to sort, guard only
    assert torch.cuda.current_device() == before
    assert _checks.same_device(a=torch.zeros(1, device="cuda")) == torch.device("cuda", before)


@pytest.mark.parametrize("tile_size", [16, 32])
def test_debug_mode_syncs_and_renders_the_same(monkeypatch: pytest.MonkeyPatch, tile_size: int) -> None:
    """RG_CUDA_DEBUG=1 (every op waits for its kernels, no count/fill mismatch is flagged): the
    forward is bit-identical to the normal render (it has no atomics), gradients flow."""
    scene = testing.random_scene(300, C=2, seed=4)
    s = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in scene.items()}
    ref, _, _ = rg.rasterize(**s, tile_size=tile_size)
    monkeypatch.setenv("RG_CUDA_DEBUG", "1")
    means = s["means"].clone().requires_grad_(True)
    rgb, _, _ = rg.rasterize(**dict(s, means=means), tile_size=tile_size)
    rgb.sum().backward()
    assert torch.equal(rgb.detach(), ref) and torch.isfinite(means.grad).all()


def test_a_nan_opacity_is_culled_on_cuda_as_on_the_cpu() -> None:
    s = testing.random_scene(300, C=2, seed=5)
    s["opacities"][7] = float("nan")
    ref, ref_a, ref_meta = rg.rasterize(**s, backend="cpu", check_finite=False)
    on = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in s.items()}
    rgb, alpha, meta = rg.rasterize(**on, backend="cuda", check_finite=False)
    assert (meta.radii[:, 7] == 0).all() and torch.isfinite(rgb).all()
    _close(rgb, ref, "rgb with a NaN opacity")
    _close(alpha, ref_a, "alpha with a NaN opacity")
