"""Everything ``headstudio view`` does between loading the avatar and serving it."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

from ..errors import HeadStudioError
from .assets import build_viewer_data
from .presets import fit_presets
from .server import ViewerServer

__all__ = ["prepare_server", "start_or_explain"]

log = logging.getLogger(__name__)


def prepare_server(
    avatar: Any,
    motion: Any,
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


def start_or_explain(server: ViewerServer, on_ready: Any) -> None:
    """Serve until Ctrl-C; a port that cannot be opened becomes one clear error."""
    try:
        server.serve_forever(on_ready)
    except OSError as err:
        if err.errno in (errno.EADDRINUSE, errno.EACCES):
            raise HeadStudioError(
                f"cannot listen on {server.host}:{server.port} ({err.strerror}); pass another --port, "
                "or --port 0 for any free one."
            ) from err
        if err.errno in (errno.EADDRNOTAVAIL, -2, -3, -5):  # gai errors: unknown host name
            raise HeadStudioError(
                f"--host {server.host} is not an address of this machine; use 127.0.0.1 (default) or 0.0.0.0."
            ) from err
        raise
