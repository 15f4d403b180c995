"""How a command's outcome reaches the user: every failure is one ``error:`` line on stderr and
an exit status (2 bad input, 130 Ctrl-C, 1 an internal error), without a traceback unless
``--debug`` is given.

Messages of the layers below name options as ``«name»`` (the field of a command's Options, the
``dest`` of its flag); :func:`render` prints each as the command's flag. The flags come from the
command's own parser (:func:`headstudio.cli._args.flags_of`): this is the one mapping from option
names to flags, and no module outside ``cli/`` spells a flag.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Mapping

import torch
from fsds_guidance import GuidanceModelError

from ..errors import HeadStudioError, one_line
from ._args import COMMAND_FLAGS

__all__ = ["render", "report_failures", "configure_logging", "EXIT_INTERNAL", "EXIT_INTERRUPTED"]

EXIT_USAGE = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130
#: Library argument names that are not an Options field of the running command.
ARGUMENT_FLAGS = {
    "device": "--device", "flame": "--flame", "head": "--flame", "output_dir": "--output",
    "overrides": "--set", "config": "--config", "verify": "--no-verify",
}  # fmt: skip
#: ``«name»`` (an option of the running command) or ``«command:name»`` (of another command).
MARK = re.compile(r"«(?:([a-z]+):)?([a-z_]+)»")


def render(text: str, flags: Mapping[str, str]) -> str:
    """``text`` with every ``«name»`` printed as the flag of the running command (``flags``) and
    every ``«command:name»`` as that command's (``--name`` when there is none)."""

    def flag(m: re.Match[str]) -> str:
        table = COMMAND_FLAGS.get(m[1], {}) if m[1] else flags
        return table.get(m[2]) or ARGUMENT_FLAGS.get(m[2]) or "--" + m[2].replace("_", "-")

    return MARK.sub(flag, text)


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    fmt = "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def _error(text: str) -> None:
    sys.stderr.write(f"error: {text}\n")


def report_failures(handle: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``handle(args)``; a failure becomes one ``error:`` line and its exit status."""
    flags: Mapping[str, str] = {**ARGUMENT_FLAGS, **getattr(args, "flags", {})}
    try:
        return int(handle(args) or 0)
    except HeadStudioError as err:
        if args.debug:
            raise
        flag = flags.get(err.argument or "") if err.argument else None
        _error(f"{flag + ': ' if flag else ''}{render(str(err), flags)}")
        return EXIT_USAGE
    except GuidanceModelError as err:  # fsds-guidance's own message, then the flags that set its arguments
        if args.debug:
            raise
        _error(
            f"{one_line(err)} With headstudio, give local copies with --set guidance.base_model=DIR "
            "--set guidance.controlnet=DIR."
        )
        return EXIT_USAGE
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        if str(err).strip():  # an interrupted run: says where the checkpoint is and how to resume
            _error(render(one_line(err), flags))
        else:
            _error("interrupted (Ctrl-C); unfinished outputs were removed, run it again.")
        return EXIT_INTERRUPTED
    except Exception as err:
        if args.debug:
            raise
        if isinstance(err, torch.cuda.OutOfMemoryError):
            _error(
                "CUDA out of memory; use a smaller --size (or batch / resolution via --set), close other GPU "
                "programs, or run with --device cpu."
            )
            return EXIT_USAGE
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
            _error(f"{one_line(err)}; check the path and its permissions.")
            return EXIT_USAGE
        _error(
            f"internal error ({type(err).__name__}: {one_line(err, 300)}); run again with --debug for the "
            "traceback and report it."
        )
        return EXIT_INTERNAL
