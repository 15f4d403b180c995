"""A minimal glTF 2.0 binary (GLB) builder: one buffer, typed accessors, embedded PNG images.

Only what the exporter needs: :class:`GltfBuilder` collects the JSON document and the binary
chunk; :meth:`GltfBuilder.glb_bytes` lays them out as a GLB (12-byte header, a JSON chunk padded
with spaces, a BIN chunk padded with zeros, every chunk 4-byte aligned).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

__all__ = ["GltfBuilder", "ARRAY_BUFFER", "ELEMENT_ARRAY_BUFFER"]

ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
_COMPONENT = {
    np.dtype(np.float32): 5126,
    np.dtype(np.uint32): 5125,
    np.dtype(np.uint16): 5123,
    np.dtype(np.uint8): 5121,
}
_TYPE = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
_GLB_MAGIC, _JSON, _BIN = 0x46546C67, 0x4E4F534A, 0x004E4942


class GltfBuilder:
    """Collects a glTF document; every ``add_*`` returns the index of what it added."""

    def __init__(self, generator: str = "headstudio") -> None:
        self.doc: dict[str, Any] = {"asset": {"version": "2.0", "generator": generator}}
        self._bin = bytearray()

    def _list(self, key: str) -> list[Any]:
        return self.doc.setdefault(key, [])

    def add(self, key: str, item: dict[str, Any]) -> int:
        """Append ``item`` to the top-level array ``key``; returns its index."""
        lst = self._list(key)
        lst.append(item)
        return len(lst) - 1

    def add_buffer_view(self, data: bytes, target: int | None = None, stride: int | None = None) -> int:
        """Append bytes (4-byte aligned) as a buffer view."""
        while len(self._bin) % 4:
            self._bin.append(0)
        view: dict[str, Any] = {"buffer": 0, "byteOffset": len(self._bin), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        if stride is not None:
            view["byteStride"] = stride
        self._bin.extend(data)
        return self.add("bufferViews", view)

    def add_accessor(
        self,
        array: np.ndarray,
        target: int | None = ARRAY_BUFFER,
        normalized: bool = False,
        min_max: bool = False,
        mat4: bool = False,
    ) -> int:
        """An accessor over ``array`` ``[count]`` or ``[count, k]`` (float32/uint32/uint16/uint8).

        ``mat4``: ``[count, 16]`` column-major matrices (type ``MAT4``); ``min_max``: write the
        per-component ``min``/``max`` (required for POSITION and animation inputs).
        """
        a = np.ascontiguousarray(array)
        if a.dtype not in _COMPONENT:
            raise TypeError(f"unsupported accessor dtype {a.dtype}")
        k = 1 if a.ndim == 1 else int(a.shape[1])
        acc: dict[str, Any] = {
            "bufferView": self.add_buffer_view(a.tobytes(), target),
            "componentType": _COMPONENT[a.dtype],
            "count": int(a.shape[0]),
            "type": "MAT4" if mat4 else _TYPE[k],
        }
        if normalized:
            acc["normalized"] = True
        if min_max:
            flat = a.reshape(a.shape[0], -1)
            cast = float if a.dtype == np.float32 else int
            acc["min"] = [cast(x) for x in flat.min(0)]
            acc["max"] = [cast(x) for x in flat.max(0)]
        return self.add("accessors", acc)

    def add_png(self, png: bytes, name: str) -> int:
        """An image stored in the buffer (``image/png``)."""
        return self.add(
            "images", {"name": name, "bufferView": self.add_buffer_view(png), "mimeType": "image/png"}
        )

    def use_extension(self, name: str) -> None:
        """List ``name`` in ``extensionsUsed`` (once)."""
        used = self._list("extensionsUsed")
        if name not in used:
            used.append(name)

    def glb_bytes(self) -> bytes:
        """The GLB file."""
        while len(self._bin) % 4:
            self._bin.append(0)
        doc = dict(self.doc)
        if self._bin:
            doc["buffers"] = [{"byteLength": len(self._bin)}]
        js = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
        js += b" " * (-len(js) % 4)
        total = 12 + 8 + len(js) + (8 + len(self._bin) if self._bin else 0)
        out = bytearray(struct.pack("<III", _GLB_MAGIC, 2, total))
        out += struct.pack("<II", len(js), _JSON) + js
        if self._bin:
            out += struct.pack("<II", len(self._bin), _BIN) + self._bin
        return bytes(out)


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a GLB into ``(json document, BIN chunk)``.

    Raises:
        ValueError: not a GLB version 2 (the message says which part is wrong).
    """
    if len(data) < 20:
        raise ValueError("not a GLB: shorter than its 12-byte header and one chunk")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC or version != 2 or length != len(data):
        raise ValueError(
            f"not a GLB 2.0 file (magic {magic:#x}, version {version}, length {length} of {len(data)})"
        )
    jlen, jtype = struct.unpack_from("<II", data, 12)
    if jtype != _JSON:
        raise ValueError("the first GLB chunk is not JSON")
    doc = json.loads(data[20 : 20 + jlen])
    off = 20 + jlen
    binary = b""
    if off + 8 <= len(data):
        blen, btype = struct.unpack_from("<II", data, off)
        if btype == _BIN:
            binary = data[off + 8 : off + 8 + blen]
    return doc, binary


_DTYPE = {v: k for k, v in _COMPONENT.items()}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def read_accessor(doc: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    """Accessor ``index`` as an array ``[count]`` or ``[count, k]`` (tightly packed views only)."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dt = _DTYPE[acc["componentType"]]
    k = _WIDTH[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    a = np.frombuffer(binary, dt, count=acc["count"] * k, offset=start)
    return a if k == 1 else a.reshape(acc["count"], k)
