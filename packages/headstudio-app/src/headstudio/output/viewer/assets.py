"""What the browser viewer loads: the avatar's rigged Gaussians, its faces, the default camera.

The page gets one JSON manifest and one little-endian binary blob of named arrays
(:func:`pack_arrays`); the manifest's ``buffers`` entry says where each array lies::

    {"format": "headstudio-viewer", "version": 1, "num_gaussians": N, "num_vertices": V,
     "num_faces": F, "sh_degree": d,
     "buffers": {"means": {"offset": 0, "dtype": "f32", "shape": [N, 3]}, ...},
     "camera": {"target": [x, y, z], "distance": D, "fovy": 30.0, "background": [1, 1, 1]},
     "head": {"source": "procedural" | "flame", "num_expression": E, "sliders": [names...]},
     "presets": [...], "motion": {...} | null, "audio": "audio.wav" | null, "head_model": {...} | null}

Arrays (``avatar.bin``): ``means [N,3]``, ``quats [N,4]`` (wxyz), ``log_scales [N,3]`` (the
triangle-local parameters of ``Avatar``), ``opacities [N]`` (activated), ``sh [N,K,3]``,
``face_ids [N]`` (u32), ``faces [F,3]`` (u32) and ``vertices [V,3]``: the avatar's head at the
neutral pose with its shape β. The page deforms the Gaussians itself from posed vertices.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flame_core import FlameModel, MotionSequence

from ...avatar import Avatar
from ..rendering import ViewSettings, frame_avatar

__all__ = [
    "FORMAT",
    "VERSION",
    "NUM_EXPRESSION_SLIDERS",
    "PROCEDURAL_EXPRESSION_NAMES",
    "ViewerData",
    "pack_arrays",
    "unpack_arrays",
    "avatar_arrays",
    "default_camera",
    "slider_names",
    "preset_entries",
    "build_viewer_data",
]

FORMAT = "headstudio-viewer"
VERSION = 1
#: Expression components with a slider (the first ones of the head's basis).
NUM_EXPRESSION_SLIDERS = 10
#: The procedural head's first ten expression components (flame_core's fixed meanings).
PROCEDURAL_EXPRESSION_NAMES = (
    "smile", "pucker", "mouth stretch", "brow raise", "brow furrow", "blink left", "blink right",
    "cheek puff", "upper-lip raise", "jaw-open helper",
)  # fmt: skip
_DTYPES = {"f32": np.float32, "u32": np.uint32, "u16": np.uint16}
_ALIGN = 16


def pack_arrays(arrays: dict[str, np.ndarray]) -> tuple[bytes, dict[str, dict[str, Any]]]:
    """Concatenate arrays (float32 / uint32 / uint16) into one little-endian blob.

    Returns:
        ``(blob, layout)`` with ``layout[name] = {"offset", "dtype", "shape"}``; every array
        starts on a 16-byte boundary so the page can view it without copying.
    """
    parts: list[bytes] = []
    layout: dict[str, dict[str, Any]] = {}
    offset = 0
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        code = next((k for k, t in _DTYPES.items() if a.dtype == t), None)
        if code is None:
            raise TypeError(f"pack_arrays: '{name}' has dtype {a.dtype}; use float32, uint32 or uint16")
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        pad = (-offset) % _ALIGN
        parts.append(b"\0" * pad)
        offset += pad
        layout[name] = {"offset": offset, "dtype": code, "shape": list(a.shape)}
        parts.append(data)
        offset += len(data)
    return b"".join(parts), layout


def unpack_arrays(blob: bytes, layout: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_arrays` (copies)."""
    out = {}
    for name, spec in layout.items():
        dt = np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
        count = int(np.prod(spec["shape"])) if spec["shape"] else 1
        out[name] = np.frombuffer(blob, dt, count, spec["offset"]).reshape(spec["shape"]).copy()
    return out


def _np(t: torch.Tensor, dtype: Any = np.float32) -> np.ndarray:
    return t.detach().cpu().numpy().astype(dtype)


def avatar_arrays(avatar: Avatar) -> dict[str, np.ndarray]:
    """The arrays of ``avatar.bin`` (see the module docstring) from an ``Avatar``."""
    with torch.no_grad():
        verts = avatar.pose()[0]
    return {
        "means": _np(avatar.means),
        "quats": _np(avatar.quats),
        "log_scales": _np(avatar.log_scales),
        "opacities": _np(torch.sigmoid(avatar.opacity_logits)),
        "sh": _np(avatar.sh),
        "face_ids": _np(avatar.face_ids, np.uint32),
        "faces": _np(avatar.head.faces, np.uint32),
        "vertices": _np(verts),
    }


