"""Torch glue shared by the CPU and CUDA backends of ``rigged_gaussians._C``.

One implementation of the autograd Functions drives both backends: a :class:`Backend` names the
extension functions (``<op>_cpu`` or ``<op>_cuda``) and supplies the stream handle (torch's
current CUDA stream, or 0 on the CPU). Every tensor (outputs and scratch) is allocated here with
torch; the extension receives data pointers and sizes and allocates nothing. Inputs are converted
to contiguous float32 (both backends compute in float32; autograd carries gradients back to the
caller's dtype). The public wrappers in ``api.py`` validate arguments and dispatch here through
``_cpu.py`` / ``_cuda.py``.

Return conventions (shared by ``*_cpu`` and ``*_cuda``):

- ``triangle_frames -> (centroids [B,F,3], rotations [B,F,3,3], sqrt_areas [B,F])``
- ``deform -> (means [B,N,3], quats [B,N,4], scales [B,N,3])``
- ``rasterize -> (rgb [C,H,W,D], alpha [C,H,W,1], meta: dict)`` with ``meta`` keys ``depth
  [C,H,W,1]``, ``radii [C,N,2]`` int32, ``means2d [C,N,2]``, ``depths [C,N]``, ``visible [C,N]``
- ``render_rigged -> (rgb [B,C,H,W,D], alpha [B,C,H,W,1], meta: dict)`` (per-camera entries
  flattened over ``B*C``; ``depth`` is ``[B,C,H,W,1]``)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "CPU",
    "CUDA",
    "Backend",
    "deform",
    "isect_tiles",
    "rasterize",
    "render_rigged",
    "triangle_frames",
]

_INT32_MAX = 2**31 - 1
_MAX_CHANNELS = 3  # colour channels per Gaussian; the kernels take colours + depth (<= 4)


def _ext() -> Any:
    from rigged_gaussians import _C as ext  # noqa: N811

    return ext


@dataclass(frozen=True)
class Backend:
    """Which ``_C`` functions to call (``<op>_<suffix>``) and how to get the stream handle."""

    suffix: str

    def ext(self) -> Any:
        """The extension module, checked to contain this backend."""
        ext = _ext()
        if self.suffix == "cuda":
            if not hasattr(ext, "rasterize_to_pixels_fwd_cuda"):
                raise RuntimeError(
                    "rigged_gaussians._C was built without CUDA; reinstall with RG_CUDA=ON "
                    "(needs nvcc on PATH) or use backend='cpu'"
                )
        elif "RG_NUM_THREADS" not in os.environ:
            # follow torch's intra-op thread count unless the user pinned ours
            n = torch.get_num_threads()
            if ext.get_num_threads() != n:
                ext.set_num_threads(n)
        return ext

    def call(self, op: str, **kwargs: Any) -> None:
        """Call ``_C.<op>_<suffix>(**kwargs)``."""
        getattr(self.ext(), f"{op}_{self.suffix}")(**kwargs)

    def stream(self, t: Tensor) -> int:
        """Torch's current CUDA stream for ``t``'s device; 0 on the CPU."""
        if self.suffix == "cuda":
            return int(torch.cuda.current_stream(t.device).cuda_stream)
        return 0


CPU = Backend("cpu")
CUDA = Backend("cuda")


def _ptr(t: Tensor | None) -> int:
    return 0 if t is None else int(t.data_ptr())


def _f32(t: Tensor) -> Tensor:
    return t.contiguous().float() if t.dtype != torch.float32 else t.contiguous()


def _check_device(bk: Backend, *tensors: Tensor | None) -> None:
    want = "cuda" if bk.suffix == "cuda" else "cpu"
    for t in tensors:
        if t is not None and t.device.type != want:
            raise ValueError(
                f"the {bk.suffix} backend needs {want} tensors, got one on {t.device}; move the "
                f"inputs with .to('{want}') or pick the matching backend"
            )


# ----------------------------------------------------------------------------- frames / deform
class _TriangleFrames(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, vertices: Tensor, faces: Tensor, bk: Backend) -> tuple[Tensor, Tensor, Tensor]:
        B, V, _ = vertices.shape
        F = faces.shape[0]
        cent = vertices.new_empty(B, F, 3)
        rot = vertices.new_empty(B, F, 3, 3)
        sa = vertices.new_empty(B, F)
        bk.call(
            "triangle_frames_fwd", vertices=_ptr(vertices), faces=_ptr(faces), B=B, V=V, F=F,
            centroids=_ptr(cent), rotations=_ptr(rot), sqrt_areas=_ptr(sa),
            stream=bk.stream(vertices),
        )  # fmt: skip
        ctx.bk = bk
        ctx.save_for_backward(vertices, faces)
        return cent, rot, sa

    @staticmethod
    def backward(ctx: Any, g_cent: Tensor, g_rot: Tensor, g_sa: Tensor) -> tuple:
        vertices, faces = ctx.saved_tensors
        bk: Backend = ctx.bk
        B, V, _ = vertices.shape
        v_vertices = torch.zeros_like(vertices)
        gs = [None if g is None else g.contiguous() for g in (g_cent, g_rot, g_sa)]
        bk.call(
            "triangle_frames_bwd", vertices=_ptr(vertices), faces=_ptr(faces), B=B, V=V,
            F=faces.shape[0], v_centroids=_ptr(gs[0]), v_rotations=_ptr(gs[1]),
            v_sqrt_areas=_ptr(gs[2]), v_vertices=_ptr(v_vertices), stream=bk.stream(vertices),
        )  # fmt: skip
        return v_vertices, None, None


def triangle_frames(bk: Backend, vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Triangle frames of ``vertices [B,V,3]`` and ``faces [F,3]`` (any integer dtype).

    Returns ``centroids [B,F,3]``, ``rotations [B,F,3,3]`` (columns t, n, b), ``sqrt_areas [B,F]``.
    """
    _check_device(bk, vertices, faces)
    return _TriangleFrames.apply(_f32(vertices), faces.to(torch.int32).contiguous(), bk)


