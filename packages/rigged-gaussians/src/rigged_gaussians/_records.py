"""The ``_C`` argument records of the native backends (:mod:`rigged_gaussians._glue`,
:mod:`rigged_gaussians._autograd`): the extension, loaded on first use, and :class:`Record`."""

from __future__ import annotations

from typing import Any

from torch import Tensor

__all__ = ["Record"]


def _ext() -> Any:
    from rigged_gaussians import _C as ext  # noqa: N811

    return ext


class Record:
    """A ``_C`` argument record and the tensors its pointers refer to, kept alive with it (a
    record stored on an autograd context keeps its inputs for the backward)."""

    __slots__ = ("native", "tensors")

    def __init__(self, native: Any) -> None:
        self.native = native
        self.tensors: list[Tensor] = []

    def set(self, **values: Any) -> Record:
        """Set fields: tensors as their data pointers (and kept), ``None`` as a null pointer,
        other values as they are."""
        for name, v in values.items():
            if v is None:
                v = 0
            elif isinstance(v, Tensor):
                self.tensors.append(v)
                v = v.data_ptr()
            setattr(self.native, name, v)
        return self
