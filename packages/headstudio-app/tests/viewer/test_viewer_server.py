"""``headstudio view``'s server: what it serves, to whom, and how it treats bad websocket messages."""

from __future__ import annotations

import http.client
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from headstudio.output.viewer.protocol import (
    FrameRequest,
    PoseRequest,
    ProtocolError,
    decode_vertices,
    parse_message,
    pose_flame_params,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

PRESETS = {
    "smirk": {
        "expression": torch.linspace(0.3, -0.3, 100),
        "jaw_pose": torch.tensor([0.05, 0.01, 0.02]),
        "eye_pose": torch.tensor([0.1, 0.1, 0.03, 0.1, 0.1, -0.03]),
    }
}


def get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("GET", path, skip_host=headers is not None and "Host" in headers)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def test_serves_the_page_and_this_avatar_only(teacher: Any, serve: Any) -> None:
    srv = serve(teacher)
    status, headers, body = get(srv.url, "/")
    assert (
        status == 200
        and b'<script src="viewer.js">' in body
        and headers["content-type"].startswith("text/html")
    )
    assert b"headstudio:data" not in body
    status, headers, body = get(srv.url, "/avatar.json")
    manifest = json.loads(body)
    assert status == 200 and manifest["num_gaussians"] == teacher.num_gaussians
    status, _, body = get(srv.url, "/avatar.bin")
    assert status == 200 and len(body) == len(srv.data.blobs["avatar.bin"])
    status, headers, js = get(srv.url, "/viewer.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and len(js) > 100_000
    # a byte range (media elements seek with these)
    status, headers, part = get(srv.url, "/avatar.bin", {"Range": "bytes=16-115"})
    assert status == 206 and part == srv.data.blobs["avatar.bin"][16:116]
    assert headers["content-range"] == f"bytes 16-115/{len(srv.data.blobs['avatar.bin'])}"


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "/static/viewer.js",
        "/viewer.js/../../cli.py",
        "//etc/passwd",
        "/avatar.ply",
        "/headstudio/viewer/server.py",
        "/index.html/",
    ],
)
def test_anything_else_is_404(teacher: Any, serve: Any, path: str) -> None:
    srv = serve(teacher)
    status, _, body = get(srv.url, path)
    assert status == 404 and body == b"not found\n"


def test_loopback_server_refuses_other_host_names(teacher: Any, serve: Any) -> None:
    """A DNS-rebinding page (evil.example resolving to 127.0.0.1) gets nothing."""
    srv = serve(teacher)
    assert srv.token is None
    status, _, _ = get(srv.url, "/avatar.json", {"Host": f"evil.example:{srv.port}"})
    assert status == 403
    status, _, _ = get(srv.url, "/avatar.json", {"Host": f"localhost:{srv.port}"})
    assert status == 200


def test_beyond_loopback_every_request_needs_the_token(teacher: Any, serve: Any) -> None:
    srv = serve(teacher, host="0.0.0.0")
    assert srv.token and len(srv.token) >= 24 and f"?token={srv.token}" in srv.url
    for path in ("/", "/avatar.json", "/avatar.bin", "/viewer.js", "/ws", "/nope"):
        status, _, body = get(srv.url, path)
        assert status == 403, path
        assert b"token" in body
    status, _, _ = get(srv.url, "/avatar.json?token=wrong-" + srv.token[6:])
    assert status == 403
    status, headers, _ = get(srv.url, f"/?token={srv.token}")
    assert status == 200 and "HttpOnly" in headers["set-cookie"]
    cookie = headers["set-cookie"].split(";")[0]
    status, _, _ = get(srv.url, "/avatar.bin", {"Cookie": cookie})
    assert status == 200
    with pytest.raises(InvalidStatus) as err:
        connect(f"ws://127.0.0.1:{srv.port}/ws", open_timeout=10).close()
    assert err.value.response.status_code == 403
    with connect(f"ws://127.0.0.1:{srv.port}/ws?token={srv.token}", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "pose", "seq": 1}))
        assert decode_vertices(ws.recv(timeout=30))[0] == 1


