"""Public operations: argument checks, then dispatch to the CUDA, C++ CPU or PyTorch backend.

``backend``:

- ``"auto"`` (default): ``"cuda"`` for CUDA tensors when :func:`cuda_available`, else ``"cpu"``
  (the C++ backend) for CPU tensors. Without a built ``rigged_gaussians._C`` (a source checkout),
  or for CUDA tensors without a CUDA build or on a GPU whose compute capability the kernels were
  not compiled for (``CMAKE_CUDA_ARCHITECTURES``), it falls back to ``"torch"`` (on the tensors'
  device) with one warning that says why and how to build the fast backend
  (:mod:`rigged_gaussians._backend` decides).
- ``"cpu"``: the C++ backend (CPU tensors; computes in float32).
- ``"cuda"``: the CUDA backend (CUDA tensors on one device, any index; computes in float32).
- ``"torch"``: :mod:`rigged_gaussians.reference`, pure PyTorch in the inputs' dtype, any device.

Inputs are validated (shapes, dtypes float32/float64, one device, index ranges, image size, the
render options of :class:`rigged_gaussians.RasterSettings`; see :mod:`rigged_gaussians._checks`).
NaN policy: non-finite floating inputs raise a ``ValueError`` naming the argument;
``check_finite=False`` skips that scan. On CUDA, ``rasterize`` and ``render_rigged`` make one
device synchronisation (the intersection count, which also carries the input checks);
``triangle_frames`` and ``deform`` check before running (one synchronisation per checked tensor).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rigged_gaussians import _checks, _pipeline
from rigged_gaussians._backend import Backend, _ops, _resolve, build_info, cuda_available
from rigged_gaussians._checks import Checks, ShapeChecker
from rigged_gaussians._types import Deformed, Gaussians, RasterMeta, TriangleFrames
from rigged_gaussians.settings import RasterSettings

__all__ = [
    "Backend",
    "build_info",
    "cuda_available",
    "deform",
    "rasterize",
    "render_rigged",
    "triangle_frames",
]


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
    checks = Checks(vertices.device, deferred=False)
    checks.index_range("faces", faces, sc.dim("V"), f"V={sc.dim('V')} vertices")
    if check_finite:
        checks.finite(vertices=vertices)
    return _ops(_resolve(backend, vertices.device)).triangle_frames(vertices, faces)


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
    checks = Checks(means.device, deferred=False)
    checks.index_range("face_ids", face_ids, sc.dim("F"), f"F={sc.dim('F')} triangles")
    if check_finite:
        checks.finite(
            means=means, quats=quats, log_scales=log_scales, **{
                "frames.centroids": frames.centroids, "frames.rotations": frames.rotations,
                "frames.sqrt_areas": frames.sqrt_areas,
            },
        )  # fmt: skip
    return _ops(_resolve(backend, means.device)).deform(means, quats, log_scales, face_ids, frames)


# ----------------------------------------------------------------------------- rendering
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


def _render_setup(
    device: torch.device,
    cameras: int,
    width: object,
    height: object,
    options: dict[str, Any],
    backend: object,
    check_finite: bool,
    finite: dict[str, Tensor | None],
) -> tuple[str, RasterSettings, Checks]:
    """The backend, the validated settings and the call's checks (finite ones registered)."""
    settings = RasterSettings.from_options(width, height, options).validated(cameras)
    bk = _resolve(backend, device)
    checks = Checks(device, deferred=bk == "cuda")
    if check_finite:
        checks.finite(**finite)
    return bk, settings, checks


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
    backend: Backend = "auto",
    absgrad: Tensor | None = None,
    check_finite: bool = True,
    **options: Any,
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
        absgrad: optional ``[C,N,2]`` zeros that receive the summed absolute per-pixel gradients
            of the 2D means during backward.
        **options: the other fields of :class:`rigged_gaussians.RasterSettings`: ``near_plane``,
            ``far_plane``, ``eps2d``, ``radius_clip``, ``tile_size``, ``depth`` (render the
            expected depth into ``meta.depth``; off by default), ``tight_tiles``.

    Returns:
        ``rgb [C,H,W,D]``, ``alpha [C,H,W,1]`` and :class:`RasterMeta` (radii, means2d — call
        ``meta.means2d.retain_grad()`` before backward for its gradient —, depths, visible, and
        the expected depth when asked).
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
    finite = dict(
        means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, viewmats=viewmats,
        Ks=Ks, backgrounds=backgrounds,
    )  # fmt: skip
    bk, settings, checks = _render_setup(
        means.device, C, width, height, dict(options, sh_degree=sh_degree), backend, check_finite, finite
    )
    g = Gaussians(means, quats, scales, opacities, colors)
    return _pipeline.render(_ops(bk, checks), g, viewmats, Ks, backgrounds, settings, absgrad)


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
    backend: Backend = "auto",
    absgrad: Tensor | None = None,
    check_finite: bool = True,
    **options: Any,
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
        Other arguments and ``**options`` as :func:`rasterize`.

    Returns:
        ``rgb [B,C,H,W,D]``, ``alpha [B,C,H,W,1]`` and :class:`RasterMeta` whose per-camera
        entries are flattened over ``B*C`` (camera ``b*C + c``); ``meta.depth`` (with
        ``depth=True``) is ``[B,C,H,W,1]``.
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
    finite = dict(
        vertices=vertices, means=means, quats=quats, log_scales=log_scales, opacities=opacities,
        colors=colors, viewmats=viewmats, Ks=Ks, backgrounds=backgrounds,
    )  # fmt: skip
    bk, settings, checks = _render_setup(
        means.device, B * C, width, height, dict(options, sh_degree=sh_degree), backend, check_finite, finite
    )
    checks.index_range("faces", faces, sc.dim("V"), f"V={sc.dim('V')} vertices")
    checks.index_range("face_ids", face_ids, sc.dim("F"), f"F={sc.dim('F')} triangles")
    g = Gaussians(means, quats, log_scales, opacities, colors, face_ids=face_ids)
    return _pipeline.render_rigged(
        _ops(bk, checks), vertices, faces, g, viewmats, Ks, backgrounds, settings, absgrad
    )
