"""Torch glue of the native backends of ``rigged_gaussians._C`` (C++ CPU and CUDA).

:class:`NativeOps` runs the render stages on one backend, with the same names and contracts as
the pure-PyTorch reference (:mod:`rigged_gaussians.reference`), so one pipeline
(:mod:`rigged_gaussians._pipeline`) drives either:

- ``triangle_frames(vertices [B,V,3], faces [F,3]) -> TriangleFrames``
- ``deform(means, quats, log_scales, face_ids, frames) -> Deformed``
- ``projection(gaussians: Gaussians, viewmats [C,4,4], Ks [C,3,3], settings) -> Projected``
- ``isect_tiles(means2d, radii, depths, conics, opacities [C,N], settings) -> Intersections``
- ``rasterize_to_pixels(means2d, conics, colors [C,N,CH], opacities [C,N], backgrounds
  [C,CH] | None, isect, settings, absgrad=None) -> (render_colors [C,H,W,CH], render_alphas
  [C,H,W,1])``

Every tensor (outputs and scratch) is allocated here with torch; the extension receives one
argument record per op (``_C.FramesArgs``, ``_C.ProjArgs``... generated from
``csrc/include/rg/ops.h``) holding data pointers and sizes, plus the device, stream and error
array of the call, and allocates nothing. Inputs are converted to contiguous float32 (both
backends compute in float32; autograd carries gradients back to the caller's dtype).
The autograd functions of the stages are in :mod:`rigged_gaussians._autograd`.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor

from rigged_gaussians._autograd import _Deform, _Projection, _RasterizeToPixels, _TriangleFrames
from rigged_gaussians._checks import INT32_MAX, Checks, same_device
from rigged_gaussians._records import Record, _ext
from rigged_gaussians._types import Deformed, Gaussians, Intersections, Projected, TriangleFrames
from rigged_gaussians.settings import RasterSettings

__all__ = ["NativeOps", "cuda_debug"]

#: Environment variable of the CUDA debug mode: every CUDA op waits for its kernels and raises a
#: ``RuntimeError`` naming itself ("rigged_gaussians: CUDA error in rasterize_to_pixels_fwd: ...")
#: when one faults, instead of the fault surfacing at a later, unrelated torch call. Slow.
CUDA_DEBUG_ENV = "RG_CUDA_DEBUG"


def cuda_debug() -> bool:
    """True when ``RG_CUDA_DEBUG`` is set to anything but ``""``, ``0``, ``false``, ``off``, ``no``
    (read at every op, so it can be switched on in a running process)."""
    return os.environ.get(CUDA_DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "off", "no")


def _f32(t: Tensor) -> Tensor:
    return t.contiguous().float() if t.dtype != torch.float32 else t.contiguous()


def _i32(t: Tensor) -> Tensor:
    return t.to(torch.int32).contiguous()


def _checked_isects(n: int) -> int:
    """``n`` tile intersections, or an ``OverflowError`` beyond the rasterizer's int32 range."""
    if n > INT32_MAX:
        raise OverflowError(
            f"{n} tile intersections exceed the int32 range of the rasterizer; render fewer cameras "
            "per call, fewer Gaussians, or a smaller image"
        )
    return n


