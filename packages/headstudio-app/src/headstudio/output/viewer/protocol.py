"""The viewer's websocket protocol: the page asks for poses, the server answers with vertices.

Page → server, one JSON object per text message (at most :data:`MAX_MESSAGE_BYTES`)::

    {"type": "pose", "seq": 7, "preset": "smile" | null, "expression": [K numbers],
     "jaw": 0.2, "neck": [x, y, z], "eyes": [pitch, yaw]}
    {"type": "frame", "seq": 8, "index": 12}

Server → page, one binary message per answer: ``u32 magic "HSV1"``, ``u32 seq`` (of the
request), ``i32 frame`` (the motion frame, ``-1`` for a slider pose), then ``V*3`` float32
vertices, all little-endian (about 60 KB for FLAME's 5023 vertices).

A slider pose is the preset's pose under the sliders (:func:`pose_flame_params`, the same rule
as the page's ``sliderPose``): the sliders replace the first ``K`` expression components, the
jaw's x rotation (opening), the neck rotation and the x/y rotations (pitch, yaw) of both eyes; the
preset keeps the rest (its other expression components, the jaw's y/z, the eyes' z).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flame_core import FlameParams

__all__ = [
    "MAGIC",
    "MAX_MESSAGE_BYTES",
    "ProtocolError",
    "PoseRequest",
    "FrameRequest",
    "parse_message",
    "encode_vertices",
    "decode_vertices",
    "pose_flame_params",
]

MAGIC = 0x31565348  # b"HSV1" read as a little-endian u32
MAX_MESSAGE_BYTES = 1 << 16
#: Largest accepted absolute value of a rotation (radians) and of an expression coefficient.
MAX_ANGLE = math.pi
MAX_EXPRESSION = 10.0


class ProtocolError(ValueError):
    """A websocket message the server ignores; ``str(err)`` says why (for the log line)."""


@dataclass(frozen=True)
class PoseRequest:
    """A slider pose (see the module docstring)."""

    seq: int
    preset: str | None
    expression: tuple[float, ...]
    jaw: float
    neck: tuple[float, float, float]
    eyes: tuple[float, float]


@dataclass(frozen=True)
class FrameRequest:
    """Frame ``index`` of the motion."""

    seq: int
    index: int


def _number(value: Any, name: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError(f"'{name}' must be a finite number, got {value!r:.40}")
    if abs(value) > limit:
        raise ProtocolError(f"'{name}' = {value} is outside ±{limit}")
    return float(value)


def _numbers(value: Any, name: str, count: int | None, limit: float) -> tuple[float, ...]:
    if not isinstance(value, list) or (count is not None and len(value) != count):
        want = f"{count} numbers" if count is not None else "a list of numbers"
        raise ProtocolError(f"'{name}' must be {want}, got {value!r:.40}")
    return tuple(_number(v, f"{name}[{i}]", limit) for i, v in enumerate(value))


def parse_message(
    message: str | bytes, num_sliders: int, presets: Sequence[str], num_frames: int
) -> PoseRequest | FrameRequest:
    """Validate one message from the page.

    Args:
        message: the websocket message.
        num_sliders: ``K``, the most expression values a pose may carry.
        presets: the preset names the server knows.
        num_frames: frames of the motion (0: none).

    Raises:
        ProtocolError: anything but a well-formed request (binary, too long, not JSON, unknown
            type, missing or out-of-range fields).
    """
    if isinstance(message, (bytes, bytearray, memoryview)):
        raise ProtocolError("binary messages are not part of the protocol")
    if len(message) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(message)} bytes (at most {MAX_MESSAGE_BYTES})")
    try:
        msg = json.loads(message)
    except (ValueError, RecursionError) as err:
        raise ProtocolError(f"not JSON ({err})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a message must be a JSON object")
    seq = msg.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**32:
        raise ProtocolError(f"'seq' must be an integer in 0..2^32-1, got {seq!r:.40}")
    kind = msg.get("type")
    if kind == "frame":
        index = msg.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_frames:
            raise ProtocolError(f"'index' must be a motion frame 0..{num_frames - 1}, got {index!r:.40}")
        return FrameRequest(seq, index)
    if kind != "pose":
        raise ProtocolError(f"unknown message type {kind!r:.40}; expected 'pose' or 'frame'")
    preset = msg.get("preset")
    if preset is not None and preset not in presets:
        raise ProtocolError(f"unknown preset {preset!r:.40}; known: {', '.join(presets) or 'none'}")
    expression = _numbers(msg.get("expression", []), "expression", None, MAX_EXPRESSION)
    if len(expression) > num_sliders:
        raise ProtocolError(f"'expression' has {len(expression)} values; this head has {num_sliders} sliders")
    neck = _numbers(msg.get("neck", [0, 0, 0]), "neck", 3, MAX_ANGLE)
    eyes = _numbers(msg.get("eyes", [0, 0]), "eyes", 2, MAX_ANGLE)
    jaw = _number(msg.get("jaw", 0.0), "jaw", MAX_ANGLE)
    return PoseRequest(seq, preset, expression, jaw, neck, eyes)  # type: ignore[arg-type]


def encode_vertices(seq: int, frame: int, vertices: torch.Tensor | np.ndarray) -> bytes:
    """The binary answer: header + ``vertices [V, 3]`` as little-endian float32."""
    v = vertices.detach().cpu().numpy() if isinstance(vertices, torch.Tensor) else np.asarray(vertices)
    return struct.pack("<IIi", MAGIC, seq, frame) + np.ascontiguousarray(v, dtype="<f4").tobytes()


def decode_vertices(data: bytes) -> tuple[int, int, np.ndarray]:
    """Inverse of :func:`encode_vertices`: ``(seq, frame, vertices [V, 3])``."""
    magic, seq, frame = struct.unpack_from("<IIi", data)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic:#x}")
    return seq, frame, np.frombuffer(data, "<f4", offset=12).reshape(-1, 3)


def pose_flame_params(
    req: PoseRequest, presets: Mapping[str, Mapping[str, torch.Tensor]], num_expression: int
) -> FlameParams:
    """FLAME parameters (``[1, ·]`` tensors) of a slider pose.

    Args:
        req: the request.
        presets: ``{name: {"expression" [E], "jaw_pose" [3], "eye_pose" [6]}}`` fitted to the head.
        num_expression: the head's ``E``.
    """
    p = presets.get(req.preset) if req.preset else None
    expr = torch.zeros(num_expression)
    jaw = torch.zeros(3)
    eyes = torch.zeros(6)
    if p is not None:
        e = p["expression"].reshape(-1).float()[:num_expression]
        expr[: e.shape[0]] = e
        jaw = p["jaw_pose"].reshape(3).float().clone()
        eyes = p["eye_pose"].reshape(6).float().clone()
    k = min(len(req.expression), num_expression)
    expr[:k] = torch.tensor(req.expression[:k])
    jaw[0] = req.jaw
    eyes[0] = eyes[3] = req.eyes[0]
    eyes[1] = eyes[4] = req.eyes[1]
    return FlameParams(
        expression=expr[None],
        jaw_pose=jaw[None],
        neck_pose=torch.tensor(req.neck, dtype=torch.float32)[None],
        eye_pose=eyes[None],
    )
