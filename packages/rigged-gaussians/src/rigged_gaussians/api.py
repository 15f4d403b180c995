"""Public operations: argument checks, then dispatch to the CUDA, C++ CPU or PyTorch backend.

``backend``:

- ``"auto"`` (default): ``"cuda"`` for CUDA tensors when :func:`cuda_available`, else ``"cpu"``
  (the C++ backend) for CPU tensors. Without a built ``rigged_gaussians._C`` (a source checkout),
  or for CUDA tensors without a CUDA build, it falls back to ``"torch"`` with one warning.
- ``"cpu"``: the C++ backend (CPU tensors; computes in float32).
- ``"cuda"``: the CUDA backend (CUDA tensors; computes in float32).
- ``"torch"``: :mod:`rigged_gaussians.reference`, pure PyTorch in the inputs' dtype, any device.

Inputs are validated (shapes, dtypes float32/float64, one device, index ranges, image size; see
:mod:`rigged_gaussians._checks`). NaN policy: non-finite floating inputs raise a ``ValueError``
naming the argument; ``check_finite=False`` skips that scan (it costs a device sync on CUDA).
"""

from __future__ import annotations

import warnings
from functools import cache
from types import ModuleType
from typing import Any, Literal

import torch
from torch import Tensor

from rigged_gaussians import _checks, reference
from rigged_gaussians._checks import ShapeChecker, check_finite, check_index_range
from rigged_gaussians._types import Deformed, RasterMeta, TriangleFrames

__all__ = ["Backend", "cuda_available", "deform", "rasterize", "render_rigged", "triangle_frames"]

Backend = Literal["auto", "cpu", "cuda", "torch"]
_BACKENDS = ("auto", "cpu", "cuda", "torch")

_BUILD_HINT = (
    "build it with `pip install -e packages/rigged-gaussians` (C++ CPU backend; add RG_CUDA=ON "
    "and nvcc on PATH for the CUDA backend)"
)
_warned_fallback = False


@cache
def _extension() -> ModuleType | None:
    """``rigged_gaussians._C`` or ``None`` when it is not built."""
    try:
        from rigged_gaussians import _C  # noqa: N814
    except ImportError:
        return None
    return _C


@cache
def _native_cuda_devices(ext: ModuleType) -> int:
    """CUDA devices the extension's own (static) CUDA runtime sees: 0 when the driver is missing
    or older than that runtime, even where torch (with its own runtime) sees a GPU."""
    count = getattr(ext, "cuda_device_count", None)
    return int(count()) if count is not None else 0


def _cuda_unavailable_reason() -> str | None:
    """Why the CUDA backend cannot run here, or ``None`` when it can."""
    ext = _extension()
    if ext is None:
        return "the compiled extension rigged_gaussians._C is not built"
    if not hasattr(ext, "rasterize_to_pixels_fwd_cuda"):
        return "rigged_gaussians._C was built without the CUDA backend"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if _native_cuda_devices(ext) == 0:
        return (
            "rigged_gaussians._C's CUDA runtime finds no device (is the NVIDIA driver older than the "
            "CUDA toolkit the extension was built with?)"
        )
    return None


def cuda_available() -> bool:
    """True when the CUDA backend can run: ``_C`` was built with the CUDA kernels, torch sees a
    CUDA device and the extension's own CUDA runtime finds one too (it fails where the driver is
    older than the toolkit the extension was built with)."""
    return _cuda_unavailable_reason() is None


def _warn_fallback(reason: str) -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f"rigged_gaussians: {reason}; using the slow pure-PyTorch reference (backend='torch'). "
            f"To get the fast backend, {_BUILD_HINT}.",
            RuntimeWarning,
            stacklevel=4,  # the caller of the public function
        )


