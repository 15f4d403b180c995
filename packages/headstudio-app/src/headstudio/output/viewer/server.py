"""``headstudio view``'s local server: the page, this avatar's data, and the head model over a websocket.

One port serves both HTTP (the bundle and the avatar's files, from memory) and the websocket
(``/ws``), through the ``websockets`` library. Security:

* it binds to 127.0.0.1 unless told otherwise; bound to loopback it answers only requests whose
  ``Host`` is a loopback name (no DNS rebinding);
* bound beyond loopback, every request needs the random token printed in the URL (``?token=``,
  or the cookie the page gets with it); without it the answer is 403;
* only a fixed list of files is served (the bundle, ``avatar.json``, ``avatar.bin``, the audio);
  any other path, traversal included, is 404;
* the websocket only accepts pages of this server (``Origin``); malformed messages are logged
  and ignored, never fatal.

The head model (FLAME LBS, whose data may be licensed) runs here; only vertices leave.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import mimetypes
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import torch
from flame_core import FlameParams, MotionSequence
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ...avatar import Avatar
from ...head_motion import fit_flame_params
from .assets import ViewerData
from .bundle import static_files
from .protocol import (
    MAX_MESSAGE_BYTES,
    FrameRequest,
    ProtocolError,
    encode_vertices,
    parse_message,
    pose_flame_params,
)

__all__ = ["ViewerServer", "is_loopback"]

log = logging.getLogger(__name__)

COOKIE = "headstudio_token"
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
_FRAME_CACHE = 512
_FRAME_BATCH = 32


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server on this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class _File:
    body: bytes | None
    path: Path | None
    content_type: str


class ViewerServer:
    """Serve one avatar to the browser viewer.

    Args:
        avatar: the ``Avatar`` (its head evaluates poses).
        data: the page's files (:func:`headstudio.output.viewer.build_viewer_data` plus motion/presets).
        presets: ``{name: {"expression" [E], "jaw_pose" [3], "eye_pose" [6]}}`` for slider poses.
        motion: the ``MotionSequence`` the page plays, or ``None``.
        audio: an audio file served beside the motion, or ``None``.
        host, port: where to listen (``port=0``: any free port).
        token: required for every request when ``host`` is not loopback (``None``: a random one).
    """

    def __init__(
        self,
        avatar: Avatar,
        data: ViewerData,
        presets: dict[str, dict[str, torch.Tensor]] | None = None,
        motion: MotionSequence | None = None,
        audio: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
    ) -> None:
        self.avatar = avatar
        self.data = data
        self.presets = presets or {}
        self.motion = motion
        self.host = host
        self.port = int(port)
        self.loopback = is_loopback(host)
        self.token = None if self.loopback else (token or secrets.token_urlsafe(24))
        self.num_expression = int(avatar.head.num_expression)
        self.num_sliders = len(data.manifest["head"]["sliders"])
        self.num_frames = len(motion) if motion is not None else 0
        self._frames: OrderedDict[int, bytes] = OrderedDict()
        self._files = self._file_table(audio)
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # ------------------------------------------------------------------------------- files

    def _file_table(self, audio: str | Path | None) -> dict[str, _File]:
        files = {}
        for name, path in static_files().items():
            body = path.read_bytes()
            if name == "index.html":
                body = body.replace(b"<!-- headstudio:data -->", b"")
            files["/" + name] = _File(body, None, _content_type(name))
        files["/"] = files["/index.html"]
        files["/avatar.json"] = _File(self.data.manifest_json(), None, "application/json")
        for name, blob in self.data.blobs.items():
            files["/" + name] = _File(blob, None, "application/octet-stream")
        if audio is not None:
            name = self.data.manifest.get("audio")
            if name:
                files["/" + name] = _File(None, Path(audio), _content_type(name))
        return files

    @property
    def url(self) -> str:
        """The page's URL (with the token when one is needed)."""
        host = self.host if ":" not in self.host else f"[{self.host.strip('[]')}]"
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        query = f"?token={self.token}" if self.token else ""
        return f"http://{host}:{self.port}/{query}"

    # ----------------------------------------------------------------------------- HTTP side

    def _authorised(self, request: Request, query: dict[str, list[str]]) -> tuple[bool, bool]:
        """``(ok, from_query)``: the token is right (or not needed)."""
        if self.token is None:
            return True, False
        given = query.get("token", [""])[0]
        if given and hmac.compare_digest(given.encode(), self.token.encode()):
            return True, True
        cookie = request.headers.get("Cookie", "")
        m = re.search(rf"(?:^|;\s*){COOKIE}=([A-Za-z0-9_\-]+)", cookie)
        if m and hmac.compare_digest(m.group(1).encode(), self.token.encode()):
            return True, False
        return False, False

    def _host_ok(self, request: Request) -> bool:
        if not self.loopback:
            return True
        host = request.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        return name.lower() in _LOOPBACK_NAMES

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer plain HTTP requests; return ``None`` to let ``/ws`` upgrade to a websocket."""
        parts = urlsplit(request.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        if not self._host_ok(request):
            log.warning("refused a request for Host %r (not a loopback name)", request.headers.get("Host"))
            return _plain(HTTPStatus.FORBIDDEN, "forbidden: this server only answers to localhost\n")
        ok, from_query = self._authorised(request, query)
        if not ok:
            return _plain(
                HTTPStatus.FORBIDDEN, "forbidden: open the URL with its ?token= printed by headstudio\n"
            )
        if path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"http://{request.headers.get('Host', '')}":
                log.warning("refused a websocket from origin %r", origin)
                return _plain(HTTPStatus.FORBIDDEN, "forbidden: cross-origin websocket\n")
            return None
        entry = self._files.get(path)
        if entry is None:
            return _plain(HTTPStatus.NOT_FOUND, "not found\n")
        body = entry.body if entry.body is not None else entry.path.read_bytes()  # type: ignore[union-attr]
        headers = Headers()
        headers["Content-Type"] = entry.content_type
        headers["Cache-Control"] = "no-store"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["Accept-Ranges"] = "bytes"
        headers["Connection"] = "close"
        if from_query and self.token:
            headers["Set-Cookie"] = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        status = HTTPStatus.OK
        rng = _byte_range(request.headers.get("Range"), len(body))
        if rng is not None:
            start, end = rng
            headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            body = body[start : end + 1]
            status = HTTPStatus.PARTIAL_CONTENT
        headers["Content-Length"] = str(len(body))
        return Response(status.value, status.phrase, headers, body)

    # ------------------------------------------------------------------------ websocket side

    def _vertices(self, params: FlameParams) -> torch.Tensor:
        with torch.no_grad():
            return self.avatar.pose(params.to(self.avatar.means.device))[0]

    def _evaluate_frames(self, start: int) -> None:
        """Pose motion frames ``start .. start + _FRAME_BATCH - 1`` in one batch (the page asks
        for frames ahead of the playhead, so the next ones are wanted soon) into the cache."""
        idx = list(range(start, min(start + _FRAME_BATCH, self.num_frames)))
        params = fit_flame_params(self.motion.params(idx), self.num_expression)
        with torch.no_grad():
            verts = self.avatar.pose(params.to(self.avatar.means.device))
        for i, v in zip(idx, verts):
            self._frames[i] = encode_vertices(0, i, v)
            self._frames.move_to_end(i)
        while len(self._frames) > _FRAME_CACHE:
            self._frames.popitem(last=False)

    def answer(self, message: str | bytes) -> bytes:
        """The binary answer to one message (raises :class:`ProtocolError` for a bad one)."""
        req = parse_message(message, self.num_sliders, list(self.presets), self.num_frames)
        if isinstance(req, FrameRequest):
            cached = self._frames.get(req.index)
            if cached is None:
                self._evaluate_frames(req.index)
                cached = self._frames[req.index]
            return cached[:4] + req.seq.to_bytes(4, "little") + cached[8:]
        return encode_vertices(
            req.seq, -1, self._vertices(pose_flame_params(req, self.presets, self.num_expression))
        )

    async def _handler(self, ws: ServerConnection) -> None:
        try:
            async for message in ws:
                try:
                    reply = self.answer(message)
                except ProtocolError as err:
                    log.warning("ignored a websocket message from %s: %s", ws.remote_address, err)
                    continue
                await ws.send(reply)
        except ConnectionClosed:
            pass

    # ----------------------------------------------------------------------------- lifecycle

    async def _serve(self, started: threading.Event | None = None) -> None:
        self._stopped = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        async with serve(
            self._handler, self.host, self.port, process_request=self.process_request,
            max_size=MAX_MESSAGE_BYTES, compression=None, server_header=None,
        ) as server:  # fmt: skip
            self._server = server
            self.port = int(server.sockets[0].getsockname()[1])
            if started is not None:
                started.set()
            await self._stopped.wait()

    def serve_forever(self, on_ready: Any = None) -> None:
        """Run until Ctrl-C; ``on_ready(url)`` is called once the port is open."""

        async def main() -> None:
            started = threading.Event()
            task = asyncio.create_task(self._serve(started))
            while not started.is_set() and not task.done():
                await asyncio.sleep(0.01)
            if task.done():
                task.result()
            if on_ready is not None:
                on_ready(self.url)
            await task

        asyncio.run(main())

    def start(self) -> str:
        """Serve from a background thread (tests, notebooks); returns the URL."""
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._serve(started))
            except BaseException as err:  # reported to the caller of start()
                errors.append(err)
                started.set()

        self._thread = threading.Thread(target=run, name="headstudio-view", daemon=True)
        self._thread.start()
        started.wait(30)
        if errors:
            raise errors[0]
        return self.url

    def stop(self) -> None:
        """Stop a server started with :meth:`start`."""
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)


def _content_type(name: str) -> str:
    if name.endswith(".js"):
        return "text/javascript; charset=utf-8"
    kind, _ = mimetypes.guess_type(name)
    if kind is None:
        return "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") else kind


def _plain(status: HTTPStatus, text: str) -> Response:
    headers = Headers()
    headers["Content-Type"] = "text/plain; charset=utf-8"
    headers["Content-Length"] = str(len(text.encode()))
    headers["Connection"] = "close"
    return Response(status.value, status.phrase, headers, text.encode())


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (inclusive) of a single ``bytes=a-b`` range, or ``None`` (whole file)."""
    if not header or size == 0:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    else:
        start, end = max(0, size - int(m.group(2))), size - 1
    if start > end or start >= size:
        return None
    return start, end
