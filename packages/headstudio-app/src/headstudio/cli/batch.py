"""``headstudio batch PROMPTS -o DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..batch.report import summary_table
from ..commands import batch
from ..output.evaluate import DEFAULT_CLIP_MODELS
from ._args import Parser, flags_of, positive_int
from ._report import EXIT_INTERNAL


def add_parser(sub: argparse._SubParsersAction, common: Parser) -> None:
    b = sub.add_parser(
        "batch", parents=[common], help="many avatars from a prompts file, on every GPU or on Ray"
    )
    b.add_argument(
        "prompts", metavar="PROMPTS",
        help="one prompt per line (.txt; # comments), or .jsonl / .toml entries with prompt and per-item "
        "seed, steps, flame, motion, name, set",
    )  # fmt: skip
    b.add_argument("-o", "--output", required=True, metavar="DIR", help="one folder per avatar, batch.jsonl")
    b.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="local processes (default: one per GPU; 1 on the CPU)",
    )
    b.add_argument(
        "--ray", nargs="?", const="", metavar="ADDRESS",
        help="one Ray task (one GPU) per item: auto, HOST:PORT or ray://HOST:PORT of a running cluster, none "
        'for a local one; DIR must be shared storage. Needs pip install "headstudio-app[ray]"',
    )  # fmt: skip
    b.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="config value of every item (repeatable)"
    )
    b.add_argument("--config", metavar="TOML", help="configuration of every item")
    b.add_argument("--steps", type=positive_int, help="training steps of every item")
    b.add_argument("--retries", type=int, default=1, metavar="R", help="attempts after a failure (default 1)")
    b.add_argument(
        "--eval", action="store_true", help="CLIP score of each avatar, if the CLIP models are at hand"
    )
    b.add_argument(
        "--clip-model", action="append", metavar="ID_OR_DIR", help="with --eval (default: the paper's 3)"
    )
    b.set_defaults(handle=handle, flags=flags_of(b, overrides="--set", evaluate="--eval"))


def options(args: argparse.Namespace) -> batch.BatchOptions:
    return batch.BatchOptions(
        prompts=Path(args.prompts), output=Path(args.output).absolute(), overrides=tuple(args.set or ()),
        config=Path(args.config).absolute() if args.config else None, steps=args.steps, device=args.device,
        workers=args.workers, ray=args.ray, retries=args.retries, evaluate=args.eval,
        clip_models=tuple(args.clip_model or DEFAULT_CLIP_MODELS), progress=not args.quiet,
    )  # fmt: skip


def handle(args: argparse.Namespace) -> int:
    opts = options(args)
    out = opts.output

    def started(s: batch.BatchStart) -> None:
        where = f" on a {s.where}" if s.where is not None else ""
        done = s.items - s.todo
        print(
            f"batch of {s.items} avatar(s) into {out}: {s.todo} to train, {done} finished before "
            f"(skipped){where}"
        )

    report = batch.run(opts, started)
    n = len(report.records)
    print(summary_table(report, opts.evaluate))
    print(f"records in {out / 'batch.jsonl'}, item logs in {out / '_logs'}")
    if report.eval_note:
        print(f"--eval: {report.eval_note}")
    if report.stopped:
        resumable = report.count("interrupted")
        raise KeyboardInterrupt(
            f"batch stopped with {len(report.left)} of {n} avatar(s) left ({resumable} continue from their "
            "checkpoint); run the same command again to go on."
        )
    if report.count("failed"):
        sys.stderr.write(
            f"error: {report.count('failed')} of {n} avatar(s) failed (errors in the table and batch.jsonl, "
            "logs in _logs/); fix them and run the same command again: finished avatars are skipped.\n"
        )
        return EXIT_INTERNAL
    return 0