def _resolve(backend: object, device: torch.device) -> str:
    """The concrete backend ("cpu", "cuda" or "torch") for ``backend`` and the inputs' ``device``."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(map(repr, _BACKENDS))}, got {backend!r}")
    ext = _extension()
    if backend == "auto":
        if device.type == "cuda":
            reason = _cuda_unavailable_reason()
            if reason is None:
                return "cuda"
            _warn_fallback(f"CUDA tensors, but {reason}")
            return "torch"
        if device.type == "cpu" and ext is not None:
            return "cpu"
        if ext is None:
            _warn_fallback("the compiled extension rigged_gaussians._C is not built")
        return "torch"
    if backend == "cpu":
        if ext is None:
            raise RuntimeError(f"backend='cpu' needs the compiled rigged_gaussians._C; {_BUILD_HINT}")
        if device.type != "cpu":
            raise ValueError(f"backend='cpu' needs CPU tensors, got tensors on {device}; use backend='auto'")
    if backend == "cuda":
        reason = _cuda_unavailable_reason()
        if reason is not None:
            raise RuntimeError(
                f"backend='cuda' needs rigged_gaussians._C built with CUDA and a visible GPU, but {reason}; "
                f"{_BUILD_HINT}"
            )
        if device.type != "cuda":
            raise ValueError(f"backend='cuda' needs CUDA tensors, got tensors on {device}")
    return str(backend)


def _module(name: str) -> Any:
    if name == "cpu":
        from rigged_gaussians import _cpu

        return _cpu
    from rigged_gaussians import _cuda

    return _cuda


def _finite(enabled: bool, **tensors: Tensor | None) -> None:
    if enabled:
        for name, t in tensors.items():
            check_finite(name, t)


# ----------------------------------------------------------------------------- frames / deform
def triangle_frames(
    vertices: Tensor, faces: Tensor, backend: Backend = "auto", check_finite: bool = True
) -> TriangleFrames:
    """Per-triangle frames of ``vertices [B,V,3]`` and ``faces [F,3]`` (int32/int64).

    Face ``(v0, v1, v2)``: centroid ``T = (v0+v1+v2)/3``, rotation ``R = [t | n | b]`` (columns:
    normalised edge ``v1-v0``, unit normal, ``t x n``), ``sqrt_area = sqrt(max(area, 1e-12))``.
    Zero-area triangles give finite (degenerate) frames. Differentiable w.r.t. ``vertices``.

    Returns:
        ``TriangleFrames(centroids [B,F,3], rotations [B,F,3,3], sqrt_areas [B,F])``.
    """
    sc = ShapeChecker()
    sc.tensor("vertices", vertices, ("B", "V", 3))
    sc.tensor("faces", faces, ("F", 3), kind="int")
    check_index_range("faces", faces, sc.dim("V"), f"V={sc.dim('V')} vertices")
    _finite(check_finite, vertices=vertices)
    bk = _resolve(backend, vertices.device)
    if bk == "torch":
        return reference.triangle_frames(vertices, faces)
    fn = getattr(_module(bk), f"triangle_frames_{bk}")
    return TriangleFrames(*fn(vertices, faces))


def deform(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    face_ids: Tensor,
    frames: TriangleFrames | tuple[Tensor, Tensor, Tensor],
    backend: Backend = "auto",
    check_finite: bool = True,
) -> Deformed:
    """Deform local Gaussians bound to triangles by the frames of ``B`` poses.

    Args:
        means: ``[N,3]`` local means (in units of the triangle's ``sqrt(area)``).
        quats: ``[N,4]`` local wxyz quaternions.
        log_scales: ``[N,3]`` local log-scales.
        face_ids: ``[N]`` int, the triangle of each Gaussian, in ``[0, F)``.
        frames: :class:`TriangleFrames` (or the tuple ``(centroids, rotations, sqrt_areas)``).

    Returns:
        ``Deformed(means [B,N,3], quats [B,N,4], scales [B,N,3])`` with ``mu' = sqrt(S) R mu + T``,
        ``q' = quat(R) (x) q`` and linear ``s' = sqrt(S) exp(log_s)``; differentiable w.r.t. the
        local parameters and the frames.
    """
    if not isinstance(frames, TriangleFrames):
        if not (isinstance(frames, tuple | list) and len(frames) == 3):
            raise TypeError(
                "frames: expected TriangleFrames or (centroids, rotations, sqrt_areas), got "
                f"{type(frames).__name__}"
            )
        frames = TriangleFrames(*frames)
    sc = ShapeChecker()
    sc.tensor("means", means, ("N", 3))
    sc.tensor("quats", quats, ("N", 4))
    sc.tensor("log_scales", log_scales, ("N", 3))
    sc.tensor("face_ids", face_ids, ("N",), kind="int")
    sc.tensor("frames.centroids", frames.centroids, ("B", "F", 3))
    sc.tensor("frames.rotations", frames.rotations, ("B", "F", 3, 3))
    sc.tensor("frames.sqrt_areas", frames.sqrt_areas, ("B", "F"))
    check_index_range("face_ids", face_ids, sc.dim("F"), f"F={sc.dim('F')} triangles")
    _finite(
        check_finite, means=means, quats=quats, log_scales=log_scales, **{
            "frames.centroids": frames.centroids, "frames.rotations": frames.rotations,
            "frames.sqrt_areas": frames.sqrt_areas,
        },
    )  # fmt: skip
    bk = _resolve(backend, means.device)
    if bk == "torch":
        return reference.deform(means, quats, log_scales, face_ids, frames)
    fn = getattr(_module(bk), f"deform_{bk}")
    return Deformed(*fn(means, quats, log_scales, face_ids, *frames))


# ----------------------------------------------------------------------------- rendering
def _check_render_options(
    C: int,
    width: object,
    height: object,
    sh_degree: object,
    near_plane: object,
    far_plane: object,
    eps2d: object,
    radius_clip: object,
    tile_size: object,
) -> tuple[int, int, int | None, int]:
    ts = _checks.check_tile_size(tile_size)
    w, h = _checks.check_image(width, height, C, ts)
    deg = _checks.check_sh_degree(sh_degree)
    near = _checks.check_positive_float("near_plane", near_plane)
    far = _checks.check_positive_float("far_plane", far_plane)
    if far <= near:
        raise ValueError(f"far_plane: expected > near_plane={near}, got {far}")
    _checks.check_positive_float("eps2d", eps2d, allow_zero=True)
    _checks.check_positive_float("radius_clip", radius_clip, allow_zero=True)
    return w, h, deg, ts


def _check_colors(sc: ShapeChecker, colors: Tensor, sh_degree: int | None, per_camera: bool) -> int:
    """Colours ``[.,N,D]`` (D in 1..3) or SH ``[.,N,K,3]`` (K >= (d+1)^2); returns D."""
    lead: tuple[str, ...] = ("C", "N") if per_camera else ("N",)
    if sh_degree is None:
        pats = [(*lead, "D")] + ([("N", "D")] if per_camera else [])
        sc.tensor("colors", colors, *pats)
        D = sc.dim("D")
        if not 1 <= D <= 3:
            raise ValueError(
                f"colors: expected 1..3 channels [N,D] (or SH [N,K,3] with sh_degree), got "
                f"{list(colors.shape)}"
            )
        return D
    pats = [(*lead, "K", 3)] + ([("N", "K", 3)] if per_camera else [])
    sc.tensor("colors", colors, *pats)
    need = (sh_degree + 1) ** 2
    if sc.dim("K") < need:
        raise ValueError(
            f"colors: sh_degree={sh_degree} needs at least {need} SH coefficients [N,{need},3], "
            f"got {list(colors.shape)}"
        )
    return 3


def rasterize(
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
    backend: Backend = "auto",
    absgrad: Tensor | None = None,
    check_finite: bool = True,
) -> tuple[Tensor, Tensor, RasterMeta]:
    """Render world-space 3D Gaussians to ``C`` cameras (gsplat's ``rasterization`` conventions).

    Args:
        means: ``[N,3]`` or per camera ``[C,N,3]`` world means.
        quats: ``[N,4]`` or ``[C,N,4]`` wxyz quaternions (normalised inside).
        scales: ``[N,3]`` or ``[C,N,3]`` linear scales.
        opacities: ``[N]`` or ``[C,N]`` activated opacities in 0..1.
        colors: ``[N,D]`` / ``[C,N,D]`` (D <= 3, used as given) or, with ``sh_degree``, SH
            coefficients ``[N,K,3]`` / ``[C,N,K,3]``, ``K >= (sh_degree+1)^2`` (colour
            ``max(sum c Y + 0.5, 0)``).
        viewmats: ``[C,4,4]`` world->camera (OpenCV: x right, y down, z forward).
        Ks: ``[C,3,3]`` pinhole intrinsics (pixel centres at +0.5).
        width, height: image size in pixels.
        backgrounds: ``[C,D]`` colour behind the Gaussians (``rgb += T * background``).
        near_plane, far_plane: depth range kept; eps2d: 2D low-pass added to the covariance;
        radius_clip: cull Gaussians whose radii are both ``<= radius_clip`` pixels;
        tile_size: 8, 16 (default), 24 or 32.
        absgrad: optional ``[C,N,2]`` zeros that receive the summed absolute per-pixel gradients
            of the 2D means during backward.

    Returns:
        ``rgb [C,H,W,D]``, ``alpha [C,H,W,1]`` and :class:`RasterMeta` (expected depth, radii,
        means2d — call ``meta.means2d.retain_grad()`` before backward for its gradient —,
        depths, visible).
    """
    sc = ShapeChecker()
    sc.tensor("viewmats", viewmats, ("C", 4, 4))
    C = sc.dim("C")
    sc.tensor("means", means, ("N", 3), ("C", "N", 3))
    sc.tensor("quats", quats, ("N", 4), ("C", "N", 4))
    sc.tensor("scales", scales, ("N", 3), ("C", "N", 3))
    sc.tensor("opacities", opacities, ("N",), ("C", "N"))
    _check_colors(sc, colors, _checks.check_sh_degree(sh_degree), True)
    sc.tensor("Ks", Ks, ("C", 3, 3))
    if backgrounds is not None:
        sc.tensor("backgrounds", backgrounds, ("C", 3 if sh_degree is not None else "D"))
    if absgrad is not None:
        sc.tensor("absgrad", absgrad, ("C", "N", 2))
    w, h, deg, ts = _check_render_options(
        C, width, height, sh_degree, near_plane, far_plane, eps2d, radius_clip, tile_size
    )
    _finite(
        check_finite, means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
        viewmats=viewmats, Ks=Ks, backgrounds=backgrounds,
    )  # fmt: skip
    bk = _resolve(backend, means.device)
    kw = dict(
        sh_degree=deg, backgrounds=backgrounds, near_plane=float(near_plane), far_plane=float(far_plane),
        eps2d=float(eps2d), radius_clip=float(radius_clip), tile_size=ts, absgrad=absgrad,
    )  # fmt: skip
    args = (means, quats, scales, opacities, colors, viewmats, Ks, w, h)
    if bk == "torch":
        return reference.rasterize(*args, **kw)
    rgb, alpha, meta = getattr(_module(bk), f"rasterize_{bk}")(*args, **kw)
    return rgb, alpha, RasterMeta.from_dict(meta, w, h)


def render_rigged(
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
    backend: Backend = "auto",
    absgrad: Tensor | None = None,
    check_finite: bool = True,
) -> tuple[Tensor, Tensor, RasterMeta]:
    """Render local Gaussians bound to mesh triangles, posed ``B`` times, to ``C`` cameras each.

    Triangle frames, deformation and projection are fused (the CUDA/C++ backends never write the
    world Gaussians): world mean ``sqrt(S) R mu + T``, rotation ``R R(q)``, scale
    ``sqrt(S) exp(log_s)``; gradients flow to the local parameters and to ``vertices``.

    Args:
        vertices: ``[B,V,3]`` posed mesh vertices; faces: ``[F,3]`` int.
        means, quats, log_scales: ``[N,3]``, ``[N,4]`` (wxyz), ``[N,3]`` local parameters.
        opacities: ``[N]`` activated; colors: ``[N,D]`` or SH ``[N,K,3]`` with ``sh_degree``.
        face_ids: ``[N]`` int in ``[0, F)``.
        viewmats: ``[B,C,4,4]`` world->camera; Ks: ``[B,C,3,3]``; backgrounds: ``[B,C,D]``.
        absgrad: optional ``[B*C,N,2]`` zeros (see :func:`rasterize`).
        Other options as :func:`rasterize`.

    Returns:
        ``rgb [B,C,H,W,D]``, ``alpha [B,C,H,W,1]`` and :class:`RasterMeta` whose per-camera
        entries are flattened over ``B*C`` (camera ``b*C + c``); ``meta.depth`` is ``[B,C,H,W,1]``.
    """
    sc = ShapeChecker()
    sc.tensor("vertices", vertices, ("B", "V", 3))
    sc.tensor("faces", faces, ("F", 3), kind="int")
    sc.tensor("means", means, ("N", 3))
    sc.tensor("quats", quats, ("N", 4))
    sc.tensor("log_scales", log_scales, ("N", 3))
    sc.tensor("opacities", opacities, ("N",))
    _check_colors(sc, colors, _checks.check_sh_degree(sh_degree), False)
    sc.tensor("face_ids", face_ids, ("N",), kind="int")
    sc.tensor("viewmats", viewmats, ("B", "C", 4, 4))
    sc.tensor("Ks", Ks, ("B", "C", 3, 3))
    if backgrounds is not None:
        sc.tensor("backgrounds", backgrounds, ("B", "C", 3 if sh_degree is not None else "D"))
    B, C = sc.dim("B"), sc.dim("C")
    if absgrad is not None:
        sc.dims["BC"] = (B * C, "viewmats")
        sc.tensor("absgrad", absgrad, ("BC", "N", 2))
    check_index_range("faces", faces, sc.dim("V"), f"V={sc.dim('V')} vertices")
    check_index_range("face_ids", face_ids, sc.dim("F"), f"F={sc.dim('F')} triangles")
    w, h, deg, ts = _check_render_options(
        B * C, width, height, sh_degree, near_plane, far_plane, eps2d, radius_clip, tile_size
    )
    _finite(
        check_finite, vertices=vertices, means=means, quats=quats, log_scales=log_scales,
        opacities=opacities, colors=colors, viewmats=viewmats, Ks=Ks, backgrounds=backgrounds,
    )  # fmt: skip
    bk = _resolve(backend, means.device)
    kw = dict(
        sh_degree=deg, backgrounds=backgrounds, near_plane=float(near_plane), far_plane=float(far_plane),
        eps2d=float(eps2d), radius_clip=float(radius_clip), tile_size=ts, absgrad=absgrad,
    )  # fmt: skip
    args = (vertices, faces, means, quats, log_scales, opacities, colors, face_ids, viewmats, Ks, w, h)
    if bk == "torch":
        return reference.render_rigged(*args, **kw)
    rgb, alpha, meta = getattr(_module(bk), f"render_rigged_{bk}")(*args, **kw)
    return rgb, alpha, RasterMeta.from_dict(meta, w, h)
