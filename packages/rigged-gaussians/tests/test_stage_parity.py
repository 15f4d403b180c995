"""Per-stage parity of the C++ CPU backend (``_glue.NativeOps("cpu")``) with the reference.

The two have the same render stages with the same contracts (``projection``, ``isect_tiles``,
``rasterize_to_pixels``; ``triangle_frames`` / ``deform`` in ``test_cpu_parity.py``), so each is
fed the same inputs and compared on its own, forward and backward, as gsplat's tests do:

- ``projection`` (world and rigged, shared and per-camera inputs, SH 0-3): radii, means2d, depths,
  conics, colours and the gradients of every input; the reference in float64.
- ``isect_tiles`` (tile sizes 8/16/24, tight and box): the same float32 inputs give the same
  intersections entry for entry (offsets and flatten ids, the depth order included).
- ``rasterize_to_pixels`` (1..4 channels, with and without a background, ``absgrad``): images and
  the gradients of means2d, conics, colours, opacities, backgrounds and absgrad on identical
  intersections; the reference in float64.
"""

from __future__ import annotations

import pytest
import torch

rg = pytest.importorskip("rigged_gaussians")
pytest.importorskip("rigged_gaussians._C", reason="rigged_gaussians._C is not built")

from rigged_gaussians import reference, testing  # noqa: E402
from rigged_gaussians._glue import NativeOps  # noqa: E402
from rigged_gaussians._types import Gaussians, Intersections, TriangleFrames  # noqa: E402
from rigged_gaussians.settings import RasterSettings  # noqa: E402

CPU = NativeOps("cpu")
RTOL = 5e-4


def _close(a: torch.Tensor, b: torch.Tensor, name: str, rtol: float = RTOL) -> None:
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape, f"{name}: {tuple(a.shape)} vs {tuple(b.shape)}"
    scale = b.abs().max().item() if b.numel() else 0.0
    err = (a - b).abs().max().item() if b.numel() else 0.0
    assert err <= rtol * scale + 1e-6, f"{name}: max abs diff {err:.3e} vs scale {scale:.3e}"


