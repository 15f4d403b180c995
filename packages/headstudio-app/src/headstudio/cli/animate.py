"""``headstudio animate AVATAR -o OUT.mp4``."""

from __future__ import annotations

import argparse

from ..commands import animate
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
    a = sub.add_parser(
        "animate", parents=[common, avatar_options()], help="animate an avatar with a FLAME motion to MP4"
    )
    a.add_argument("--motion", metavar="FILE", help="TalkSHOW .npy, SHOW .pkl or .npz (default: procedural)")
    a.add_argument(
        "--arkit", metavar="CURVES.csv",
        help="ARKit blendshape curves in Live Link Face's CSV layout (e.g. from drive --arkit-out), played "
        "through the avatar's ARKit fit; instead of --motion",
    )  # fmt: skip
    a.add_argument("--audio", metavar="WAV", help="audio muxed in; without --motion, lip sync to it")
    a.add_argument(
        "--fps", type=positive_float,
        help="video frame rate (default: the motion's; with --arkit also the curves' rate, default from "
        "their timecodes)",
    )  # fmt: skip
    a.add_argument("--size", type=size, default=(512, 512), help="512 or WxH")
    a.add_argument("--frames", type=positive_int, help="render at most this many frames")
    a.add_argument("-o", "--output", required=True, metavar="OUT.mp4")
    a.set_defaults(handle=handle, flags=flags_of(a))


def handle(args: argparse.Namespace) -> int:
    res = animate.run(
        animate.AnimateOptions(
            **avatar_fields(args),
            output=args.output,
            motion=path_or_none(args.motion),
            arkit=path_or_none(args.arkit),
            audio=path_or_none(args.audio),
            fps=args.fps,
            size=args.size,
            frames=args.frames,
        )  # fmt: skip
    )
    print(f"wrote {res.output} ({res.frames} frames)")
    return 0
