"""The ``headstudio`` command line: generate, batch, animate, say, drive, render, export, view,
eval, demo.

A thin layer over :mod:`headstudio.commands`: each command's module here adds its parser
(``add_parser``), maps the parsed arguments to the command's Options and its Result to printed
lines (``handle``). Failures are one ``error:`` line and an exit status (:mod:`._report`); outputs
are written atomically, so a failed or interrupted command leaves no partial file under the final
name.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import animate, batch, demo, drive, eval, export, generate, render, say, view
from ._args import Parser, common_options
from ._report import configure_logging, report_failures

__all__ = ["main", "build_parser"]

#: In the order of ``headstudio --help``.
COMMANDS = (generate, batch, animate, say, drive, render, export, view, eval, demo)


def build_parser() -> Parser:
    """The argparse tree of ``headstudio`` and its subcommands."""
    desc = "Text to animatable 3D Gaussian head avatars."
    p = Parser(prog="headstudio", description=desc, parents=[common_options(top=True)])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    common = common_options(top=False)
    for command in COMMANDS:
        command.add_parser(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    configure_logging(args.verbose)
    return report_failures(args.handle, args)
