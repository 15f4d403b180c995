"""The autograd functions of the native render stages (split out of :mod:`rigged_gaussians._glue`,
whose :class:`~rigged_gaussians._glue.NativeOps` applies them): each forward fills one ``_C``
argument record and calls ``<op>_fwd``; its backward sets the record's gradient pointers and calls
``<op>_bwd``."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from rigged_gaussians._records import Record, _ext
from rigged_gaussians.settings import RasterSettings

__all__ = ["StageOps", "_Deform", "_Projection", "_RasterizeToPixels", "_TriangleFrames"]


class StageOps(Protocol):
    """What the autograd functions use of :class:`rigged_gaussians._glue.NativeOps`."""

    def record(
        self, kind: str, device: torch.device, settings: RasterSettings | None = None, **values: Any
    ) -> Any:
        """A ``_C.<kind>`` argument record (a ``_glue.Record``)."""
        ...

    def call(self, op: str, *records: Any) -> Any:
        """``_C.<op>_<backend>(*records)``."""
        ...


class _TriangleFrames(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, vertices: Tensor, faces: Tensor, ops: StageOps) -> tuple[Tensor, Tensor, Tensor]:
        B, V, _ = vertices.shape
        F = faces.shape[0]
        cent, rot, sa = vertices.new_empty(B, F, 3), vertices.new_empty(B, F, 3, 3), vertices.new_empty(B, F)
        rec = ops.record(
            "FramesArgs", vertices.device, B=B, V=V, F=F, vertices=vertices, faces=faces,
            centroids=cent, rotations=rot, sqrt_areas=sa,
        )  # fmt: skip
        ops.call("triangle_frames_fwd", rec)
        ctx.rec, ctx.ops = rec, ops
        ctx.save_for_backward(vertices, faces)
        return cent, rot, sa

    @staticmethod
    def backward(ctx: Any, g_cent: Tensor, g_rot: Tensor, g_sa: Tensor) -> tuple:
        vertices, faces = ctx.saved_tensors
        v_vertices = torch.zeros_like(vertices)
        gs = [None if g is None else g.contiguous() for g in (g_cent, g_rot, g_sa)]
        ctx.rec.set(v_centroids=gs[0], v_rotations=gs[1], v_sqrt_areas=gs[2], v_vertices=v_vertices)
        ctx.ops.call("triangle_frames_bwd", ctx.rec)
        return v_vertices, None, None


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
        ops: StageOps,
    ) -> tuple[Tensor, Tensor, Tensor]:
        B, F = sqrt_areas.shape
        N = means.shape[0]
        om, oq, os_ = means.new_empty(B, N, 3), means.new_empty(B, N, 4), means.new_empty(B, N, 3)
        inputs = {
            "means": means, "quats": quats, "log_scales": log_scales, "face_ids": face_ids,
            "centroids": centroids, "rotations": rotations, "sqrt_areas": sqrt_areas,
        }  # fmt: skip
        rec = ops.record(
            "DeformArgs", means.device, B=B, N=N, F=F, out_means=om, out_quats=oq, out_scales=os_, **inputs
        )
        ops.call("deform_fwd", rec)
        ctx.rec, ctx.ops = rec, ops
        ctx.save_for_backward(*inputs.values())
        return om, oq, os_

    @staticmethod
    def backward(ctx: Any, g_m: Tensor, g_q: Tensor, g_s: Tensor) -> tuple:
        means, quats, log_scales, face_ids, cent, rot, sa = ctx.saved_tensors
        outs = [torch.zeros_like(t) for t in (means, quats, log_scales, cent, rot, sa)]
        gs = [None if g is None else g.contiguous() for g in (g_m, g_q, g_s)]
        names = ("v_means", "v_quats", "v_log_scales", "v_centroids", "v_rotations", "v_sqrt_areas")
        ctx.rec.set(
            v_out_means=gs[0], v_out_quats=gs[1], v_out_scales=gs[2], **dict(zip(names, outs, strict=True))
        )
        ctx.ops.call("deform_bwd", ctx.rec)
        return (*outs[:3], *outs[3:], None, None)


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
        opacities: Tensor,
        viewmats: Tensor,
        Ks: Tensor,
        face_ids: Tensor | None,
        spec: dict,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        ops: StageOps = spec["ops"]
        settings: RasterSettings = spec["settings"]
        C, N = viewmats.shape[0], spec["N"]
        radii = torch.zeros(C, N, 2, dtype=torch.int32, device=means.device)
        means2d, depths, conics = means.new_zeros(C, N, 2), means.new_zeros(C, N), means.new_zeros(C, N, 3)
        colors = means.new_zeros(C, N, 3) if sh is not None else means.new_zeros(0)
        rec = ops.record(
            "ProjArgs", means.device, settings, C=C, N=N, per_camera=spec["per_camera"], means=means,
            quats=quats, scales=scales, opacities=opacities,
            opacities_per_camera=spec["opacities_per_camera"], face_ids=face_ids,
            centroids=centroids, rotations=rotations, sqrt_areas=sqrt_areas, F=spec["F"],
            cams_per_pose=spec["cams_per_pose"], viewmats=viewmats, Ks=Ks,
            sh_degree=settings.sh_degree if sh is not None else -1,
            K=sh.shape[-2] if sh is not None else 0, sh_per_camera=spec["sh_per_camera"], sh=sh,
            radii=radii, means2d=means2d, depths=depths, conics=conics,
            colors=colors if sh is not None else None,
        )  # fmt: skip
        ctx.op = "projection_rigged" if spec["rigged"] else "projection"
        ops.call(f"{ctx.op}_fwd", rec)
        ctx.rec, ctx.ops, ctx.has_sh, ctx.rigged = rec, ops, sh is not None, spec["rigged"]
        ctx.save_for_backward(
            means, quats, scales, sh, centroids, rotations, sqrt_areas, opacities, viewmats, Ks, face_ids,
            radii, conics,
        )  # fmt: skip
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics, colors

    @staticmethod
    def backward(
        ctx: Any, _g_radii: Tensor, g_means2d: Tensor, g_depths: Tensor, g_conics: Tensor, g_colors: Tensor
    ) -> tuple:
        (means, quats, scales, sh, cent, rot, sa, _opac, _vm, _Ks, _fid, radii,
         conics) = ctx.saved_tensors  # fmt: skip
        outs = [torch.zeros_like(t) for t in (means, quats, scales)]
        v_sh = torch.zeros_like(sh) if sh is not None else None
        v_frames = [torch.zeros_like(t) for t in (cent, rot, sa)] if ctx.rigged else [None] * 3
        g = Record(_ext().ProjGrads()).set(
            v_means2d=g_means2d.contiguous() if g_means2d is not None else torch.zeros_like(conics[..., :2]),
            v_depths=g_depths.contiguous() if g_depths is not None else None,
            v_conics=g_conics.contiguous() if g_conics is not None else torch.zeros_like(conics),
            v_colors=g_colors.contiguous() if (ctx.has_sh and g_colors is not None) else None,
            v_means=outs[0], v_quats=outs[1], v_scales=outs[2], v_sh=v_sh, v_centroids=v_frames[0],
            v_rotations=v_frames[1], v_sqrt_areas=v_frames[2],
        )  # fmt: skip
        ctx.ops.call(f"{ctx.op}_bwd", ctx.rec, g)
        return (*outs, v_sh, *v_frames, None, None, None, None, None)


class _RasterizeToPixels(torch.autograd.Function):
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
        ops: StageOps,
        settings: RasterSettings,
        absgrad: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        C, N, CH = colors.shape
        H, W = settings.height, settings.width
        rc, ra = colors.new_empty(C, H, W, CH), colors.new_empty(C, H, W, 1)
        last = torch.empty(C, H, W, dtype=torch.int32, device=colors.device)
        rec = ops.record(
            "RasterArgs", colors.device, settings, C=C, N=N, CH=CH, tile_w=settings.tile_w,
            tile_h=settings.tile_h, n_isects=int(flatten_ids.numel()), means2d=means2d, conics=conics,
            colors=colors, opacities=opacities, backgrounds=backgrounds, offsets=offsets,
            flatten_ids=flatten_ids, render_colors=rc, render_alphas=ra, last_ids=last,
        )  # fmt: skip
        ops.call("rasterize_to_pixels_fwd", rec)
        ctx.rec, ctx.ops, ctx.absgrad, ctx.has_bg = rec, ops, absgrad, backgrounds is not None
        ctx.save_for_backward(
            means2d, conics, colors, opacities, backgrounds, offsets, flatten_ids, rc, ra, last
        )
        return rc, ra

    @staticmethod
    def backward(ctx: Any, g_rc: Tensor, g_ra: Tensor) -> tuple:
        means2d, conics, colors, opacities, _bg, _off, _fids, rc, ra, _last = ctx.saved_tensors
        g_rc = torch.zeros_like(rc) if g_rc is None else g_rc.contiguous()
        v_abs = torch.zeros_like(means2d) if ctx.absgrad is not None else None
        v_means2d, v_conics = torch.zeros_like(means2d), torch.zeros_like(conics)
        v_colors, v_opac = torch.zeros_like(colors), torch.zeros_like(opacities)
        # CPU: one row of partial gradients per intersection, summed per Gaussian in a fixed
        # order by the extension: bit-identical gradients for any thread count
        n_isects = ctx.rec.native.n_isects
        scratch = colors.new_empty(n_isects, 8 + colors.shape[-1]) if ctx.ops.backend == "cpu" else None
        g = Record(_ext().RasterGrads()).set(
            v_render_colors=g_rc, v_render_alphas=None if g_ra is None else g_ra.contiguous(),
            v_means2d=v_means2d, v_means2d_abs=v_abs, v_conics=v_conics, v_colors=v_colors,
            v_opacities=v_opac, isect_grads=scratch,
        )  # fmt: skip
        ctx.ops.call("rasterize_to_pixels_bwd", ctx.rec, g)
        if v_abs is not None:
            ctx.absgrad.add_(v_abs.to(ctx.absgrad.dtype))
        v_bg = (g_rc * (1.0 - ra)).sum(dim=(1, 2)) if ctx.has_bg and ctx.needs_input_grad[4] else None
        return v_means2d, v_conics, v_colors, v_opac, v_bg, None, None, None, None, None
