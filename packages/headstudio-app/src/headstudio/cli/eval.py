"""``headstudio eval AVATAR --prompt TEXT``: CLIP scores."""

from __future__ import annotations

import argparse

from ..commands import eval as evaluate
from ._args import Parser, avatar_fields, avatar_options, flags_of, path_or_none


def add_parser(sub: argparse._SubParsersAction, common: Parser) -> None:
    v = sub.add_parser("eval", parents=[common, avatar_options()], help="CLIP score against a prompt")
    v.add_argument("--prompt", required=True)
    v.add_argument(
        "--clip-model", action="append", metavar="ID_OR_DIR", help="repeatable (default: the paper's 3)"
    )
    v.add_argument("--size", type=int, default=224)
    v.add_argument("--json", metavar="OUT.json")
    v.set_defaults(handle=handle, flags=flags_of(v, clip_models="--clip-model"))


def handle(args: argparse.Namespace) -> int:
    res = evaluate.run(
        evaluate.EvalOptions(
            **avatar_fields(args),
            prompt=args.prompt,
            clip_models=tuple(args.clip_model) if args.clip_model else None,
            size=args.size,
            json=path_or_none(args.json),
        )  # fmt: skip
    )
    for m, s in res.scores.items():
        print(f"CLIP score {m}: {s:.4f}")
    return 0
