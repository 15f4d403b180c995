"""``headstudio drive AVATAR --video IN.mp4 -o OUT.mp4``."""

from __future__ import annotations

import argparse
import dataclasses

from ..commands import drive
from ._args import (
    Parser,
    avatar_fields,
    avatar_options,
    flags_of,
    non_negative_float,
    path_or_none,
    positive_float,
    positive_int,
    size,
)  # fmt: skip

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(drive.DriveOptions)}
#: The one-euro filter's options: (flag suffix, metavar, type, what it does, Options field).
_FILTER = (
    ("min-cutoff", "HZ", positive_float, "cutoff of a still face, lower is smoother", "min_cutoff"),
    (
        "beta",
        "B",
        non_negative_float,
        "how fast the cutoff rises with speed, higher keeps fast motion",
        "beta",
    ),
    ("d-cutoff", "HZ", positive_float, "cutoff of the speed estimate", "d_cutoff"),
)


def add_parser(sub: argparse._SubParsersAction, common: Parser) -> None:
    d = sub.add_parser(
        "drive", parents=[common, avatar_options()], help="animate an avatar from a face video"
    )
    d.add_argument("--video", required=True, metavar="IN.mp4")
    d.add_argument("-o", "--output", required=True, metavar="OUT.mp4")
    d.add_argument("--save-motion", metavar="MOTION.npz", help="also save the fitted motion")
    d.add_argument(
        "--report", metavar="REPORT.json",
        help="also save per-frame results: face found, landmark reprojection error in pixels, neutral",
    )  # fmt: skip
    d.add_argument(
        "--arkit-out", metavar="CURVES.csv",
        help="also save the captured face as ARKit's 52 blendshape curves in Live Link Face's CSV layout "
        "(play them with `headstudio animate AVATAR --arkit CURVES.csv`)",
    )  # fmt: skip
    d.add_argument(
        "--neutral", default="auto", metavar="auto|none|IMAGE",
        help="the actor's resting face, subtracted from the motion: auto (the video's least active "
        "frames), none, or a photo of the resting face (default auto)",
    )  # fmt: skip
    for flag, metavar, kind, what, field in _FILTER:
        default = _DEFAULTS[field]
        d.add_argument(
            f"--filter-{flag}", dest=field, type=kind, default=default, metavar=metavar,
            help=f"one-euro filter on the landmarks, {flag}: {what} (default {default:g})",
        )  # fmt: skip
    d.add_argument("--no-filter", dest="filter", action="store_false", help="fit the raw landmarks")
    d.add_argument(
        "--smoothing", type=non_negative_float, default=0.0,
        help="extra second-difference penalty over time in the FLAME fit (default 0)",
    )  # fmt: skip
    d.add_argument(
        "--no-calibrate", dest="calibrate", action="store_false",
        help="use the fitted jaw as it is, without calibrating it on the avatar (a 2 s clip of the avatar "
        "opening its jaw, read by MediaPipe, so the avatar's mouth opens as far as the video's reads)",
    )  # fmt: skip
    d.add_argument("--landmarker", metavar="TASK", help="MediaPipe face_landmarker.task")
    d.add_argument("--max-frames", type=positive_int)
    d.add_argument("--size", type=size, default=(512, 512))
    d.set_defaults(handle=handle, flags=flags_of(d))


def options(args: argparse.Namespace) -> drive.DriveOptions:
    return drive.DriveOptions(
        **avatar_fields(args), video=args.video, output=args.output,
        save_motion=path_or_none(args.save_motion), report=path_or_none(args.report),
        arkit_out=path_or_none(args.arkit_out), neutral=args.neutral,
        filter=args.filter, min_cutoff=args.min_cutoff, beta=args.beta, d_cutoff=args.d_cutoff,
        smoothing=args.smoothing, calibrate=args.calibrate, landmarker=args.landmarker,
        max_frames=args.max_frames, size=args.size,
    )  # fmt: skip


def handle(args: argparse.Namespace) -> int:
    res = drive.run(options(args))
    print(res.summary)
    print(f"wrote {res.output} ({res.frames} frames)")
    if res.motion:
        print(f"motion saved to {res.motion}")
    if res.report:
        print(f"per-frame report (face found, reprojection error px) saved to {res.report}")
    if res.arkit:
        print(f"ARKit curves (Live Link Face CSV) saved to {res.arkit}")
    return 0