def _weights(t: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.rand(t.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(t.dtype)


@pytest.mark.parametrize(
    ("rigged", "per_camera", "sh_degree"),
    [(False, False, None), (False, True, 2), (True, False, 3), (True, False, 0)],
)
def test_projection_stage(rigged: bool, per_camera: bool, sh_degree: int | None) -> None:
    st = RasterSettings(48, 40, sh_degree=sh_degree)
    if rigged:
        rig = testing.random_rig(150, B=2, C=2, width=48, height=40, sh_degree=sh_degree, seed=5)
        names = ["means", "quats", "log_scales", "colors", "centroids", "rotations", "sqrt_areas"]
        fr = reference.triangle_frames(rig["vertices"], rig["faces"])
        base = {
            "means": rig["means"],
            "quats": rig["quats"],
            "log_scales": rig["log_scales"],
            "colors": rig["colors"],
        }
        base.update(centroids=fr.centroids, rotations=fr.rotations, sqrt_areas=fr.sqrt_areas)
        opac, face_ids = rig["opacities"], rig["face_ids"]
        viewmats, Ks = rig["viewmats"].reshape(4, 4, 4), rig["Ks"].reshape(4, 3, 3)
    else:
        s = testing.random_scene(200, C=2, width=48, height=40, sh_degree=sh_degree, seed=6, edge_cases=True)
        names = ["means", "quats", "scales", "colors"]
        base = {k: s[k] for k in names}
        if per_camera:
            g = torch.Generator().manual_seed(2)
            base = {
                k: v[None].repeat(2, *[1] * v.dim()) + 0.01 * torch.randn((2, *v.shape), generator=g)
                for k, v in base.items()
            }
            base["scales"] = base["scales"].abs()
        opac, face_ids, viewmats, Ks = s["opacities"], None, s["viewmats"], s["Ks"]
    out = {}
    for name, ops, dtype in (("cpu", CPU, torch.float32), ("ref", reference, torch.float64)):
        leaves = {k: v.to(dtype).clone().requires_grad_(True) for k, v in base.items()}
        frames = (
            TriangleFrames(leaves["centroids"], leaves["rotations"], leaves["sqrt_areas"]) if rigged else None
        )
        scales = leaves["log_scales"] if rigged else leaves["scales"]
        g = Gaussians(
            leaves["means"], leaves["quats"], scales, opac.to(dtype), leaves["colors"], frames, face_ids
        )
        p = ops.projection(g, viewmats.to(dtype), Ks.to(dtype), st)
        vis = (p.radii > 0).all(-1)
        # means2d/conics/colours of culled Gaussians are 0 on both sides; their depths differ
        loss = (
            sum(
                (torch.where(vis[..., None], t, 0) * _weights(t, i)).sum()
                for i, t in enumerate((p.means2d, p.conics, p.colors))
            )
            + (torch.where(vis, p.depths, 0) * _weights(p.depths, 9)).sum()
        )
        loss.backward()
        out[name] = {
            "radii": p.radii,
            "means2d": p.means2d,
            "conics": p.conics,
            "colors": p.colors,
            "depths": torch.where(vis, p.depths, 0),
        }
        out[name].update({f"grad_{k}": v.grad for k, v in leaves.items()})
    big = out["ref"]["radii"] > 100_000  # the huge edge-case Gaussian may round to the next pixel
    assert torch.equal(out["cpu"]["radii"][~big], out["ref"]["radii"][~big])
    assert int((out["ref"]["radii"] > 0).all(-1).sum()) > 100
    for k, ref in out["ref"].items():
        if k != "radii":
            _close(out["cpu"][k], ref, k)


@pytest.mark.parametrize("tight", [True, False])
@pytest.mark.parametrize("tile_size", [8, 16, 24])
def test_isect_tiles_stage_is_exact(tight: bool, tile_size: int) -> None:
    s = testing.random_scene(700, C=3, width=70, height=45, seed=tile_size, edge_cases=True)
    s["scales"] = s["scales"] * 1.5
    st = RasterSettings(70, 45, tile_size=tile_size, tight_tiles=tight)
    g = Gaussians(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"])
    with torch.no_grad():
        p = CPU.projection(g, s["viewmats"], s["Ks"], st)
    args = (p.means2d, p.radii, p.depths, p.conics, s["opacities"].expand(3, 700).contiguous())
    a, b = CPU.isect_tiles(*args, st), reference.isect_tiles(*args, st)
    assert a.n_isects == b.n_isects > 1000
    assert a.offsets.dtype == b.offsets.dtype == torch.int32 and a.offsets.shape == (3, st.tile_h, st.tile_w)
    assert torch.equal(a.offsets, b.offsets)
    assert a.flatten_ids.dtype == b.flatten_ids.dtype == torch.int32
    assert torch.equal(a.flatten_ids, b.flatten_ids)


def test_isect_tiles_stage_any_thread_count() -> None:
    """The CPU sort splits its scatter over the threads by tile range: 1, 2 and 3 threads give
    the reference's lists."""
    s = testing.random_scene(6000, C=1, width=160, height=128, seed=1)
    s["scales"] = s["scales"] * 3
    st = RasterSettings(160, 128)
    g = Gaussians(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"])
    with torch.no_grad():
        p = CPU.projection(g, s["viewmats"], s["Ks"], st)
    args = (p.means2d, p.radii, p.depths, p.conics, s["opacities"][None].contiguous())
    ref = reference.isect_tiles(*args, st)
    assert ref.n_isects > 60_000  # enough to split the scatter
    before = torch.get_num_threads()
    try:
        for k in (1, 2, 3):
            torch.set_num_threads(k)
            got = CPU.isect_tiles(*args, st)
            assert torch.equal(got.offsets, ref.offsets) and torch.equal(got.flatten_ids, ref.flatten_ids), k
    finally:
        torch.set_num_threads(before)


def test_isect_tiles_stage_with_nothing_visible() -> None:
    st = RasterSettings(40, 30)
    z = torch.zeros(2, 5)
    args = (torch.zeros(2, 5, 2), torch.zeros(2, 5, 2, dtype=torch.int32), z, torch.zeros(2, 5, 3), z)
    for ops in (CPU, reference):
        isect = ops.isect_tiles(*args, st)
        assert isect.n_isects == 0 and not isect.offsets.any()


@pytest.mark.parametrize(("channels", "background"), [(1, True), (2, False), (3, True), (4, False)])
def test_rasterize_to_pixels_stage(channels: int, background: bool) -> None:
    s = testing.random_scene(500, C=2, width=53, height=37, seed=channels)
    s["scales"] = s["scales"] * 2
    st = RasterSettings(53, 37)
    g = Gaussians(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"])
    with torch.no_grad():
        p = CPU.projection(g, s["viewmats"], s["Ks"], st)
    opac = s["opacities"].expand(2, 500).contiguous()
    isect = CPU.isect_tiles(p.means2d, p.radii, p.depths, p.conics, opac, st)
    colors = torch.rand(2, 500, channels, generator=torch.Generator().manual_seed(3))
    bg = torch.rand(2, channels, generator=torch.Generator().manual_seed(4)) if background else None
    out = {}
    for name, ops, dtype in (("cpu", CPU, torch.float32), ("ref", reference, torch.float64)):
        ins = [t.to(dtype).clone().requires_grad_(True) for t in (p.means2d, p.conics, colors, opac)]
        b = bg.to(dtype).clone().requires_grad_(True) if bg is not None else None
        absgrad = torch.zeros(2, 500, 2, dtype=dtype)
        rc, ra = ops.rasterize_to_pixels(
            *ins, b, Intersections(isect.offsets, isect.flatten_ids), st, absgrad
        )
        ((rc * _weights(rc, 1)).sum() + (ra * _weights(ra, 2)).sum()).backward()
        out[name] = {"render_colors": rc, "render_alphas": ra, "absgrad": absgrad}
        out[name].update(
            {
                f"grad_{k}": t.grad
                for k, t in zip(("means2d", "conics", "colors", "opacities"), ins, strict=True)
            }
        )
        if b is not None:
            out[name]["grad_backgrounds"] = b.grad
    assert float(out["ref"]["render_alphas"].detach().max()) > 0.99
    for k, ref in out["ref"].items():
        _close(out["cpu"][k], ref, k)
