"""``headstudio render AVATAR (--turntable | --views N) -o OUT``."""

from __future__ import annotations

import argparse

from ..commands import render
from ._args import (
    Parser,
    avatar_fields,
    avatar_options,
    finite_float,
    flags_of,
    positive_float,
    positive_int,
    size,
)


def add_parser(sub: argparse._SubParsersAction, common: Parser) -> None:
    r = sub.add_parser("render", parents=[common, avatar_options()], help="turntable video or still images")
    mode = r.add_mutually_exclusive_group(required=True)
    mode.add_argument("--turntable", action="store_true", help="360° orbit to OUT.mp4")
    mode.add_argument("--views", type=positive_int, metavar="N", help="N views to OUT.png (grid) or a dir")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--size", type=size, default=(512, 512))
    r.add_argument("--frames", type=positive_int, default=120, help="turntable frames")
    r.add_argument("--fps", type=positive_float, default=30.0)
    r.add_argument("--elevation", type=finite_float, default=0.0, help="camera elevation in degrees")
    r.set_defaults(handle=handle, flags=flags_of(r))


def handle(args: argparse.Namespace) -> int:
    res = render.run(
        render.RenderOptions(
            **avatar_fields(args),
            output=args.output,
            views=None if args.turntable else args.views,
            size=args.size,
            frames=args.frames,
            fps=args.fps,
            elevation=args.elevation,
        )  # fmt: skip
    )
    if res.images:
        print(f"wrote {len(res.images)} image(s): {res.images[0] if len(res.images) == 1 else res.output}")
    else:
        print(f"wrote {res.output} ({res.frames} frames)")
    return 0
