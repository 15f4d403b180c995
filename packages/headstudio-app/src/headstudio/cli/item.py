"""The process of one batch item: ``python -m headstudio.cli.item OPTIONS_JSON PARENT_PID``.

The batch (:mod:`headstudio.batch.launch`) starts it with the item's GenerateOptions as JSON.
It dies with the process that started it, then runs the generate command with the CLI's messages
and exit statuses (an ``error:`` line, 130 after Ctrl-C / SIGTERM with the checkpoint written),
logging at INFO level for the item's log file.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from ..batch.worker import EXIT_ORPHANED, die_with_parent
from ..commands.generate import GenerateOptions
from ..train.run_folder import RunFolder
from . import generate
from ._args import COMMAND_FLAGS, Parser, common_options
from ._report import configure_logging, report_failures

_PATHS = ("output", "config", "image")


def options_from_json(text: str) -> GenerateOptions:
    """GenerateOptions from ``dataclasses.asdict`` written as JSON."""
    doc = json.loads(text)
    known = {f.name for f in fields(GenerateOptions)}
    values = {k: v for k, v in doc.items() if k in known}
    for k in _PATHS:
        if values.get(k) is not None:
            values[k] = Path(values[k])
    values["overrides"] = tuple(values.get("overrides") or ())
    return GenerateOptions(**values)


def _run(args: argparse.Namespace) -> int:
    opts: GenerateOptions = args.options
    if RunFolder(opts.output or ".").has_checkpoint():
        print(f"resuming {opts.output} from its checkpoint", flush=True)
    res = generate.run_options(opts)
    print(f"avatar written to {res.avatar}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    gone = die_with_parent(int(argv[1]) if len(argv) > 1 else 0)
    if gone is not None:
        sys.stderr.write(f"error: {gone}\n")
        return EXIT_ORPHANED
    configure_logging(1)
    opts = options_from_json(argv[0])
    parser = Parser(prog="headstudio")
    generate.add_parser(parser.add_subparsers(), common_options(top=False))  # its flags, for messages
    args = argparse.Namespace(options=opts, debug=False, flags=COMMAND_FLAGS["generate"])
    return report_failures(_run, args)


if __name__ == "__main__":
    raise SystemExit(main())