def test_websocket_answers_poses_and_frames_and_ignores_garbage(
    teacher: Any, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from flame_core.motion import procedural_talking_motion
    from headstudio.head_motion import fit_flame_params

    motion = procedural_talking_motion(num_frames=40)
    srv = serve(teacher, presets=PRESETS, motion=motion)
    garbage = [
        "not json",
        "[1, 2]",
        "{}",
        json.dumps({"type": "pose", "seq": 2, "jaw": "wide"}),
        json.dumps({"type": "pose", "seq": 3, "jaw": float("nan")}),
        json.dumps({"type": "pose", "seq": 4, "preset": "unknown"}),
        json.dumps({"type": "pose", "seq": 5, "expression": [0.1] * 11}),
        json.dumps({"type": "pose", "seq": 6, "neck": [0, 0]}),
        json.dumps({"type": "frame", "seq": 7, "index": 40}),
        json.dumps({"type": "explode", "seq": 8}),
        b"\x00\x01binary",
        "[" * 5000 + "]" * 5000,
    ]
    with caplog.at_level(logging.WARNING, logger="headstudio.output.viewer.server"):
        with connect(f"ws://127.0.0.1:{srv.port}/ws", open_timeout=10) as ws:
            for g in garbage:
                ws.send(g)
            req = {"type": "pose", "seq": 9, "preset": "smirk", "expression": [0.5, 0.2], "jaw": 0.2,
                   "neck": [0.1, 0, 0], "eyes": [0.05, -0.1]}  # fmt: skip
            ws.send(json.dumps(req))
            seq, frame, verts = decode_vertices(ws.recv(timeout=60))
            ws.send(json.dumps({"type": "frame", "seq": 10, "index": 33}))
            seq2, frame2, verts2 = decode_vertices(ws.recv(timeout=60))
    assert (seq, frame, seq2, frame2) == (9, -1, 10, 33)  # no answer to any of the garbage
    pose = PoseRequest(9, "smirk", (0.5, 0.2), 0.2, (0.1, 0.0, 0.0), (0.05, -0.1))
    with torch.no_grad():
        want = teacher.pose(pose_flame_params(pose, PRESETS, 100))[0].numpy()
        want2 = teacher.pose(fit_flame_params(motion.params([33]), 100))[0].numpy()
    np.testing.assert_allclose(verts, want, atol=1e-6)
    np.testing.assert_allclose(verts2, want2, atol=1e-6)
    assert verts.nbytes == 12 * teacher.head.num_vertices
    ignored = [r for r in caplog.records if "ignored a websocket message" in r.getMessage()]
    assert len(ignored) == len(garbage)


def test_oversized_or_cross_origin_websockets_do_not_hurt_the_server(teacher: Any, serve: Any) -> None:
    srv = serve(teacher)
    with pytest.raises(InvalidStatus) as err:
        connect(f"ws://127.0.0.1:{srv.port}/ws", origin="http://evil.example", open_timeout=10).close()
    assert err.value.response.status_code == 403
    with connect(f"ws://127.0.0.1:{srv.port}/ws", open_timeout=10) as ws:
        ws.send("x" * (1 << 17))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    with connect(
        f"ws://127.0.0.1:{srv.port}/ws", origin=f"http://127.0.0.1:{srv.port}", open_timeout=10
    ) as ws:
        ws.send(json.dumps({"type": "pose", "seq": 1}))
        assert decode_vertices(ws.recv(timeout=30))[0] == 1


# --------------------------------------------------------------------------------- protocol


def test_parse_message_accepts_the_protocol() -> None:
    pose = parse_message(
        json.dumps({"type": "pose", "seq": 3, "preset": "smile", "expression": [1, 2.5], "jaw": 0.1,
                    "neck": [0, 0.1, 0], "eyes": [0.2, 0]}),  # fmt: skip
        10, ["smile"], 0,
    )  # fmt: skip
    assert pose == PoseRequest(3, "smile", (1.0, 2.5), 0.1, (0.0, 0.1, 0.0), (0.2, 0.0))
    assert parse_message('{"type": "frame", "seq": 0, "index": 4}', 10, [], 5) == FrameRequest(0, 4)
    assert parse_message('{"type": "pose", "seq": 1}', 10, [], 0) == PoseRequest(
        1, None, (), 0.0, (0, 0, 0), (0, 0)
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ('{"type": "pose", "seq": -1}', "seq"),
        ('{"type": "pose", "seq": true}', "seq"),
        ('{"type": "pose", "seq": 1, "jaw": 4}', "outside"),
        ('{"type": "pose", "seq": 1, "expression": [1e9]}', "outside"),
        ('{"type": "pose", "seq": 1, "eyes": [0, 0, 0]}', "eyes"),
        ('{"type": "frame", "seq": 1, "index": 1.5}', "index"),
        ('{"type": "frame", "seq": 1, "index": 5}', "index"),
        ("[]", "object"),
        ("{", "JSON"),
    ],
)
def test_parse_message_rejects(message: str, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_message(message, 10, ["smile"], 5)


def test_slider_pose_lies_on_top_of_the_preset() -> None:
    p = PRESETS["smirk"]
    pose = pose_flame_params(
        PoseRequest(0, "smirk", (1.0, 2.0), 0.3, (0.1, 0.2, 0.3), (0.4, 0.5)), PRESETS, 100
    )
    assert pose.expression[0, :2].tolist() == [1.0, 2.0]
    assert torch.equal(pose.expression[0, 2:], p["expression"][2:])
    assert pose.jaw_pose[0].tolist() == pytest.approx([0.3, 0.01, 0.02])
    assert pose.eye_pose[0].tolist() == pytest.approx([0.4, 0.5, 0.03, 0.4, 0.5, -0.03])
    assert pose.neck_pose[0].tolist() == pytest.approx([0.1, 0.2, 0.3])
    plain = pose_flame_params(PoseRequest(0, None, (), 0.0, (0, 0, 0), (0, 0)), PRESETS, 100)
    assert set(plain.kwargs()) == {"expression", "jaw_pose", "neck_pose", "eye_pose"}
    assert all(float(v.abs().max()) == 0 for v in plain.kwargs().values())
