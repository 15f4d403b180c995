"""rigged_gaussians against gsplat 1.5.3 itself: the oracle for "gsplat's conventions".

The reference (``backend="torch"``) and the C++ CPU backend (``backend="cpu"``) are compared with
gsplat's own pure-PyTorch pipeline (``gsplat/cuda/_torch_impl.py``), run on CPU:

- ``_quat_scale_to_covar_preci`` + ``_fully_fused_projection`` -> radii, means2d, depths, conics;
- ``_spherical_harmonics`` (``_eval_sh_bases_fast``) with the ``clamp_min(colors + 0.5, 0)`` and
  the view directions ``means - inverse(viewmats)[:, :3, 3]`` of ``gsplat.rendering.rasterization``;
- ``_isect_tiles`` + ``_isect_offset_encode`` + ``_rasterize_to_pixels`` -> RGB and alpha images
  with a background.

gsplat's CUDA extension is never built or loaded: every lazy CUDA entry point is replaced by one
that raises (fixture ``no_gsplat_cuda``). gsplat 1.5.3's ``_rasterize_to_pixels`` is not fully
pure PyTorch: it calls ``rasterize_to_indices_in_range`` (a CUDA kernel) and ``accumulate``, which
imports ``nerfacc`` (CUDA scans). Both are supplied here in pure PyTorch:
:func:`_indices_in_range` transliterates ``csrc/RasterizeToIndices3DGS.cu`` statement by statement
(pixel centres ``+0.5``, ``alpha = min(0.999, o exp(-sigma))``, skip ``sigma < 0`` or ``alpha <
1/255``, stop before ``next_T <= 1e-4``), and :data:`_FAKE_NERFACC` provides nerfacc's
``render_weight_from_alpha`` (exclusive transmittance along each pixel's samples) and
``accumulate_along_rays``. gsplat's own code does the rest (tiling, sorting by depth bits, the
per-sample ``sigma``/``alpha`` in ``accumulate``, the batch loop and the background).

Tolerances: float64 reference vs float64 gsplat agree to rounding (``1e-12``; measured <= 4e-15).
float32 runs (reference and CPU backend vs gsplat in float32) are compared at ``1e-5`` absolute on
images (values in 0..1; measured <= 2.2e-6) and ``1e-5`` relative on means2d and depths (measured
<= 9e-7). Radii, visibility and the sorted tile intersections must be equal, entry for entry.

Radius conventions: gsplat's torch projection uses the per-axis ``ceil(3.33 sqrt(cov2d_ii +
eps2d))``; gsplat 1.5.3's CUDA projection, when ``rasterization()`` passes the opacities (it
always does), uses the opacity-aware extent ``min(3.33, sqrt(2 ln(255 o)))`` and culls ``o <
1/255``. Ours follow the CUDA rule by default (``tight_tiles=True``, which also drops the tiles
the ellipse ``alpha >= 1/255`` misses) and the torch rule with ``tight_tiles=False``. Images are
identical either way (every pixel with ``alpha >= 1/255`` lies inside both boxes, and dropped
pairs never blend), so the images are compared with the default, and radii, visibility and
the sorted tile intersections with ``tight_tiles=False`` (entry for entry); the tight
intersections must be a subset of gsplat's, tile by tile, in the same order.
:func:`test_tight_radii_follow_gsplat_cuda_opacity_aware_rule` checks the tight radii.

Smaller differences, outside the compared values: gsplat's torch port culls ``z <= near_plane`` and
``z >= far_plane`` (its CUDA kernel and ours keep the boundaries), clamps ``det`` at ``1e-10`` and
leaves means2d/conics of culled Gaussians unzeroed (ours are 0); only kept Gaussians are compared.
"""

from __future__ import annotations

import math
import sys
import types
from typing import Any

import pytest
import torch
from torch import Tensor

gsplat = pytest.importorskip("gsplat")
rg = pytest.importorskip("rigged_gaussians")

from gsplat.cuda import _torch_impl as gs  # noqa: E402
from gsplat.cuda import _wrapper as gs_wrapper  # noqa: E402
from rigged_gaussians import reference, testing  # noqa: E402
from rigged_gaussians.settings import RasterSettings  # noqa: E402

try:
    import rigged_gaussians._C  # noqa: F401

    HAS_CPU = True
except ImportError:
    HAS_CPU = False

