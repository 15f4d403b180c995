"""Everything ``headstudio view`` does between loading the avatar and serving it."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from flame_core import MotionSequence

from ...avatar import Avatar
from ...errors import HeadStudioError
from .assets import build_viewer_data
from .presets import fit_presets
from .server import ViewerServer

__all__ = ["check_port", "prepare_server", "start_or_explain"]

log = logging.getLogger(__name__)


def prepare_server(
    avatar: Avatar,
    motion: MotionSequence,
    audio: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
) -> ViewerServer:
    """A :class:`ViewerServer` for ``avatar`` with its presets fitted and ``motion`` to play.

    Args:
        avatar: the ``Avatar``.
        motion: a ``flame_core.MotionSequence`` (streamed frame by frame) or ``None``.
        audio: an audio file played in sync with the motion.
        host, port: where to listen.
    """
    presets = fit_presets(avatar.head)
    data = build_viewer_data(avatar, presets, motion, audio)
    return ViewerServer(avatar, data, presets, motion, audio, host=host, port=port)


def _explain(err: OSError, host: str, port: int) -> HeadStudioError | None:
    if err.errno in (errno.EADDRINUSE, errno.EACCES):
        return HeadStudioError(
            f"cannot listen on {host}:{port} ({err.strerror}); pass another «port», "
            "or «port» 0 for any free one."
        )
    if err.errno in (errno.EADDRNOTAVAIL, -2, -3, -5):  # gai errors: unknown host name
        return HeadStudioError(
            f"«host» {host} is not an address of this machine; use 127.0.0.1 (default) or 0.0.0.0."
        )
    return None


def check_port(host: str, port: int) -> None:
    """Fail fast (before loading anything) when ``host:port`` cannot be listened on."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as err:
        explained = _explain(err, host, port)
        if explained is not None:
            raise explained from err
        raise


def start_or_explain(server: ViewerServer, on_ready: Callable[[str], None]) -> None:
    """Serve until Ctrl-C; a port that cannot be opened becomes one clear error."""
    try:
        server.serve_forever(on_ready)
    except OSError as err:
        explained = _explain(err, server.host, server.port)
        if explained is not None:
            raise explained from err
        raise
