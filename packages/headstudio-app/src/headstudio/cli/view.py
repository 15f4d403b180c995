"""``headstudio view AVATAR``: the browser viewer until Ctrl-C."""

from __future__ import annotations

import argparse
import webbrowser

from ..commands import view
from ._args import Parser, avatar_fields, avatar_options, flags_of, path_or_none


def add_parser(sub: argparse._SubParsersAction, common: Parser) -> None:
    w = sub.add_parser(
        "view", parents=[common, avatar_options()], help="view and animate an avatar in the browser"
    )
    w.add_argument("--motion", metavar="FILE", help="motion to play (default: the procedural talking motion)")
    w.add_argument("--audio", metavar="WAV", help="audio played in sync with the motion")
    w.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any free port)")
    w.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only); any other address requires the "
        "random token printed in the URL",
    )  # fmt: skip
    w.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    w.set_defaults(handle=handle, flags=flags_of(w))


def handle(args: argparse.Namespace) -> int:
    def ready(r: view.ViewReady) -> None:
        if not r.loopback:
            print(f"serving beyond this machine on {args.host}: the page needs the token in this URL")
        print(f"headstudio viewer at {r.url}  (Ctrl-C to stop)", flush=True)
        if not args.no_browser:
            webbrowser.open(r.url)

    options = view.ViewOptions(
        **avatar_fields(args), motion=path_or_none(args.motion), audio=path_or_none(args.audio),
        port=args.port, host=args.host,
    )  # fmt: skip
    if view.run(options, ready).stopped:
        print("viewer stopped")
    return 0
