"""Public operations: argument checks, then dispatch to the CUDA, C++ CPU or PyTorch backend.

``backend``:

- ``"auto"`` (default): ``"cuda"`` for CUDA tensors when :func:`cuda_available`, else ``"cpu"``
  (the C++ backend) for CPU tensors. Without a built ``rigged_gaussians._C`` (a source checkout),
  or for CUDA tensors without a CUDA build or on a GPU whose compute capability the kernels were
  not compiled for (``CMAKE_CUDA_ARCHITECTURES``), it falls back to ``"torch"`` (on the tensors'
  device) with one warning that says why and how to build the fast backend.
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

import re
import warnings
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any, Literal

import torch
from torch import Tensor

from rigged_gaussians import _checks, _pipeline, reference
from rigged_gaussians._checks import Checks, ShapeChecker
from rigged_gaussians._glue import NativeOps
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

Backend = Literal["auto", "cpu", "cuda", "torch"]
_BACKENDS = ("auto", "cpu", "cuda", "torch")

_BUILD_HINT = (
    "build it with `pip install -e packages/rigged-gaussians` (C++ CPU backend; add RG_CUDA=ON "
    "and nvcc on PATH for the CUDA backend)"
)
_CUDA_BUILD_HINT = (
    "reinstall it with the CUDA backend: put nvcc on PATH (or set CMAKE_CUDA_COMPILER) and run "
    "`RG_CUDA=ON pip install -v packages/rigged-gaussians` (RG_CUDA=ON fails loudly instead of "
    "building CPU-only; -v shows the build log)"
)
_REINSTALL_FOR_ARCH = (
    "CMAKE_CUDA_ARCHITECTURES={arch} RG_CUDA=ON pip install -v --force-reinstall --no-deps "
    "packages/rigged-gaussians"
)
_ARCH_MARK = "CMAKE_CUDA_ARCHITECTURES"
_warned_fallback = False


@dataclass(frozen=True)
class _CudaArch:
    """One entry of ``CMAKE_CUDA_ARCHITECTURES`` (CMake syntax): ``86-real`` is machine code
    (SASS) for sm_86, ``90-virtual`` PTX of compute_90, ``90`` both; a suffix ``a`` (``90a``) is
    code for that exact GPU only, ``f`` (``100f``) for its family."""

    major: int
    minor: int
    sass: bool
    ptx: bool
    exact: bool  # arch-specific ("a"): runs only on this major.minor

    @classmethod
    def parse(cls, entry: str) -> _CudaArch | None:
        """The entry, or ``None`` for what cannot be judged here (``native``, ``all``...)."""
        m = re.fullmatch(r"(\d{2,3})([af]?)(-real|-virtual)?", entry.strip())
        if m is None:
            return None
        cc, suffix, kind = int(m.group(1)), m.group(2), m.group(3)
        return cls(cc // 10, cc % 10, sass=kind != "-virtual", ptx=kind != "-real", exact=suffix == "a")

    def runs_on(self, major: int, minor: int) -> bool:
        """Whether a device of compute capability ``major.minor`` can run this code: SASS runs
        on the same major version at an equal or higher minor, PTX is JIT-compiled by the driver
        for any equal or newer device; arch-specific code only on its own GPU."""
        if self.exact:
            return (major, minor) == (self.major, self.minor)
        if self.sass and major == self.major and minor >= self.minor:
            return True
        return self.ptx and (major, minor) >= (self.major, self.minor)


@cache
def _built_cuda_architectures(ext: ModuleType) -> tuple[str, list[_CudaArch] | None]:
    """``CMAKE_CUDA_ARCHITECTURES`` of the build ``ext`` (``build_info()``, CMake's ``;``
    separators) and the architectures it lists, or ``None`` when unknown (no CUDA build, or an
    entry such as ``native`` that names no number)."""
    info = getattr(ext, "build_info", None)
    text = str((dict(info()) if info is not None else {}).get("cuda_architectures") or "")
    entries = [e for e in re.split(r"[,;]", text) if e.strip()]
    archs = [_CudaArch.parse(e) for e in entries]
    listed = ";".join(e.strip() for e in entries)
    if not archs or any(a is None for a in archs):
        return listed, None
    return listed, [a for a in archs if a is not None]


@cache
def _device_capability(index: int) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(index))  # type: ignore[return-value]


def _arch_mismatch(ext: ModuleType, index: int) -> str | None:
    """Why ``cuda:index`` cannot run the kernels of ``ext`` (no code for its compute
    capability), or ``None`` when it can or the build's architectures are unknown."""
    built, archs = _built_cuda_architectures(ext)
    if archs is None:
        return None
    major, minor = _device_capability(index)
    if any(a.runs_on(major, minor) for a in archs):
        return None
    return (
        f"cuda:{index} ({torch.cuda.get_device_name(index)}) has compute capability {major}.{minor} "
        f"but rigged_gaussians._C's CUDA kernels were built for {_ARCH_MARK}={built} "
        "(no machine code for it and no PTX it could compile); rebuild for this GPU with "
        f"`{_REINSTALL_FOR_ARCH.format(arch=f'{major}{minor}')}`"
    )


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


