"""``headstudio demo``: the offline demo."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..commands import demo
from ._args import Parser, flags_of, positive_int


def add_parser(sub: argparse._SubParsersAction, common: Parser) -> None:
    m = sub.add_parser("demo", parents=[common], help="offline demo: train from a teacher, videos, PSNR")
    m.add_argument("--output", default="outputs/demo", metavar="DIR")
    m.add_argument("--quick", action="store_true", help="smaller and shorter (a smoke run)")
    m.add_argument("--size", type=int, help="training / render resolution")
    m.add_argument("--steps", type=positive_int, help="training steps")
    m.add_argument(
        "--photo", nargs="?", const="astronaut", metavar="PHOTO",
        help="the photo part instead: an avatar of the person in PHOTO (default: scikit-image's astronaut)",
    )  # fmt: skip
    m.set_defaults(handle=handle, flags=flags_of(m))


def handle(args: argparse.Namespace) -> int:
    out = Path(args.output)
    options = demo.DemoOptions(
        output=out,
        quick=args.quick,
        size=args.size,
        steps=args.steps,
        device=args.device,
        progress=not args.quiet,
        photo=args.photo,
    )
    try:
        res = demo.run(options)
    except KeyboardInterrupt as err:
        # the trainer's message suggests `headstudio generate ... --resume`, which would finish the
        # avatar but not the demo's videos and PSNR; the demo itself always starts afresh
        raise KeyboardInterrupt(
            f"demo interrupted; its outputs in '{out}' are incomplete. Run `headstudio demo --output {out}` "
            "(with the same options) again to start afresh."
        ) from err
    print(json.dumps(res.numbers, indent=2, default=str))
    return 0
