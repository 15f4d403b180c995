"""``headstudio say AVATAR TEXT -o OUT.mp4``."""

from __future__ import annotations

import argparse

from ..commands import say
from ._args import (
    Parser,
    avatar_fields,
    avatar_options,
    flags_of,
    path_or_none,
    positive_float,
    positive_int,
    size,
)


def add_parser(sub: argparse._SubParsersAction, common: Parser) -> None:
    t = sub.add_parser(
        "say", parents=[common, avatar_options()], help="speak a text (offline, espeak-ng) to MP4"
    )
    t.add_argument("text", help='what to say, e.g. "Hello, I am a Gaussian head."')
    t.add_argument("-o", "--output", required=True, metavar="OUT.mp4")
    t.add_argument("--voice", metavar="VARIANT", help="espeak-ng voice variant: f1..f5, m1..m7, klatt, ...")
    t.add_argument("--rate", type=positive_int, default=175, metavar="WPM", help="words per minute (80-450)")
    t.add_argument("--language", default="en", metavar="L", help="espeak-ng language: en, en-us, de, fr, ...")
    t.add_argument("--motion-out", metavar="MOTION.npz", help="also save the motion")
    t.add_argument("--fps", type=positive_float, default=30.0, help="video frame rate")
    t.add_argument("--size", type=size, default=(512, 512), help="512 or WxH")
    t.set_defaults(handle=handle, flags=flags_of(t))


def handle(args: argparse.Namespace) -> int:
    res = say.run(
        say.SayOptions(
            **avatar_fields(args),
            text=args.text,
            output=args.output,
            voice=args.voice,
            rate=args.rate,
            language=args.language,
            motion_out=path_or_none(args.motion_out),
            fps=args.fps,
            size=args.size,
        )  # fmt: skip
    )
    print(f"wrote {res.output} ({res.frames} frames, {res.duration:.2f} s of speech)")
    if res.motion is not None:
        print(f"motion saved to {res.motion}")
    return 0
