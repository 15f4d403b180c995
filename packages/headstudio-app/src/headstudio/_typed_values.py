"""Values read from TOML or the command line, coerced to the declared types of dataclass fields.

The config loader (:mod:`headstudio.config`) sets every field through :func:`coerce`, so a value
of the wrong type is refused with the type spelled out by :func:`describe`.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, Literal

__all__ = ["NONE_WORDS", "BadValue", "coerce", "describe", "field_types"]

#: Strings that mean ``None`` for a field that may be ``None``.
NONE_WORDS = ("none", "null")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field of the dataclass ``cls`` (computed once per class: the
    config loader asks for each key it sets, and resolving the hints is slow)."""
    return typing.get_type_hints(cls)


def describe(tp: Any) -> str:
    """Human-readable form of a field type for error messages."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "[" + ", ".join(describe(a) for a in typing.get_args(tp)) + "]"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


class BadValue(Exception):
    """``coerce`` cannot convert the value to the type."""


def coerce(value: Any, tp: Any) -> Any:
    """``value`` converted to the type ``tp``; raises :class:`BadValue` when it cannot be."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
            if type(None) in args:
                return None
        # literals first, so "auto" is not swallowed by a str alternative
        for a in sorted(args, key=lambda a: typing.get_origin(a) is not Literal):
            if a is type(None):
                continue
            try:
                return coerce(value, a)
            except BadValue:
                continue
        raise BadValue
    if origin is Literal:
        if value in typing.get_args(tp) and type(value) in {type(a) for a in typing.get_args(tp)}:
            return value
        raise BadValue
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise BadValue
        return tuple(coerce(v, a) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise BadValue
    if tp is int:
        if isinstance(value, bool):
            raise BadValue
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise BadValue
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadValue
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise BadValue
    raise BadValue  # pragma: no cover - every field type is handled above
