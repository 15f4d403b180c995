"""Backend selection: which of the CUDA, C++ CPU or PyTorch backends runs an op, and why not.

``backend`` (the public functions' argument, :mod:`rigged_gaussians.api`):

- ``"auto"``: ``"cuda"`` for CUDA tensors when :func:`cuda_available`, else ``"cpu"`` (the C++
  backend) for CPU tensors; without a built ``rigged_gaussians._C``, or for CUDA tensors the build
  cannot run (no CUDA backend, a driver older than its runtime, no code for the GPU's compute
  capability), ``"torch"`` with one warning that says why and how to build the fast backend.
- ``"cpu"``, ``"cuda"``: that backend, or an error naming what is missing and the fix.
- ``"torch"``: :mod:`rigged_gaussians.reference`, pure PyTorch on any device.

:func:`build_info` and :func:`cuda_available` are public (re-exported by ``rigged_gaussians`` and
``rigged_gaussians.api``); the rest is used by the public functions of :mod:`rigged_gaussians.api`.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any, Literal

import torch

from rigged_gaussians import reference
from rigged_gaussians._checks import Checks
from rigged_gaussians._glue import NativeOps

__all__ = ["Backend", "build_info", "cuda_available"]

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
