"""Test helper: the procedural head as a FlameModel (built once per process)."""

from __future__ import annotations

import functools

from flame_core.model import FlameModel


@functools.lru_cache(maxsize=1)
def procedural_model() -> FlameModel:
    """``FlameModel.procedural()`` (float32, 300 shape + 100 expression components)."""
    return FlameModel.procedural()


__all__ = ["procedural_model"]
