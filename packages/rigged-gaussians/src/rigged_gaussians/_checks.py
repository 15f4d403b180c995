"""Argument validation at the public boundary (``api.py``).

Every error is a ``ValueError`` (``TypeError`` for a wrong Python type) whose message starts with
the argument's name, then says what was given and what is expected, e.g.
``quats: expected shape [N,4] with N=10 (from means), got [10,3]``.

NaN policy: non-finite values (NaN, +-inf) in any floating input are rejected with a
``ValueError`` naming the argument (``check_finite=False`` in the public functions skips the scan,
in which case non-finite Gaussians are culled by the projection and never blended).

When the checks run (:class:`Checks`):

- CPU and ``torch`` backends, and ``triangle_frames`` / ``deform`` on every backend: before the
  operation (eager), naming the bad entry (how many, the first index and value). On CUDA this
  costs a device synchronisation per checked tensor.
- ``rasterize`` / ``render_rigged`` on CUDA: deferred, without a synchronisation. Each finite
  check is a device-side flag, and an index out of range is flagged by the kernel that meets it
  (which never dereferences it: the element is culled). The flags are read together with the
  intersection count, the one synchronisation a render needs, and a ``ValueError`` naming the
  argument is raised from the same call, before any output is returned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "ERROR_SLOTS",
    "INT32_MAX",
    "Checks",
    "ShapeChecker",
    "check_finite",
    "check_image",
    "check_index_range",
    "check_positive_float",
    "check_sh_degree",
    "check_tile_size",
    "same_device",
]

INT32_MAX = 2**31 - 1
# Slots of the kernels' int32 error array (rg::ErrorSlot in csrc/include/rg/ops.h, exported as
# _C.ERROR_SLOTS; test_build checks they agree). "isect_fill" is set by the CUDA fill pass (after
# the render's sync) and read by the op itself under RG_CUDA_DEBUG=1, never by raise_flagged.
ERROR_SLOTS = {"faces": 0, "face_ids": 1, "isect_fill": 2}
_FLOATS = (torch.float32, torch.float64)
_INTS = (torch.int32, torch.int64)

Pattern = Sequence[int | str]


def _fmt(shape: Sequence[int | str]) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


class ShapeChecker:
    """Checks tensors against symbolic shapes, binding each symbol (``N``, ``C``...) on first use.

    All floating tensors must share one dtype (float32 or float64) and all tensors one device.
    """

    def __init__(self) -> None:
        self.dims: dict[str, tuple[int, str]] = {}
        self.float_dtype: tuple[torch.dtype, str] | None = None
        self.device: tuple[torch.device, str] | None = None

    def _match(self, shape: tuple[int, ...], pattern: Pattern) -> dict[str, int] | None:
        """New symbol bindings if ``shape`` fits ``pattern`` (and the bound symbols), else None."""
        if len(shape) != len(pattern):
            return None
        new: dict[str, int] = {}
        for s, p in zip(shape, pattern, strict=True):
            if isinstance(p, int):
                if s != p:
                    return None
            elif p in self.dims:
                if self.dims[p][0] != s:
                    return None
            elif p in new:
                if new[p] != s:
                    return None
            else:
                new[p] = s
        return new

    def _expected(self, patterns: Sequence[Pattern]) -> str:
        exp = " or ".join(_fmt(p) for p in patterns)
        syms = sorted({p for pat in patterns for p in pat if isinstance(p, str) and p in self.dims})
        if syms:
            exp += " with " + ", ".join(f"{s}={self.dims[s][0]} (from {self.dims[s][1]})" for s in syms)
        return exp

    def tensor(
        self,
        name: str,
        t: object,
        *patterns: Pattern,
        kind: str = "float",
    ) -> Tensor:
        """Check ``t`` is a tensor of one of ``patterns``, of ``kind`` "float" or "int"."""
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if kind == "float":
            if t.dtype not in _FLOATS:
                raise ValueError(f"{name}: expected dtype float32 or float64, got {t.dtype}")
            if self.float_dtype is None:
                self.float_dtype = (t.dtype, name)
            elif t.dtype != self.float_dtype[0]:
                other_dtype, other = self.float_dtype
                raise ValueError(
                    f"{name}: dtype {t.dtype} differs from {other} ({other_dtype}); "
                    "pass every floating input in one dtype"
                )
        elif t.dtype not in _INTS:
            raise ValueError(f"{name}: expected an integer tensor (int32 or int64), got {t.dtype}")
        if self.device is None:
            self.device = (t.device, name)
        elif t.device != self.device[0]:
            raise ValueError(
                f"{name}: on device {t.device} but {self.device[1]} is on {self.device[0]}; "
                "put every input on one device"
            )
        for p in patterns:
            new = self._match(tuple(t.shape), p)
            if new is not None:
                for k, v in new.items():
                    self.dims[k] = (v, name)
                return t
        raise ValueError(f"{name}: expected shape {self._expected(patterns)}, got {_fmt(tuple(t.shape))}")

    def dim(self, symbol: str) -> int:
        """The size bound to ``symbol``."""
        return self.dims[symbol][0]


def check_finite(name: str, t: Tensor | None) -> None:
    """Reject NaN/inf entries of a floating tensor with a ``ValueError`` naming ``name``."""
    if t is None or not t.is_floating_point() or t.numel() == 0:
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(
            f"{name}: {int(bad.sum())} non-finite value(s) (NaN or inf), first at index {idx} = "
            f"{t[idx].item()}; non-finite inputs are rejected, fix or mask them before rendering"
        )


def check_index_range(name: str, t: Tensor, high: int, what: str) -> None:
    """Every entry of integer tensor ``t`` must be in ``[0, high)`` (``high`` = size of ``what``)."""
    if t.numel() == 0:
        return
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= high:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name}: index {bad} out of range; expected 0 <= {name} < {high} ({what})")


def _check_int(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__} {v!r}")
    return v


def check_tile_size(tile_size: object) -> int:
    """``tile_size`` must be 8, 16, 24 or 32 (the kernels' supported block sizes)."""
    ts = _check_int("tile_size", tile_size)
    if ts not in (8, 16, 24, 32):
        raise ValueError(f"tile_size: expected 8, 16, 24 or 32, got {ts}")
    return ts


def check_image(width: object, height: object, C: int, tile_size: int) -> tuple[int, int]:
    """Positive ``width``/``height`` such that ``C*H*W`` pixels and ``C`` x tiles fit in int32."""
    w = _check_int("width", width)
    h = _check_int("height", height)
    if w <= 0:
        raise ValueError(f"width: expected a positive number of pixels, got {w}")
    if h <= 0:
        raise ValueError(f"height: expected a positive number of pixels, got {h}")
    if C * h * w > INT32_MAX:
        raise ValueError(
            f"width, height: {C} cameras x {h} x {w} = {C * h * w} pixels exceed the int32 range "
            f"({INT32_MAX}); render fewer cameras per call or a smaller image"
        )
    tiles = C * math.ceil(w / tile_size) * math.ceil(h / tile_size)
    if tiles > INT32_MAX:  # pragma: no cover - implied by the pixel check for tile_size >= 8
        raise ValueError(f"width, height: {tiles} tiles exceed the int32 range")
    return w, h


def check_sh_degree(sh_degree: object) -> int | None:
    """``None`` (colours as given) or an int in 0..3."""
    if sh_degree is None:
        return None
    d = _check_int("sh_degree", sh_degree)
    if not 0 <= d <= 3:
        raise ValueError(f"sh_degree: expected None or 0..3, got {d}")
    return d


def check_positive_float(name: str, v: object, allow_zero: bool = False) -> float:
    """A finite float ``> 0`` (``>= 0`` with ``allow_zero``)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"{name}: expected a float, got {type(v).__name__} {v!r}")
    f = float(v)
    if not math.isfinite(f) or f < 0 or (f == 0 and not allow_zero):
        raise ValueError(f"{name}: expected a finite value {'>=' if allow_zero else '>'} 0, got {v!r}")
    return f


def same_device(**tensors: Tensor | None) -> torch.device:
    """The one device of ``tensors`` (``None`` entries skipped); a ``ValueError`` naming the first
    argument on another device, with both devices, otherwise (``cuda:0`` vs ``cuda:1`` differ)."""
    first: tuple[str, torch.device] | None = None
    for name, t in tensors.items():
        if t is None:
            continue
        if first is None:
            first = (name, t.device)
        elif t.device != first[1]:
            raise ValueError(
                f"{name}: on device {t.device} but {first[0]} is on {first[1]}; put every input on "
                "one device (the kernels run on the device that holds the inputs)"
            )
    if first is None:
        raise ValueError("no tensor given")
    return first[1]


class Checks:
    """The input checks of one call: eager (raise before running) or, for a CUDA render,
    deferred (device-side flags, raised at the render's one synchronisation; module docstring).

    Deferred checks own ``errors``, the kernels' int32 error array (:data:`ERROR_SLOTS`).
    """

    def __init__(self, device: torch.device, deferred: bool) -> None:
        self.deferred = deferred
        self.errors: Tensor | None = (
            torch.zeros(len(ERROR_SLOTS), dtype=torch.int32, device=device) if deferred else None
        )
        self._index_messages: dict[int, str] = {}
        self._finite_names: list[str] = []
        self._finite_bad: list[Tensor] = []

    def finite(self, **tensors: Tensor | None) -> None:
        """NaN/inf entries of the floating ``tensors`` are an error (see :func:`check_finite`)."""
        for name, t in tensors.items():
            if t is None or not t.is_floating_point() or t.numel() == 0:
                continue
            if self.deferred:
                self._finite_names.append(name)
                self._finite_bad.append(torch.isfinite(t).all().logical_not())
            else:
                check_finite(name, t)

    def index_range(self, name: str, t: Tensor, high: int, what: str) -> None:
        """Entries of ``t`` (``faces`` or ``face_ids``) must be in ``[0, high)``."""
        if self.deferred:
            self._index_messages[ERROR_SLOTS[name]] = (
                f"{name}: an index is out of range; expected 0 <= {name} < {high} ({what})"
            )
        else:
            check_index_range(name, t, high, what)

    def device_flags(self) -> Tensor | None:
        """int64 ``[slots + finite checks]`` on the device (deferred), else ``None``."""
        if not self.deferred or self.errors is None:
            return None
        parts = [self.errors.long()]
        if self._finite_bad:
            parts.append(torch.stack(self._finite_bad).long())
        return torch.cat(parts)

    def raise_flagged(self, values: list[int]) -> None:
        """Raise the ``ValueError`` of the first set flag of :meth:`device_flags`' values."""
        n_slots = len(ERROR_SLOTS)
        for slot, v in enumerate(values[:n_slots]):
            if v and slot in self._index_messages:
                raise ValueError(self._index_messages[slot])
        for name, v in zip(self._finite_names, values[n_slots:], strict=True):
            if v:
                raise ValueError(
                    f"{name}: non-finite value(s) (NaN or inf); non-finite inputs are rejected, fix "
                    "or mask them before rendering (check_finite=False skips this check)"
                )