class NativeOps:
    """The render stages on the ``"cpu"`` or ``"cuda"`` backend of ``_C`` (module docstring).

    ``checks``: the call's deferred input checks (CUDA renders); their flags are read with the
    intersection count and raised there (:class:`rigged_gaussians._checks.Checks`).
    """

    def __init__(self, backend: str, checks: Checks | None = None) -> None:
        if backend not in ("cpu", "cuda"):
            raise ValueError(f"backend: expected 'cpu' or 'cuda', got {backend!r}")
        self.backend = backend
        self.checks = checks

    # ------------------------------------------------------------------------- plumbing
    def ext(self) -> Any:
        """The extension module, checked to contain this backend."""
        ext = _ext()
        if self.backend == "cuda":
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

    def call(self, op: str, *records: Record) -> Any:
        """``_C.<op>_<backend>(*records)``."""
        return getattr(self.ext(), f"{op}_{self.backend}")(*(r.native for r in records))

    def record(
        self, kind: str, device: torch.device, settings: RasterSettings | None = None, **values: Any
    ) -> Record:
        """A ``_C.<kind>`` record: the execution context of ``device`` (index, current stream,
        debug mode, the deferred checks' error array), the ``settings`` fields the record has,
        then ``values``."""
        rec = Record(getattr(_ext(), kind)())
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            rec.set(
                device=index,
                stream=int(torch.cuda.current_stream(device).cuda_stream),
                sync_debug=cuda_debug(),
            )
        if self.checks is not None and self.checks.errors is not None:
            rec.set(errors=self.checks.errors)
        if settings is not None:
            own = set(rec.native.fields)
            opts = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name in own}
            rec.set(**{k: v for k, v in opts.items() if v is not None})
        return rec.set(**values)

    def _device(self, **tensors: Tensor | None) -> torch.device:
        dev = same_device(**tensors)
        if dev.type != self.backend:
            raise ValueError(
                f"the {self.backend} backend needs {self.backend} tensors, got them on {dev}; move "
                f"the inputs with .to('{self.backend}') or pick the matching backend"
            )
        return dev

    # ------------------------------------------------------------------------- stages
    def triangle_frames(self, vertices: Tensor, faces: Tensor) -> TriangleFrames:
        """Triangle frames of ``vertices [B,V,3]`` and ``faces [F,3]`` (any integer dtype)."""
        self._device(vertices=vertices, faces=faces)
        return TriangleFrames(*_TriangleFrames.apply(_f32(vertices), _i32(faces), self))

    def deform(
        self, means: Tensor, quats: Tensor, log_scales: Tensor, face_ids: Tensor, frames: TriangleFrames
    ) -> Deformed:
        """Deform local Gaussians ``[N,·]`` by the frames of ``B`` poses -> ``[B,N,·]``."""
        self._device(
            means=means, quats=quats, log_scales=log_scales, face_ids=face_ids,
            centroids=frames.centroids, rotations=frames.rotations, sqrt_areas=frames.sqrt_areas,
        )  # fmt: skip
        out = _Deform.apply(
            _f32(means), _f32(quats), _f32(log_scales), *(_f32(t) for t in frames), _i32(face_ids), self
        )
        return Deformed(*out)

    def projection(self, g: Gaussians, viewmats: Tensor, Ks: Tensor, settings: RasterSettings) -> Projected:
        """Project ``g`` (world, or rigged to ``g.frames``: fused) to ``C`` cameras."""
        fr = g.frames
        self._device(
            means=g.means, quats=g.quats, scales=g.scales, opacities=g.opacities, colors=g.colors,
            viewmats=viewmats, Ks=Ks, face_ids=g.face_ids,
            **({"frames": fr.centroids} if fr is not None else {}),
        )  # fmt: skip
        C = viewmats.shape[0]
        N = g.means.shape[-2]
        sh = _f32(g.colors) if settings.sh_degree is not None else None
        per_camera = g.means.dim() == 3 or g.quats.dim() == 3 or g.scales.dim() == 3
        means, quats, scales = (
            t.expand(C, *t.shape[-2:]) if per_camera and t.dim() == 2 else t
            for t in (g.means, g.quats, g.scales)
        )
        spec = {
            "ops": self, "settings": settings, "N": N, "per_camera": per_camera,
            "sh_per_camera": sh is not None and sh.dim() == 4,
            "opacities_per_camera": g.opacities.dim() == 2,
            "rigged": fr is not None, "F": fr.sqrt_areas.shape[1] if fr is not None else 0,
            "cams_per_pose": C // fr.sqrt_areas.shape[0] if fr is not None else 1,
        }  # fmt: skip
        frame_tensors = tuple(_f32(t) for t in fr) if fr is not None else (None, None, None)
        radii, means2d, depths, conics, sh_colors = _Projection.apply(
            _f32(means), _f32(quats), _f32(scales), sh, *frame_tensors, _f32(g.opacities).detach(),
            _f32(viewmats), _f32(Ks), _i32(g.face_ids) if g.face_ids is not None else None, spec,
        )  # fmt: skip
        if sh is not None:
            colors = sh_colors
        else:
            cols = _f32(g.colors)
            colors = cols if cols.dim() == 3 else cols.expand(C, N, cols.shape[-1])
        return Projected(radii, means2d, depths, conics, colors)

    def isect_tiles(
        self, means2d: Tensor, radii: Tensor, depths: Tensor, conics: Tensor, opacities: Tensor,
        settings: RasterSettings,
    ) -> Intersections:  # fmt: skip
        """Tile intersections of projected Gaussians ``[C,N,·]``, sorted by camera, tile, depth.

        The count is summed in int64; more than 2^31-1 intersections raise an ``OverflowError``.
        On CUDA the total is the render's one device->host read, which also carries the
        deferred input checks: the depth bits are sorted first, the intersections emitted in
        depth order and their 32-bit tile keys radix-sorted over the bits in use (stable). The
        CPU counts the tile boxes, runs the exact test once while filling each Gaussian's box
        slots, and sorts by a radix sort of the depths and a counting sort by tile.
        """
        dev = self._device(means2d=means2d, radii=radii, depths=depths, conics=conics, opacities=opacities)
        C, N = depths.shape
        if C * N > INT32_MAX:
            raise OverflowError(
                f"{C} cameras x {N} Gaussians = {C * N} exceeds the int32 range of the intersection "
                "ids; render fewer cameras per call"
            )
        m2, dep, con, opac = (_f32(t).detach() for t in (means2d, depths, conics, opacities))
        tw, th = settings.tile_w, settings.tile_h
        counts = torch.empty(C * N, dtype=torch.int32, device=dev)
        offsets = torch.empty(C, th, tw, dtype=torch.int32, device=dev)
        rec = self.record(
            "IsectArgs", dev, settings, C=C, N=N, tile_w=tw, tile_h=th, radii=radii.contiguous(),
            means2d=m2, depths=dep, conics=con, opacities=opac, counts=counts, offsets=offsets,
        )  # fmt: skip
        if self.backend == "cpu":
            return Intersections(offsets, self._isect_cpu(rec, counts, dev))
        rec.set(order=self._depth_order(dep, dev))
        self.call("isect_count", rec)
        cum = torch.cumsum(counts, 0, dtype=torch.int64)
        n_isects = _checked_isects(self._read_total(cum, dev))
        keys = torch.empty(n_isects, dtype=torch.int32, device=dev)
        ids = torch.empty(n_isects, dtype=torch.int32, device=dev)
        rec.set(cum=cum, n_isects=n_isects, keys=keys, ids=ids)
        self.call("isect_fill", rec)
        sorted_keys, sorted_ids = self._radix_sort(keys, ids, (C * tw * th - 1).bit_length(), dev)
        rec.set(sorted_keys=sorted_keys)
        self.call("isect_offsets", rec)
        return Intersections(offsets, sorted_ids)

    def _isect_cpu(self, rec: Record, counts: Tensor, dev: torch.device) -> Tensor:
        """The CPU's flatten ids: box counts, one exact fill into the box slots, the sort."""
        tight = bool(rec.native.tight_tiles)
        rec.set(tight_tiles=False)
        self.call("isect_count", rec)  # box sizes: the slots
        rec.set(tight_tiles=tight)
        cum = torch.cumsum(counts, 0, dtype=torch.int64)
        slots = self._read_total(cum, dev)  # with the deferred checks, if any
        if slots > INT32_MAX:  # too many box slots: count exactly first (the exact test twice)
            self.call("isect_count", rec)
            cum = torch.cumsum(counts, 0, dtype=torch.int64)
            slots = _checked_isects(int(cum[-1]))
            rec.set(cum=cum, n_isects=slots)
            fill = "isect_fill"
        else:
            rec.set(cum=cum)
            fill = "isect_fill_box"
        keys = torch.empty(slots, dtype=torch.int32, device=dev)
        ids = torch.empty(slots, dtype=torch.int32, device=dev)
        rec.set(keys=keys, ids=ids)
        self.call(fill, rec)  # isect_fill_box writes the actual counts
        if fill == "isect_fill_box":
            n_isects = _checked_isects(int(counts.sum(dtype=torch.int64)) if counts.numel() else 0)
        else:
            n_isects = slots
        sorted_ids = torch.empty(n_isects, dtype=torch.int32, device=dev)
        rec.set(n_isects=n_isects, sorted_ids=sorted_ids)
        self.call("isect_sort", rec)
        return sorted_ids

    def _radix_sort(
        self, keys: Tensor, values: Tensor, bits: int, dev: torch.device
    ) -> tuple[Tensor, Tensor]:
        """(keys, values) int32 sorted by the keys' low ``bits`` bits (stable; CUDA)."""
        keys_out, values_out = torch.empty_like(keys), torch.empty_like(values)
        rec = self.record(
            "SortArgs", dev, n=keys.numel(), begin_bit=0, end_bit=max(1, bits), keys_in=keys,
            keys_out=keys_out, values_in=values, values_out=values_out,
        )  # fmt: skip
        if keys.numel():
            temp = torch.empty(int(self.call("radix_sort_temp_bytes", rec)), dtype=torch.uint8, device=dev)
            rec.set(temp=temp, temp_bytes=temp.numel())
            self.call("radix_sort", rec)
        return keys_out, values_out

    def _depth_order(self, depths: Tensor, dev: torch.device) -> Tensor:
        """``[C*N]`` int32 element indices by increasing depth bits, ties by index (CUDA)."""
        ids = torch.arange(depths.numel(), dtype=torch.int32, device=dev)
        return self._radix_sort(depths.reshape(-1).view(torch.int32), ids, 32, dev)[1]

    def _read_total(self, cum: Tensor, dev: torch.device) -> int:
        """The last entry of ``cum`` (0 when empty), read with the deferred check flags in one
        transfer; raises the first flagged input error.

        On CUDA this is the render's one wait for the GPU: an asynchronous copy into pinned host
        memory and a CUDA event's synchronize (so ``torch.cuda.set_sync_debug_mode("error")``
        around a render only flags unintended synchronisations, not this one).
        """
        total = cum[-1:] if cum.numel() else torch.zeros(1, dtype=torch.int64, device=dev)
        flags = self.checks.device_flags() if self.checks is not None else None
        values = total if flags is None else torch.cat([total, flags])
        if dev.type == "cuda":
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            host.copy_(values, non_blocking=True)
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(dev))
            done.synchronize()
            values = host
        read = values.tolist()
        if flags is not None:
            self.checks.raise_flagged(read[1:])  # type: ignore[union-attr]
        return int(read[0])

    def rasterize_to_pixels(
        self, means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, backgrounds: Tensor | None,
        isect: Intersections, settings: RasterSettings, absgrad: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Alpha-blend each tile's Gaussians front to back: ``[C,H,W,CH]``, ``[C,H,W,1]``.

        ``absgrad`` (``[C,N,2]`` zeros) receives the summed absolute per-pixel gradients of
        ``means2d`` during backward (densification).
        """
        self._device(
            means2d=means2d, conics=conics, colors=colors, opacities=opacities, backgrounds=backgrounds,
            offsets=isect.offsets, flatten_ids=isect.flatten_ids, absgrad=absgrad,
        )  # fmt: skip
        bg = _f32(backgrounds) if backgrounds is not None else None
        return _RasterizeToPixels.apply(
            _f32(means2d), _f32(conics), _f32(colors), _f32(opacities), bg, isect.offsets.contiguous(),
            isect.flatten_ids.contiguous(), self, settings, absgrad,
        )  # fmt: skip


# ----------------------------------------------------------------------------- autograd