TILE = 16
ALPHA_THRESHOLD = 1.0 / 255.0
ATOL_F64 = 1e-12
ATOL_IMG = 1e-5
RTOL_PROJ = 1e-5

# (n, C, width, height, sh_degree, scale_mul, edge_cases): non-square and non-multiple-of-16 sizes,
# plain colours and SH 0-3, sparse and dense (overlapping, saturating) scenes, edge cases
SCENES = [
    pytest.param(40, 2, 48, 32, None, 1.0, False, id="n40-C2-48x32-rgb"),
    pytest.param(120, 3, 70, 45, 0, 2.0, False, id="n120-C3-70x45-sh0"),
    pytest.param(200, 2, 64, 40, 1, 3.0, False, id="n200-C2-64x40-sh1-dense"),
    pytest.param(150, 3, 37, 53, 2, 1.5, True, id="n150-C3-37x53-sh2-edge"),
    pytest.param(250, 2, 80, 48, 3, 4.0, False, id="n250-C2-80x48-sh3-dense"),
    # more than 256 (one CUDA block) Gaussians per tile: several batches per tile
    pytest.param(700, 2, 40, 24, 1, 3.0, False, id="n700-C2-40x24-sh1-crowded"),
]


# ----------------------------------------------------------------------------- gsplat shims
@pytest.fixture(autouse=True)
def no_gsplat_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any call into gsplat's CUDA extension fail loudly (it would JIT-compile otherwise)."""

    def refuse(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"test reached gsplat's CUDA op {name!r}; only pure PyTorch is allowed")

        return call

    monkeypatch.setattr(gs_wrapper, "_make_lazy_cuda_func", refuse)
    monkeypatch.setattr(gs_wrapper, "_make_lazy_cuda_obj", refuse)
    monkeypatch.setattr(gs_wrapper, "rasterize_to_indices_in_range", _indices_in_range)
    monkeypatch.setitem(sys.modules, "nerfacc", _FAKE_NERFACC)


