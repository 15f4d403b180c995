"""The parser's shared parts: the one-line error parser, value types, the common and avatar
options, and the flag of each option (what ``«name»`` in a message is printed as)."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "Parser", "size", "positive_int", "positive_float", "finite_float", "non_negative_float",
    "common_options", "avatar_options", "avatar_fields", "flags_of", "path_or_none", "EXIT_USAGE",
]  # fmt: skip

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one ``error:`` line (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_USAGE)


def size(text: str) -> tuple[int, int]:
    """``512`` or ``640x480`` → ``(width, height)`` (validated later by rendering.check_size)."""
    m = re.fullmatch(r"\s*(-?\d+)\s*(?:[xX]\s*(-?\d+))?\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"impossible resolution '{text}'; give e.g. 512 or 640x480")
    w = int(m.group(1))
    return w, int(m.group(2)) if m.group(2) else w


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return v


def finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number")
    return v


def non_negative_float(text: str) -> float:
    v = finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text} must be zero or positive")
    return v


def common_options(top: bool) -> Parser:
    """The options every command takes, before or after its name. Only the top level has
    defaults: a subcommand's copy sets a value only when given there, so ``headstudio -q --device
    cpu demo`` and ``headstudio demo -q --device cpu`` mean the same."""
    p = Parser(add_help=False)

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    p.add_argument("-v", "--verbose", action="count", default=default(0), help="more logging (-vv: debug)")
    p.add_argument("--debug", action="store_true", default=default(False), help="show tracebacks")
    p.add_argument("--device", default=default("auto"), help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("-q", "--quiet", action="store_true", default=default(False), help="no progress bars")
    return p


def avatar_options() -> Parser:
    p = Parser(add_help=False)
    p.add_argument("avatar", help="avatar .ply written by generate/demo")
    p.add_argument("--flame", metavar="PKL", help="FLAME model of the avatar (default: its metadata)")
    p.add_argument(
        "--no-verify", dest="verify", action="store_false",
        help="read the avatar even if its integrity checksum does not match (forensics on a damaged file)",
    )  # fmt: skip
    return p


def path_or_none(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def avatar_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~headstudio.commands.common.AvatarOptions` fields of parsed arguments."""
    return {
        "avatar": Path(args.avatar), "flame": path_or_none(args.flame), "verify": args.verify,
        "device": args.device, "progress": not args.quiet,
    }  # fmt: skip


#: ``{command: {option name: flag}}`` of every command whose parser was built (:func:`flags_of`).
COMMAND_FLAGS: dict[str, dict[str, str]] = {}


def flags_of(parser: argparse.ArgumentParser, **extra: str) -> dict[str, str]:
    """``{option name: flag}`` of a command's parser (an option's ``dest`` is the field of its
    Options; its longest option string is its flag), with ``extra`` names on top; also kept in
    :data:`COMMAND_FLAGS` under the command's name."""
    out: dict[str, str] = {}
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help",):
            out[action.dest] = max(action.option_strings, key=len)
    flags = {**out, **extra}
    COMMAND_FLAGS[parser.prog.split()[-1]] = flags
    return flags