def default_camera(avatar: Avatar, settings: ViewSettings | None = None) -> dict[str, Any]:
    """The view ``headstudio render`` frames the neutral head with: target, distance, fovy."""
    settings = settings or ViewSettings()
    target, dist = frame_avatar(avatar, settings)
    return {
        "target": [float(x) for x in target.cpu().tolist()],
        "distance": float(dist),
        "fovy": float(settings.fovy_deg),
        "elevation": float(settings.elevation_deg),
        "background": [float(c) for c in settings.background],
    }


def slider_names(head: FlameModel) -> list[str]:
    """Names of the expression sliders: the procedural head's meanings, else ``expression k``."""
    count = min(NUM_EXPRESSION_SLIDERS, int(getattr(head, "num_expression", NUM_EXPRESSION_SLIDERS)))
    if str(getattr(head, "source", "")) == "procedural":
        return list(PROCEDURAL_EXPRESSION_NAMES[:count])
    return [f"expression {k}" for k in range(count)]


def preset_entries(presets: dict[str, dict[str, torch.Tensor]], num_sliders: int) -> list[dict[str, Any]]:
    """The presets as the page's manifest lists them: the slider values each one sets.

    Args:
        presets: ``{name: {"expression" [E], "jaw_pose" [3], "eye_pose" [6]}}``
            (:func:`headstudio.output.viewer.presets.fit_presets`).
        num_sliders: ``K``, the expression sliders.

    Returns:
        ``[{"name", "expression": [first K components], "jaw": [3], "eyes": [6]}, ...]`` (the
        server and an exported head model keep the components beyond the sliders).
    """
    return [
        {
            "name": name,
            "expression": [float(x) for x in p["expression"].reshape(-1)[:num_sliders].tolist()],
            "jaw": [float(x) for x in p["jaw_pose"].reshape(3).tolist()],
            "eyes": [float(x) for x in p["eye_pose"].reshape(6).tolist()],
        }
        for name, p in presets.items()
    ]


@dataclass
class ViewerData:
    """The files the page loads: a manifest and named binary blobs (``avatar.bin``, ...).

    Attributes:
        manifest: the JSON manifest (``avatar.json``).
        blobs: ``{file name: bytes}`` the manifest points at.
    """

    manifest: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)

    def manifest_json(self) -> bytes:
        """The manifest as UTF-8 JSON."""
        return json.dumps(self.manifest, separators=(",", ":"), allow_nan=False).encode()


def build_viewer_data(
    avatar: Avatar,
    presets: dict[str, dict[str, torch.Tensor]] | None = None,
    motion: MotionSequence | None = None,
    audio: str | Path | None = None,
) -> ViewerData:
    """Manifest + ``avatar.bin`` of an avatar, as ``headstudio view`` serves them.

    Args:
        avatar: a ``headstudio.avatar.Avatar``.
        presets: fitted presets (:func:`headstudio.output.viewer.presets.fit_presets`) listed for the page.
        motion: a ``MotionSequence`` the server streams frame by frame (manifest ``motion.file``
            is ``null``; an export replaces it with baked frames).
        audio: an audio file served as ``audio<suffix>`` beside the page.
    """
    blob, layout = pack_arrays(avatar_arrays(avatar))
    head = avatar.head
    source = str(getattr(head, "source", "?"))
    sliders = slider_names(head)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "num_gaussians": int(avatar.num_gaussians),
        "num_vertices": int(head.num_vertices),
        "num_faces": int(head.faces.shape[0]),
        "sh_degree": int(avatar.sh_degree),
        "buffers": {"avatar.bin": layout},
        "camera": default_camera(avatar),
        "head": {
            "source": "procedural" if source == "procedural" else "flame",
            "num_expression": int(head.num_expression),
            "sliders": sliders,
        },
        "presets": preset_entries(presets or {}, len(sliders)),
        "motion": None if motion is None else {"frames": len(motion), "fps": float(motion.fps), "file": None},
        "audio": None if audio is None else "audio" + Path(audio).suffix.lower(),
        "head_model": None,
        "prompt": avatar.metadata.get("prompt"),
    }
    for k, v in manifest["camera"].items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"default camera {k} is not finite ({v}); the avatar's vertices are broken")
    return ViewerData(manifest, {"avatar.bin": blob})
