"""``view``: serve an avatar to the browser viewer until Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import HeadStudioError, require_file
from ..head_motion import MOTION_SUFFIXES, as_motion, default_motion
from ..output.viewer.launch import check_port, prepare_server, start_or_explain
from ..output.viewer.server import is_loopback
from .common import AvatarOptions, open_avatar

__all__ = ["ViewOptions", "ViewReady", "ViewResult", "run"]


@dataclass(frozen=True, kw_only=True)
class ViewOptions(AvatarOptions):
    """``motion`` (``None``: the procedural talking motion) and ``audio`` played in the page;
    ``host`` / ``port`` to listen on (``0``: any free port)."""

    motion: Path | None = None
    audio: Path | None = None
    port: int = 8765
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class ViewReady:
    """The server listens: ``url`` (with its token), ``loopback``: this machine only."""

    url: str
    loopback: bool


@dataclass(frozen=True)
class ViewResult:
    """``stopped``: ended by Ctrl-C (how a viewer ends)."""

    stopped: bool


def run(options: ViewOptions, ready: Callable[[ViewReady], None]) -> ViewResult:
    """Serve until Ctrl-C; ``ready`` is called once the server listens."""
    if options.motion is not None:
        require_file(options.motion, "motion file", MOTION_SUFFIXES)
    if options.audio is not None:
        require_file(options.audio, "audio file")
    if not 0 <= options.port <= 65535:
        raise HeadStudioError(
            f"«port» {options.port} is not a TCP port; give 1..65535, or 0 for any free one."
        )
    check_port(options.host, options.port)
    avatar, _ = open_avatar(options)
    motion = (
        as_motion(options.motion)
        if options.motion is not None
        else default_motion(avatar.head, options.audio)
    )
    server = prepare_server(avatar, motion, options.audio, host=options.host, port=options.port)
    try:
        start_or_explain(server, lambda url: ready(ViewReady(url, is_loopback(options.host))))
    except KeyboardInterrupt:  # Ctrl-C is how a viewer stops: no error
        return ViewResult(stopped=True)
    return ViewResult(stopped=False)