def build_info() -> dict[str, Any]:
    """What ``rigged_gaussians._C`` was built with and what it finds at run time.

    Keys: ``extension`` (False without a built ``_C``: every op runs on the reference),
    ``backends`` (``["cpu"]`` or ``["cpu", "cuda"]``), ``cxx_compiler``, ``cpu_native``,
    ``cpu_simd`` (the AVX2 rasterizer is used), ``pybind11``, ``cuda_compiler``,
    ``cuda_architectures`` (CMake's syntax, e.g. ``"75-real,80-real,86-real,89-real,90"``),
    ``cuda_skipped`` (why a build has no CUDA backend), ``cuda_runtime`` and ``cuda_driver``
    versions (``""`` when absent) and ``cuda_devices`` (seen by the extension's own CUDA runtime).
    """
    ext = _extension()
    if ext is None:
        return {"extension": False, "backends": [], "cuda_skipped": "rigged_gaussians._C is not built"}
    info = getattr(ext, "build_info", None)
    return {"extension": True, **(dict(info()) if info is not None else {})}


def _cuda_unavailable_reason(device: torch.device | None = None) -> str | None:
    """Why the CUDA backend cannot run here (on ``device``, default the current CUDA device), or
    ``None`` when it can."""
    ext = _extension()
    if ext is None:
        return "the compiled extension rigged_gaussians._C is not built"
    if not hasattr(ext, "rasterize_to_pixels_fwd_cuda"):
        skipped = build_info().get("cuda_skipped") or "unknown reason"
        return f"rigged_gaussians._C was built without the CUDA backend (build: {skipped})"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if _native_cuda_devices(ext) == 0:
        return (
            "rigged_gaussians._C's CUDA runtime finds no device (is the NVIDIA driver older than the "
            "CUDA toolkit the extension was built with?)"
        )
    index = device.index if device is not None and device.index is not None else None
    return _arch_mismatch(ext, torch.cuda.current_device() if index is None else index)


def cuda_available(device: torch.device | str | int | None = None) -> bool:
    """True when the CUDA backend can run on ``device`` (default: the current CUDA device):
    ``_C`` was built with the CUDA kernels, torch sees a CUDA device, the extension's own CUDA
    runtime finds one too (it fails where the driver is older than the toolkit the extension was
    built with) and the kernels were compiled for the device's compute capability (machine code
    for its architecture, or PTX of an older one; ``build_info()["cuda_architectures"]``)."""
    dev = torch.device("cuda", device) if isinstance(device, int) else device
    dev = torch.device(dev) if dev is not None else None
    if dev is not None and dev.type != "cuda":
        raise ValueError(f"device: expected a CUDA device (cuda, cuda:N or an index), got {dev}")
    return _cuda_unavailable_reason(dev) is None


def _warn_fallback(reason: str, hint: str = _BUILD_HINT) -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        fix = f" To get the fast backend, {hint}." if hint else ""
        warnings.warn(
            f"rigged_gaussians: {reason}; using the slow pure-PyTorch reference (backend='torch').{fix}",
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
            reason = _cuda_unavailable_reason(device)
            if reason is None:
                return "cuda"
            if _ARCH_MARK in reason:  # the reason names the rebuild for this GPU
                _warn_fallback(f"CUDA tensors, but {reason}", "")
            else:
                hint = _CUDA_BUILD_HINT if ext is not None and torch.cuda.is_available() else _BUILD_HINT
                _warn_fallback(f"CUDA tensors, but {reason}", hint)
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
        reason = _cuda_unavailable_reason(device if device.type == "cuda" else None)
        if reason is not None and _ARCH_MARK in reason:
            raise RuntimeError(f"backend='cuda' cannot run here: {reason}")
        if reason is not None:
            raise RuntimeError(
                f"backend='cuda' needs rigged_gaussians._C built with CUDA and a visible GPU, but {reason}; "
                f"{_BUILD_HINT}"
            )
        if device.type != "cuda":
            raise ValueError(f"backend='cuda' needs CUDA tensors, got tensors on {device}")
    return str(backend)


def _ops(bk: str, checks: Checks | None = None) -> Any:
    """The render stages of backend ``bk``: the reference module or a :class:`NativeOps`."""
    return reference if bk == "torch" else NativeOps(bk, checks)


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