class _Deform(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        means: Tensor,
        quats: Tensor,
        log_scales: Tensor,
        centroids: Tensor,
        rotations: Tensor,
        sqrt_areas: Tensor,
        face_ids: Tensor,
        bk: Backend,
    ) -> tuple[Tensor, Tensor, Tensor]:
        B, F = sqrt_areas.shape
        N = means.shape[0]
        om, oq, os_ = means.new_empty(B, N, 3), means.new_empty(B, N, 4), means.new_empty(B, N, 3)
        bk.call(
            "deform_fwd", means=_ptr(means), quats=_ptr(quats), log_scales=_ptr(log_scales),
            face_ids=_ptr(face_ids), centroids=_ptr(centroids), rotations=_ptr(rotations),
            sqrt_areas=_ptr(sqrt_areas), B=B, N=N, F=F, out_means=_ptr(om), out_quats=_ptr(oq),
            out_scales=_ptr(os_), stream=bk.stream(means),
        )  # fmt: skip
        ctx.bk = bk
        ctx.save_for_backward(means, quats, log_scales, centroids, rotations, sqrt_areas, face_ids)
        return om, oq, os_

    @staticmethod
    def backward(ctx: Any, g_m: Tensor, g_q: Tensor, g_s: Tensor) -> tuple:
        means, quats, log_scales, cent, rot, sa, face_ids = ctx.saved_tensors
        bk: Backend = ctx.bk
        B, F = sa.shape
        N = means.shape[0]
        outs = [torch.zeros_like(t) for t in (means, quats, log_scales, cent, rot, sa)]
        gs = [None if g is None else g.contiguous() for g in (g_m, g_q, g_s)]
        bk.call(
            "deform_bwd", means=_ptr(means), quats=_ptr(quats), log_scales=_ptr(log_scales),
            face_ids=_ptr(face_ids), centroids=_ptr(cent), rotations=_ptr(rot),
            sqrt_areas=_ptr(sa), B=B, N=N, F=F, v_out_means=_ptr(gs[0]),
            v_out_quats=_ptr(gs[1]), v_out_scales=_ptr(gs[2]), v_means=_ptr(outs[0]),
            v_quats=_ptr(outs[1]), v_log_scales=_ptr(outs[2]), v_centroids=_ptr(outs[3]),
            v_rotations=_ptr(outs[4]), v_sqrt_areas=_ptr(outs[5]), stream=bk.stream(means),
        )  # fmt: skip
        return (*outs, None, None)