def _indices_in_range(
    range_start: int,
    range_end: int,
    transmittances: Tensor,
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    image_width: int,
    image_height: int,
    tile_size: int,
    isect_offsets: Tensor,
    flatten_ids: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Pure-PyTorch ``gsplat.cuda._wrapper.rasterize_to_indices_in_range`` (gsplat 1.5.3).

    A transliteration of ``rasterize_to_indices_3dgs_kernel`` (``RasterizeToIndices3DGS.cu``),
    vectorised over the pixels of a tile: for each pixel, the tile's Gaussians in batches
    ``[range_start, range_end)`` of ``tile_size^2``, front to back, starting from the pixel's
    ``transmittances``; ``continue`` when ``sigma < 0`` or ``alpha < 1/255``; ``break`` (pixel
    done, Gaussian not written) when ``next_trans = trans (1 - alpha) <= 1e-4``. Returns
    ``(gaussian_ids % N, pixel_ids, image_ids)`` ordered by (image, pixel) then depth, as the
    kernel's second pass writes them (``chunk_starts`` = per-pixel exclusive cumsum).
    """
    image_dims = means2d.shape[:-2]
    N = means2d.shape[-2]
    I = math.prod(image_dims)
    H, W = image_height, image_width
    tile_h, tile_w = isect_offsets.shape[-2:]
    n_isects = flatten_ids.numel()
    offs = isect_offsets.reshape(-1).long()
    ends = torch.cat([offs[1:], torch.tensor([n_isects])])
    m2 = means2d.reshape(I * N, 2)
    con = conics.reshape(I * N, 3)
    op = opacities.reshape(I * N)
    trans_img = transmittances.reshape(I, H, W)
    block_size = tile_size * tile_size
    iy, ix = torch.meshgrid(torch.arange(tile_size), torch.arange(tile_size), indexing="ij")
    iy, ix = iy.reshape(-1), ix.reshape(-1)
    out_g, out_p = [], []
    for image_id in range(I):
        for tile_id in range(tile_h * tile_w):
            k = image_id * tile_h * tile_w + tile_id
            start, end = int(offs[k]), int(ends[k])
            num_batches = (end - start + block_size - 1) // block_size
            if range_start >= num_batches:
                continue
            lo = start + block_size * range_start
            hi = min(end, start + block_size * min(range_end, num_batches))
            ids = flatten_ids[lo:hi].long()  # [G], front to back
            i = (tile_id // tile_w) * tile_size + iy
            j = (tile_id % tile_w) * tile_size + ix
            inside = (i < H) & (j < W)
            i, j = i[inside], j[inside]  # [P]
            px = j.to(m2.dtype) + 0.5
            py = i.to(m2.dtype) + 0.5
            xy = m2[ids]  # [G,2]
            dx = xy[None, :, 0] - px[:, None]  # [P,G]
            dy = xy[None, :, 1] - py[:, None]
            c = con[ids]
            sigma = 0.5 * (c[:, 0] * dx * dx + c[:, 2] * dy * dy) + c[:, 1] * dx * dy
            alpha = torch.clamp(op[ids] * torch.exp(-sigma), max=0.999)
            skip = (sigma < 0) | (alpha < ALPHA_THRESHOLD)
            # trans after each Gaussian, multiplied in the kernel's order: ((T0 f1) f2) ...
            factor = torch.where(skip, torch.ones_like(alpha), 1 - alpha)
            T0 = trans_img[image_id, i, j][:, None].to(factor.dtype)
            next_trans = torch.cumprod(torch.cat([T0, factor], dim=1), dim=1)[:, 1:]
            done = ~skip & (next_trans <= 1e-4)
            G = ids.numel()
            first_done = torch.where(done.any(1), done.int().argmax(1), torch.full_like(i, G))
            keep = ~skip & (torch.arange(G)[None] < first_done[:, None])
            p_idx, g_idx = keep.nonzero(as_tuple=True)  # row-major: pixel, then depth order
            out_g.append(ids[g_idx] % N)
            out_p.append((i * W + j)[p_idx] + image_id * H * W)
    if not out_g:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, empty
    gauss, pix = torch.cat(out_g), torch.cat(out_p)
    order = torch.argsort(pix, stable=True)
    gauss, pix = gauss[order], pix[order]
    return gauss, pix % (H * W), pix // (H * W)


def _render_weight_from_alpha(
    alphas: Tensor, ray_indices: Tensor, n_rays: int, **_: Any
) -> tuple[Tensor, Tensor]:
    """nerfacc's ``render_weight_from_alpha`` for packed samples (contiguous per ray, in order).

    ``trans_k = prod_{j<k} (1 - alpha_j)`` over the samples of the same ray; ``weights = trans
    alpha``.
    """
    if ray_indices.numel() == 0:
        return alphas.clone(), alphas.clone()
    assert bool((ray_indices[1:] >= ray_indices[:-1]).all()), "nerfacc needs samples sorted by ray"
    _, seg = torch.unique_consecutive(ray_indices, return_inverse=True)
    counts = torch.bincount(seg)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(ray_indices.numel()) - starts[seg]
    table = torch.ones(counts.numel(), int(counts.max()) + 1, dtype=alphas.dtype)
    table[seg, pos + 1] = 1 - alphas
    trans = torch.cumprod(table, dim=1)[seg, pos]  # exclusive
    return trans * alphas, trans


def _accumulate_along_rays(
    weights: Tensor, values: Tensor | None = None, ray_indices: Tensor | None = None, n_rays: int = 0
) -> Tensor:
    """nerfacc's ``accumulate_along_rays``: ``sum_k w_k v_k`` per ray (``w_k`` if no values)."""
    assert ray_indices is not None
    src = weights[:, None] if values is None else weights[:, None] * values
    out = torch.zeros(n_rays, src.shape[-1], dtype=src.dtype)
    return out.index_add_(0, ray_indices, src)


_FAKE_NERFACC = types.ModuleType("nerfacc")
_FAKE_NERFACC.render_weight_from_alpha = _render_weight_from_alpha  # type: ignore[attr-defined]
_FAKE_NERFACC.accumulate_along_rays = _accumulate_along_rays  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- the gsplat oracle
def _gsplat_project(s: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """gsplat's pure-torch projection of a :func:`_scene`: ``radii, means2d, depths, conics``."""
    covars, _ = gs._quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    radii, means2d, depths, conics, _ = gs._fully_fused_projection(
        s["means"], covars, s["viewmats"], s["Ks"], s["width"], s["height"],
        eps2d=0.3, near_plane=0.01, far_plane=1e10,
    )  # fmt: skip
    return radii, means2d, depths, conics


def _gsplat_colors(s: dict[str, Any]) -> Tensor:
    """Per-camera colours ``[C,N,3]`` as ``gsplat.rendering.rasterization`` forms them."""
    C, N = s["viewmats"].shape[0], s["means"].shape[0]
    if s["sh_degree"] is None:
        return s["colors"].expand(C, N, -1)
    campos = torch.inverse(s["viewmats"])[..., :3, 3]  # [C,3]
    dirs = s["means"][None, :, :] - campos[:, None, :]  # [C,N,3]
    shs = torch.broadcast_to(s["colors"][None], (C, N, *s["colors"].shape[1:]))
    return torch.clamp_min(gs._spherical_harmonics(s["sh_degree"], dirs, shs) + 0.5, 0.0)


def _gsplat_render(s: dict[str, Any]) -> dict[str, Tensor]:
    """The full gsplat pure-torch pipeline: projection, colours, isect tiles, rasterize_to_pixels."""
    C, N = s["viewmats"].shape[0], s["means"].shape[0]
    W, H = s["width"], s["height"]
    radii, means2d, depths, conics = _gsplat_project(s)
    colors = _gsplat_colors(s)
    tile_w, tile_h = math.ceil(W / TILE), math.ceil(H / TILE)
    _, isect_ids, flatten_ids = gs._isect_tiles(means2d, radii, depths, TILE, tile_w, tile_h)
    offsets = gs._isect_offset_encode(isect_ids, C, tile_w, tile_h)
    per_tile = torch.diff(torch.cat([offsets.reshape(-1).long(), torch.tensor([flatten_ids.numel()])]))
    # gsplat's batch loop restarts a "done" pixel in its next batch of 100 * 256 Gaussians per
    # tile; stay in one batch so that quirk of the torch port cannot enter the comparison
    assert int(per_tile.max()) <= 100 * TILE * TILE
    rgb, alpha = gs._rasterize_to_pixels(
        means2d, conics, colors, s["opacities"].expand(C, N), W, H, TILE, offsets, flatten_ids,
        backgrounds=s["backgrounds"],
    )  # fmt: skip
    return {
        "rgb": rgb, "alpha": alpha, "radii": radii, "means2d": means2d, "depths": depths,
        "conics": conics, "colors": colors, "n_isects": torch.tensor(flatten_ids.numel()),
        "max_per_tile": per_tile.max(),
        "isect_ids": isect_ids, "flatten_ids": flatten_ids, "offsets": offsets,
    }  # fmt: skip


# ----------------------------------------------------------------------------- scenes
def _scene(
    n: int,
    C: int,
    width: int,
    height: int,
    sh_degree: int | None,
    scale_mul: float,
    edge_cases: bool,
    dtype: torch.dtype,
    seed: int = 0,
) -> dict[str, Any]:
    """A :func:`rigged_gaussians.testing.random_scene` with a background and scaled Gaussians.

    ``scale_mul > 1`` makes overlapping, saturating scenes (pixels reach the ``T <= 1e-4`` stop);
    SH coefficients are widened so that the ``+0.5`` clamp at 0 is exercised.
    """
    s = testing.random_scene(
        n, C=C, width=width, height=height, sh_degree=sh_degree, seed=seed,
        dtype=torch.float64, edge_cases=edge_cases, backgrounds=True,
    )  # fmt: skip
    k = 8 if edge_cases else 0  # keep the edge cases' scales as they are
    s["scales"][k:] *= scale_mul
    s["opacities"] = s["opacities"].clamp(max=0.95) ** (1.0 / scale_mul)  # denser = more opaque
    if sh_degree is not None:
        g = torch.Generator().manual_seed(seed + 1)
        s["colors"] = torch.randn(s["colors"].shape, generator=g, dtype=torch.float64) * 0.7
    return {k: v.to(dtype) if torch.is_tensor(v) else v for k, v in s.items()}


def _ours(s: dict[str, Any], backend: str, **options: Any) -> tuple[Tensor, Tensor, Any]:
    return rg.rasterize(**s, backend=backend, **options)


_CPU_MARK = pytest.mark.skipif(not HAS_CPU, reason="rigged_gaussians._C is not built")


def _backends() -> list[Any]:
    cpu = _CPU_MARK
    return [
        pytest.param("torch", torch.float64, id="torch-f64"),
        pytest.param("torch", torch.float32, id="torch-f32"),
        pytest.param("cpu", torch.float32, marks=cpu, id="cpu-f32"),
    ]


def _assert_close(name: str, ours: Tensor, theirs: Tensor, atol: float, rtol: float = 0.0) -> None:
    ours, theirs = ours.double(), theirs.double()
    assert ours.shape == theirs.shape, f"{name}: shape {tuple(ours.shape)} vs gsplat {tuple(theirs.shape)}"
    err = (ours - theirs).abs()
    bound = atol + rtol * theirs.abs()
    bad = err > bound
    assert not bool(bad.any()), (
        f"{name}: {int(bad.sum())} of {err.numel()} entries differ from gsplat; max |diff| "
        f"{float(err.max()):.3g} at {tuple(int(x) for x in bad.nonzero()[0])} (atol {atol}, rtol {rtol})"
    )


_CACHE: dict[tuple, dict[str, Tensor]] = {}


def _gsplat_cached(key: tuple, s: dict[str, Any]) -> dict[str, Tensor]:
    """gsplat's outputs per scene (its ``_isect_tiles`` is a Python loop; run it once per scene)."""
    if key not in _CACHE:
        _CACHE[key] = _gsplat_render(s)
    return _CACHE[key]


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize(("n", "C", "width", "height", "sh_degree", "scale_mul", "edge"), SCENES)
def test_projection_matches_gsplat(
    n: int, C: int, width: int, height: int, sh_degree: int | None, scale_mul: float, edge: bool
) -> None:
    """Reference ``project`` == gsplat ``_fully_fused_projection``: radii, means2d, depths, conics."""
    s = _scene(n, C, width, height, sh_degree, scale_mul, edge, torch.float64)
    radii_g, m2_g, depths_g, conics_g = _gsplat_project(s)
    R = reference.quat_to_rotmat(reference.quat_normalize(s["quats"]))
    radii, m2, depths, conics = reference.project(
        s["means"].expand(C, n, 3), R.expand(C, n, 3, 3), s["scales"].expand(C, n, 3), None,
        s["viewmats"], s["Ks"], RasterSettings(width, height),
    )  # fmt: skip
    assert radii.dtype == torch.int32 and radii_g.dtype == torch.int32
    assert torch.equal(radii, radii_g), f"radii differ at {(radii != radii_g).nonzero()[:5].tolist()}"
    vis = (radii_g > 0).all(-1)
    assert int(vis.sum()) > n // 2  # the comparison is not vacuous
    if edge:
        assert int((~vis).sum()) >= 4  # behind, before near, off-screen, beyond far: culled by both
    _assert_close("means2d", m2[vis], m2_g[vis], ATOL_F64, 1e-12)
    _assert_close("conics", conics[vis], conics_g[vis], ATOL_F64, 1e-10)
    finite = torch.isfinite(depths_g)
    _assert_close("depths", depths[finite], depths_g[finite], ATOL_F64, 1e-12)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(degree: int) -> None:
    """SH basis == ``_eval_sh_bases_fast``; colours == ``_spherical_harmonics`` + 0.5 clamped at 0."""
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(500, 3, generator=g, dtype=torch.float64) * 3.0  # not unit: both normalise
    K = (degree + 1) ** 2
    coeffs = torch.randn(500, 16, 3, generator=g, dtype=torch.float64)  # more coefficients than used
    unit = dirs / dirs.norm(dim=-1, keepdim=True)
    _assert_close("sh_basis", reference.sh_basis(degree, unit), gs._eval_sh_bases_fast(K, unit), 1e-14)
    ours = reference.spherical_harmonics(degree, dirs, coeffs)
    theirs = torch.clamp_min(gs._spherical_harmonics(degree, dirs, coeffs) + 0.5, 0.0)
    assert int((theirs == 0).sum()) > 50  # the clamp at 0 is exercised
    _assert_close("sh colours", ours, theirs, 1e-12)


@pytest.mark.parametrize(("backend", "dtype"), _backends())
@pytest.mark.parametrize(("n", "C", "width", "height", "sh_degree", "scale_mul", "edge"), SCENES)
def test_render_matches_gsplat(
    backend: str,
    dtype: torch.dtype,
    n: int,
    C: int,
    width: int,
    height: int,
    sh_degree: int | None,
    scale_mul: float,
    edge: bool,
) -> None:
    """Images (RGB with background, alpha) and per-camera meta of ``rasterize`` == gsplat's pipeline.

    gsplat runs in the same dtype as ours. float64 (reference): agreement to rounding (``1e-9``);
    float32 (reference, CPU backend): ``1e-5`` absolute on images, ``1e-5`` relative on means2d
    and depths. Radii and visibility: equal.
    """
    key = (n, C, width, height, sh_degree, scale_mul, edge)
    s = _scene(*key, dtype)
    ref = _gsplat_cached((*key, dtype), s)
    assert int(ref["n_isects"]) > 0
    rgb, alpha, _ = _ours(s, backend)  # tight tiles (the default): the same images
    _, _, meta = _ours(s, backend, tight_tiles=False)  # gsplat torch's radii
    assert rgb.dtype == dtype
    atol = ATOL_F64 if dtype == torch.float64 else ATOL_IMG
    rtol = 1e-12 if dtype == torch.float64 else RTOL_PROJ
    _assert_close("rgb", rgb, ref["rgb"], atol)
    _assert_close("alpha", alpha, ref["alpha"], atol)
    assert torch.equal(meta.radii, ref["radii"]), "radii differ from gsplat's"
    vis = (ref["radii"] > 0).all(-1)
    assert torch.equal(meta.visible, vis)
    _assert_close("means2d", meta.means2d[vis], ref["means2d"][vis], atol, rtol)
    finite = torch.isfinite(ref["depths"])
    _assert_close("depths", meta.depths[finite], ref["depths"][finite], atol, rtol)
    # the scene exercises what it claims: background shows, and dense scenes saturate pixels
    assert float(alpha.min()) < 0.5
    if scale_mul >= 3.0:
        assert float(ref["alpha"].max()) > 0.999
    if n >= 700:
        assert int(ref["max_per_tile"]) > TILE * TILE
    _assert_same_intersections(backend, ref, s)


def _tile_lists(offsets: Tensor, flatten_ids: Tensor) -> list[list[int]]:
    ends = torch.cat([offsets.reshape(-1).long()[1:], torch.tensor([flatten_ids.numel()])])
    return [
        flatten_ids[a:b].tolist() for a, b in zip(offsets.reshape(-1).tolist(), ends.tolist(), strict=True)
    ]


def _assert_same_intersections(backend: str, ref: dict[str, Tensor], s: dict[str, Any]) -> None:
    """Our tile intersections of gsplat's projection: gsplat's ``_isect_tiles`` entry for entry
    (``tight_tiles=False``), and with tight tiles an in-order subset of each tile's list."""
    from rigged_gaussians._glue import NativeOps

    ops = NativeOps("cpu") if backend == "cpu" else reference
    C, N = ref["depths"].shape
    opac = s["opacities"].expand(C, N)
    args = (ref["means2d"].contiguous(), ref["radii"], ref["depths"].contiguous(), ref["conics"], opac)
    loose = ops.isect_tiles(*args, RasterSettings(s["width"], s["height"], tight_tiles=False))
    assert loose.n_isects == int(ref["n_isects"])
    assert torch.equal(loose.offsets, ref["offsets"]), "isect offsets differ from gsplat's"
    assert torch.equal(loose.flatten_ids.long(), ref["flatten_ids"].long()), "depth order differs"
    tight = ops.isect_tiles(*args, RasterSettings(s["width"], s["height"]))
    assert 0 < tight.n_isects < loose.n_isects
    for t_list, g_list in zip(
        _tile_lists(tight.offsets, tight.flatten_ids),
        _tile_lists(ref["offsets"], ref["flatten_ids"]),
        strict=True,
    ):
        it = iter(g_list)
        assert all(g in it for g in t_list), "a tight tile list is not an in-order subset of gsplat's"


@pytest.mark.parametrize("backend", ["torch", pytest.param("cpu", marks=_CPU_MARK)])
def test_render_rigged_matches_gsplat_on_deformed_gaussians(backend: str) -> None:
    """``render_rigged`` == gsplat's pipeline run on the world Gaussians ``reference.deform`` gives.

    Frames and deformation in float64 by the reference; ours renders them fused (the CPU backend in
    float32, ``1e-5`` on images).
    """
    rig = testing.random_rig(120, B=2, C=2, width=56, height=40, sh_degree=2, seed=3, dtype=torch.float64)
    rig["backgrounds"] = torch.rand(2, 2, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rgb, alpha, _ = rg.render_rigged(**rig, backend=backend)
    _, _, meta = rg.render_rigged(**rig, backend=backend, tight_tiles=False)  # gsplat torch's radii
    atol = ATOL_F64 if backend == "torch" else ATOL_IMG
    frames = reference.triangle_frames(rig["vertices"], rig["faces"])
    d = reference.deform(rig["means"], rig["quats"], rig["log_scales"], rig["face_ids"], frames)
    C = rig["viewmats"].shape[1]
    for b in range(rig["vertices"].shape[0]):
        s = {
            "means": d.means[b], "quats": d.quats[b], "scales": d.scales[b],
            "opacities": rig["opacities"], "colors": rig["colors"], "viewmats": rig["viewmats"][b],
            "Ks": rig["Ks"][b], "width": rig["width"], "height": rig["height"],
            "sh_degree": rig["sh_degree"], "backgrounds": rig["backgrounds"][b],
        }  # fmt: skip
        ref = _gsplat_cached(("rig", b), s)  # the same world Gaussians for both backends
        assert int(ref["n_isects"]) > 0
        _assert_close(f"rgb[{b}]", rgb[b], ref["rgb"], atol)
        _assert_close(f"alpha[{b}]", alpha[b], ref["alpha"], atol)
        assert torch.equal(meta.radii[b * C : (b + 1) * C], ref["radii"])


def test_tight_radii_follow_gsplat_cuda_opacity_aware_rule() -> None:
    """Our default radii are gsplat 1.5.3's CUDA ones, pinned down exactly.

    ``ProjectionEWA3DGSFused.cu`` with opacities: ``o < 1/255`` is culled, else ``extend =
    min(3.33, sqrt(2 ln(o * 255)))`` and ``radius = ceil(extend sqrt(cov2d_ii))`` (ours also keep
    at least one pixel, which only an opacity of exactly 1/255 can reach). With
    ``tight_tiles=False`` they are gsplat torch's ``ceil(3.33 sqrt(cov2d_ii))``, never smaller.
    The images agree: the Gaussians culled for ``o < 1/255`` never blend.
    """
    s = _scene(150, 2, 64, 48, None, 2.0, False, torch.float64)
    s["opacities"][:10] = 0.003  # below 1/255: culled by gsplat's CUDA projection and by us
    _, _, meta = rg.rasterize(**s, backend="torch")
    _, _, loose = rg.rasterize(**s, backend="torch", tight_tiles=False)
    covars, _ = gs._quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    means_c, covars_c = gs._world_to_cam(s["means"], covars, s["viewmats"])
    _, cov2d = gs._persp_proj(means_c, covars_c, s["Ks"], s["width"], s["height"])
    var = torch.stack([cov2d[..., 0, 0], cov2d[..., 1, 1]], dim=-1) + 0.3  # [C,N,2]
    o = s["opacities"][None, :, None]
    extend = torch.clamp(
        torch.sqrt(2.0 * torch.log(o.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD)), max=3.33
    )
    cuda_radii = torch.where(o < ALPHA_THRESHOLD, 0.0, torch.ceil(extend * torch.sqrt(var)))
    vis = meta.visible
    assert torch.equal(meta.radii[vis].double(), cuda_radii[vis])
    assert bool((~meta.visible[:, :10]).all()) and bool((loose.visible[:, :10]).all())
    lv = loose.visible
    assert torch.equal(loose.radii[lv].double(), torch.ceil(3.33 * torch.sqrt(var))[lv])
    assert bool((loose.radii[vis] >= meta.radii[vis]).all())
    assert math.sqrt(2 * math.log(255.0)) < 3.33  # so opacity-aware radii are never larger
    # Gaussians culled by the opacity rule do not change the image
    keep = s["opacities"] >= ALPHA_THRESHOLD
    t = {**s, **{k: s[k][keep] for k in ("means", "quats", "scales", "opacities", "colors")}}
    rgb, alpha, _ = rg.rasterize(**s, backend="torch")
    rgb2, alpha2, _ = rg.rasterize(**t, backend="torch", tight_tiles=False)
    _assert_close("rgb without o < 1/255", rgb, rgb2, ATOL_F64)
    _assert_close("alpha without o < 1/255", alpha, alpha2, ATOL_F64)