def deform(
    bk: Backend,
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    face_ids: Tensor,
    centroids: Tensor,
    rotations: Tensor,
    sqrt_areas: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Deform local Gaussians ``[N,·]`` by the frames of ``B`` poses -> ``[B,N,·]`` world ones."""
    _check_device(bk, means, quats, log_scales, face_ids, centroids, rotations, sqrt_areas)
    return _Deform.apply(
        _f32(means), _f32(quats), _f32(log_scales), _f32(centroids), _f32(rotations),
        _f32(sqrt_areas), face_ids.to(torch.int32).contiguous(), bk,
    )  # fmt: skip


# ----------------------------------------------------------------------------- projection
class _Projection(torch.autograd.Function):
    """Plain (world Gaussians) or rigged (local Gaussians + frames, fused) projection."""

    @staticmethod
    def forward(
        ctx: Any,
        means: Tensor,
        quats: Tensor,
        scales: Tensor,
        sh: Tensor | None,
        centroids: Tensor | None,
        rotations: Tensor | None,
        sqrt_areas: Tensor | None,
        viewmats: Tensor,
        Ks: Tensor,
        face_ids: Tensor | None,
        cfg: dict,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        bk: Backend = cfg["backend"]
        C = viewmats.shape[0]
        N = cfg["N"]
        radii = torch.zeros(C, N, 2, dtype=torch.int32, device=means.device)
        means2d = means.new_zeros(C, N, 2)
        depths = means.new_zeros(C, N)
        conics = means.new_zeros(C, N, 3)
        colors = means.new_zeros(C, N, 3) if sh is not None else means.new_zeros(0)
        args = dict(
            C=C, N=N, per_camera=cfg["per_camera"], means=_ptr(means), quats=_ptr(quats),
            scales=_ptr(scales), face_ids=_ptr(face_ids), centroids=_ptr(centroids),
            rotations=_ptr(rotations), sqrt_areas=_ptr(sqrt_areas), F=cfg["F"],
            cams_per_pose=cfg["cams_per_pose"], viewmats=_ptr(viewmats), Ks=_ptr(Ks),
            width=cfg["width"], height=cfg["height"], near_plane=cfg["near_plane"],
            far_plane=cfg["far_plane"], eps2d=cfg["eps2d"], radius_clip=cfg["radius_clip"],
            sh_degree=cfg["sh_degree"] if sh is not None else -1,
            K=sh.shape[-2] if sh is not None else 0, sh_per_camera=cfg["sh_per_camera"],
            sh=_ptr(sh), radii=_ptr(radii), means2d=_ptr(means2d), depths=_ptr(depths),
            conics=_ptr(conics), colors=_ptr(colors) if sh is not None else 0,
        )  # fmt: skip
        op = "projection_rigged_fwd" if cfg["rigged"] else "projection_fwd"
        bk.call(op, **args, stream=bk.stream(means))
        ctx.cfg = cfg
        ctx.args = args
        ctx.has_sh = sh is not None
        ctx.save_for_backward(
            means, quats, scales, sh, centroids, rotations, sqrt_areas, viewmats, Ks, face_ids,
            radii, conics, colors,
        )  # fmt: skip
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics, colors

    @staticmethod
    def backward(
        ctx: Any, _g_radii: Tensor, g_means2d: Tensor, g_depths: Tensor, g_conics: Tensor,
        g_colors: Tensor,
    ) -> tuple:  # fmt: skip
        (means, quats, scales, sh, cent, rot, sa, viewmats, Ks, face_ids, radii, conics,
         colors) = ctx.saved_tensors  # fmt: skip
        bk: Backend = ctx.cfg["backend"]
        args = dict(ctx.args)
        args.update(radii=_ptr(radii), conics=_ptr(conics))
        outs = [torch.zeros_like(t) for t in (means, quats, scales)]
        v_sh = torch.zeros_like(sh) if sh is not None else None
        v_frames = [torch.zeros_like(t) for t in (cent, rot, sa)] if ctx.cfg["rigged"] else [None] * 3
        gm2 = g_means2d.contiguous() if g_means2d is not None else torch.zeros_like(conics[..., :2])
        gc = g_conics.contiguous() if g_conics is not None else torch.zeros_like(conics)
        gd = g_depths.contiguous() if g_depths is not None else None
        gcol = g_colors.contiguous() if (ctx.has_sh and g_colors is not None) else None
        op = "projection_rigged_bwd" if ctx.cfg["rigged"] else "projection_bwd"
        bk.call(
            op, **args, v_means2d=_ptr(gm2), v_depths=_ptr(gd), v_conics=_ptr(gc),
            v_colors=_ptr(gcol), v_means=_ptr(outs[0]), v_quats=_ptr(outs[1]),
            v_scales=_ptr(outs[2]), v_sh=_ptr(v_sh), v_centroids=_ptr(v_frames[0]),
            v_rotations=_ptr(v_frames[1]), v_sqrt_areas=_ptr(v_frames[2]),
            stream=bk.stream(means),
        )  # fmt: skip
        return (*outs, v_sh, *v_frames, None, None, None, None)


# ----------------------------------------------------------------------------- tiles
def isect_tiles(
    bk: Backend,
    radii: Tensor,
    means2d: Tensor,
    depths: Tensor,
    tile_size: int,
    tile_w: int,
    tile_h: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Tile intersections of projected Gaussians ``radii [C,N,2]``, ``means2d [C,N,2]``,
    ``depths [C,N]``.

    Returns ``offsets [C,tile_h,tile_w]`` int32, ``flatten_ids [M]`` int32 (c*N+n, sorted by
    camera, tile, depth) and ``n_isects`` as a 0-d int64 tensor. The count is summed in int64;
    more than 2^31-1 intersections raise an ``OverflowError`` (never silent). The CUDA backend
    sorts the 64-bit keys with ``torch.sort``; the CPU backend scatters by tile (counting sort)
    visiting each camera's Gaussians in depth order (``isect_sort_cpu``).
    """
    ext = bk.ext()
    C, N = depths.shape
    if C * N > _INT32_MAX:
        raise OverflowError(
            f"{C} cameras x {N} Gaussians = {C * N} exceeds the int32 range of the intersection "
            "ids; render fewer cameras per call"
        )
    stream = bk.stream(depths)
    dev = depths.device
    counts = torch.empty(C, N, dtype=torch.int32, device=dev)
    bk.call(
        "isect_count", radii=_ptr(radii), means2d=_ptr(means2d), C=C, N=N, tile_size=tile_size,
        tile_w=tile_w, tile_h=tile_h, tiles_per_gauss=_ptr(counts), stream=stream,
    )  # fmt: skip
    cum = torch.cumsum(counts.view(-1), 0, dtype=torch.int64)
    n_isects = int(cum[-1].item()) if cum.numel() else 0
    if n_isects > _INT32_MAX:
        raise OverflowError(
            f"{n_isects} tile intersections exceed the int32 range of the rasterizer; render "
            "fewer cameras per call, fewer Gaussians, or a smaller image"
        )
    keys = torch.empty(n_isects, dtype=torch.int64, device=dev)
    fids = torch.empty(n_isects, dtype=torch.int32, device=dev)
    if n_isects:
        bk.call(
            "isect_fill", radii=_ptr(radii), means2d=_ptr(means2d), depths=_ptr(depths),
            cum_tiles=_ptr(cum), C=C, N=N, tile_size=tile_size, tile_w=tile_w, tile_h=tile_h,
            keys=_ptr(keys), flatten_ids=_ptr(fids), stream=stream,
        )  # fmt: skip
    offsets = torch.empty(C, tile_h, tile_w, dtype=torch.int32, device=dev)
    if bk.suffix == "cpu":
        sorted_keys = torch.empty_like(keys)
        sorted_ids = torch.empty_like(fids)
        ext.isect_sort_cpu(
            keys=_ptr(keys), flatten_ids=_ptr(fids), cum_tiles=_ptr(cum), n_isects=n_isects,
            C=C, N=N, tile_w=tile_w, tile_h=tile_h, sorted_keys=_ptr(sorted_keys),
            sorted_ids=_ptr(sorted_ids), offsets=_ptr(offsets),
        )  # fmt: skip
        return offsets, sorted_ids, torch.tensor(n_isects, dtype=torch.int64)
    if n_isects:
        keys, order = torch.sort(keys)
        fids = fids[order].contiguous()
    bk.call(
        "isect_offset_encode", sorted_keys=_ptr(keys), n_isects=n_isects, C=C, tile_w=tile_w,
        tile_h=tile_h, offsets=_ptr(offsets), stream=stream,
    )  # fmt: skip
    return offsets, fids, torch.tensor(n_isects, dtype=torch.int64)


# ----------------------------------------------------------------------------- rasterizer
class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        means2d: Tensor,
        conics: Tensor,
        colors: Tensor,
        opacities: Tensor,
        backgrounds: Tensor | None,
        offsets: Tensor,
        flatten_ids: Tensor,
        cfg: dict,
        absgrad: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        bk: Backend = cfg["backend"]
        C, N, CH = colors.shape
        H, W = cfg["height"], cfg["width"]
        rc = colors.new_empty(C, H, W, CH)
        ra = colors.new_empty(C, H, W, 1)
        last = torch.empty(C, H, W, dtype=torch.int32, device=colors.device)
        args = dict(
            C=C, N=N, CH=CH, width=W, height=H, tile_size=cfg["tile_size"],
            tile_w=cfg["tile_w"], tile_h=cfg["tile_h"], n_isects=int(flatten_ids.numel()),
            means2d=_ptr(means2d), conics=_ptr(conics), colors=_ptr(colors),
            opacities=_ptr(opacities), backgrounds=_ptr(backgrounds), offsets=_ptr(offsets),
            flatten_ids=_ptr(flatten_ids), render_colors=_ptr(rc), render_alphas=_ptr(ra),
            last_ids=_ptr(last),
        )  # fmt: skip
        bk.call("rasterize_to_pixels_fwd", **args, stream=bk.stream(colors))
        ctx.bk = bk
        ctx.args = args
        ctx.absgrad = absgrad
        ctx.has_bg = backgrounds is not None
        ctx.save_for_backward(
            means2d, conics, colors, opacities, backgrounds, offsets, flatten_ids, rc, ra, last
        )
        return rc, ra

    @staticmethod
    def backward(ctx: Any, g_rc: Tensor, g_ra: Tensor) -> tuple:
        (means2d, conics, colors, opacities, backgrounds, offsets, fids, rc, ra,
         last) = ctx.saved_tensors  # fmt: skip
        bk: Backend = ctx.bk
        g_rc = torch.zeros_like(rc) if g_rc is None else g_rc.contiguous()
        g_ra = None if g_ra is None else g_ra.contiguous()
        v_means2d = torch.zeros_like(means2d)
        v_abs = torch.zeros_like(means2d) if ctx.absgrad is not None else None
        v_conics = torch.zeros_like(conics)
        v_colors = torch.zeros_like(colors)
        v_opac = torch.zeros_like(opacities)
        extra: dict[str, int] = {}
        if bk.suffix == "cpu":
            # one row of partial gradients per intersection, summed per Gaussian in a fixed
            # order by the extension: bit-identical gradients for any thread count
            isect_grads = colors.new_empty(ctx.args["n_isects"], 8 + colors.shape[-1])
            extra["isect_grads"] = _ptr(isect_grads)
        bk.call(
            "rasterize_to_pixels_bwd", **ctx.args, v_render_colors=_ptr(g_rc),
            v_render_alphas=_ptr(g_ra), v_means2d=_ptr(v_means2d), v_means2d_abs=_ptr(v_abs),
            v_conics=_ptr(v_conics), v_colors=_ptr(v_colors), v_opacities=_ptr(v_opac),
            stream=bk.stream(colors), **extra,
        )  # fmt: skip
        if v_abs is not None:
            ctx.absgrad.add_(v_abs.to(ctx.absgrad.dtype))
        v_bg = None
        if ctx.has_bg and ctx.needs_input_grad[4]:
            v_bg = (g_rc * (1.0 - ra)).sum(dim=(1, 2))
        return v_means2d, v_conics, v_colors, v_opac, v_bg, None, None, None, None


def _render_projected(
    bk: Backend,
    radii: Tensor,
    means2d: Tensor,
    depths: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    backgrounds: Tensor | None,
    width: int,
    height: int,
    tile_size: int,
    absgrad: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Rasterize projected Gaussians ``[C,N,·]`` to ``rgb [C,H,W,D]``, ``alpha [C,H,W,1]`` and the
    expected depth ``[C,H,W,1]`` (depth rendered as an extra channel, divided by alpha)."""
    tile_w = math.ceil(width / tile_size)
    tile_h = math.ceil(height / tile_size)
    offsets, fids, _ = isect_tiles(bk, radii, means2d, depths, tile_size, tile_w, tile_h)
    feats = torch.cat([colors, depths[..., None]], dim=-1).contiguous()
    bg = None
    if backgrounds is not None:
        bg = _f32(torch.cat([backgrounds, backgrounds.new_zeros(backgrounds.shape[0], 1)], -1))
    cfg = dict(backend=bk, width=width, height=height, tile_size=tile_size, tile_w=tile_w, tile_h=tile_h)
    rc, ra = _Rasterize.apply(means2d, conics, feats, _f32(opacities), bg, offsets, fids, cfg, absgrad)
    rgb = rc[..., :-1]
    depth = rc[..., -1:] / ra.clamp(min=1e-10)
    return rgb, ra, depth


def _check_channels(colors: Tensor, sh_degree: int | None) -> None:
    if sh_degree is None and colors.shape[-1] > _MAX_CHANNELS:
        raise ValueError(
            f"colors: the rasterizer takes at most {_MAX_CHANNELS} channels per Gaussian, got "
            f"{colors.shape[-1]} (shape {tuple(colors.shape)})"
        )


def rasterize(
    bk: Backend,
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    tile_size: int = 16,
    absgrad: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Render world-space Gaussians (arguments as ``rg.rasterize``).

    ``means [N,3]|[C,N,3]``, ``quats [N,4]|[C,N,4]`` (wxyz), ``scales`` linear, ``opacities
    [N]|[C,N]`` activated, ``colors [N,D]|[C,N,D]`` (D <= 3) or SH ``[N,K,3]|[C,N,K,3]`` with
    ``sh_degree``. Returns ``rgb [C,H,W,D]``, ``alpha [C,H,W,1]`` and a dict with ``depth
    [C,H,W,1]``, ``radii [C,N,2]``, ``means2d [C,N,2]`` (differentiable; ``retain_grad`` works),
    ``depths [C,N]``, ``visible [C,N]``. ``absgrad`` (``[C,N,2]`` zeros) receives the summed
    absolute per-pixel gradients of ``means2d`` during backward (densification).
    """
    _check_device(bk, means, quats, scales, opacities, colors, viewmats, Ks, backgrounds, absgrad)
    _check_channels(colors, sh_degree)
    C = viewmats.shape[0]
    per_camera = means.dim() == 3 or quats.dim() == 3 or scales.dim() == 3
    N = means.shape[-2]
    if per_camera:
        means, quats, scales = (
            t.expand(C, *t.shape[-2:]) if t.dim() == 2 else t for t in (means, quats, scales)
        )
    sh = None
    sh_per_camera = False
    if sh_degree is not None:
        sh = _f32(colors)
        sh_per_camera = sh.dim() == 4
    cfg = dict(
        backend=bk, N=N, per_camera=per_camera, rigged=False, F=0, cams_per_pose=1, width=width,
        height=height, near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
        radius_clip=radius_clip, sh_degree=sh_degree if sh_degree is not None else -1,
        sh_per_camera=sh_per_camera,
    )  # fmt: skip
    radii, means2d, depths, conics, sh_colors = _Projection.apply(
        _f32(means), _f32(quats), _f32(scales), sh, None, None, None, _f32(viewmats), _f32(Ks),
        None, cfg,
    )  # fmt: skip
    cols = sh_colors if sh is not None else _f32(colors)
    if cols.dim() == 2:
        cols = cols.expand(C, N, cols.shape[-1])
    opac = opacities if opacities.dim() == 2 else opacities.expand(C, N)
    rgb, alpha, depth = _render_projected(
        bk, radii, means2d, depths, conics, cols, opac, backgrounds, width, height, tile_size,
        absgrad,
    )  # fmt: skip
    visible = (radii > 0).all(dim=-1)
    meta = dict(depth=depth, radii=radii, means2d=means2d, depths=depths, visible=visible)
    return rgb, alpha, meta


def render_rigged(
    bk: Backend,
    vertices: Tensor,
    faces: Tensor,
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    face_ids: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    tile_size: int = 16,
    absgrad: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Render local Gaussians bound to triangles of ``vertices [B,V,3]`` / ``faces [F,3]``.

    ``viewmats [B,C,4,4]``, ``Ks [B,C,3,3]``, ``backgrounds [B,C,3]``; local ``means [N,3]``,
    ``quats [N,4]``, ``log_scales [N,3]``, ``opacities [N]``, ``colors [N,D]`` or SH
    ``[N,K,3]``, ``face_ids [N]``. World Gaussians are formed in registers (fused). Returns
    ``rgb [B,C,H,W,D]``, ``alpha [B,C,H,W,1]`` and a dict whose per-camera entries are
    flattened over ``B*C`` (camera ``b*C+c``): ``depth`` (``[B,C,H,W,1]``), ``radii``,
    ``means2d``, ``depths``, ``visible``. ``absgrad``: ``[B*C,N,2]`` zeros, as in :func:`rasterize`.
    """
    _check_device(bk, vertices, faces, means, quats, log_scales, opacities, colors, face_ids)
    _check_device(bk, viewmats, Ks, backgrounds, absgrad)
    _check_channels(colors, sh_degree)
    B, Cp = viewmats.shape[:2]
    BC = B * Cp
    N = means.shape[0]
    cent, rot, sa = triangle_frames(bk, vertices, faces)
    F = sa.shape[1]
    sh = _f32(colors) if sh_degree is not None else None
    cfg = dict(
        backend=bk, N=N, per_camera=False, rigged=True, F=F, cams_per_pose=Cp, width=width,
        height=height, near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
        radius_clip=radius_clip, sh_degree=sh_degree if sh_degree is not None else -1,
        sh_per_camera=False,
    )  # fmt: skip
    fid = face_ids.to(torch.int32).contiguous()
    radii, means2d, depths, conics, sh_colors = _Projection.apply(
        _f32(means), _f32(quats), _f32(log_scales), sh, cent, rot, sa,
        _f32(viewmats.reshape(BC, 4, 4)), _f32(Ks.reshape(BC, 3, 3)), fid, cfg,
    )  # fmt: skip
    cols = sh_colors if sh is not None else _f32(colors).expand(BC, N, colors.shape[-1])
    bg = backgrounds.reshape(BC, -1) if backgrounds is not None else None
    rgb, alpha, depth = _render_projected(
        bk, radii, means2d, depths, conics, cols, opacities.expand(BC, N), bg, width, height,
        tile_size, absgrad,
    )  # fmt: skip
    H, W = height, width
    meta = dict(
        depth=depth.reshape(B, Cp, H, W, 1), radii=radii, means2d=means2d, depths=depths,
        visible=(radii > 0).all(dim=-1),
    )  # fmt: skip
    return rgb.reshape(B, Cp, H, W, -1), alpha.reshape(B, Cp, H, W, 1), meta
