"""The PLY layout's shared parts (split out of :mod:`rigged_gaussians.ply`, which re-exports the
public ones): property types, the checksum, the errors and :class:`PlyGaussians`."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["SH_C0", "PlyError", "PlyIntegrityError", "PlyGaussians"]

SH_C0 = 0.28209479177387814
_CHUNK = 1000  # characters of JSON per header comment line
_OPACITY_EPS = 1e-7
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


_HASH_TAG = "rg_sha256"


class PlyError(ValueError):
    """A PLY file that cannot be read as 3D Gaussians (the message names the file)."""


class PlyIntegrityError(PlyError):
    """The file's ``rg_sha256`` checksum does not match its contents: it was corrupted after writing."""


def _digest(header_lines: list[str], body: bytes | memoryview) -> str:
    """SHA-256 of the header lines (without the checksum line), each + ``\n``, then the body."""
    h = hashlib.sha256()
    h.update("".join(ln + "\n" for ln in header_lines).encode("ascii"))
    h.update(body)
    return h.hexdigest()


@dataclass
class PlyGaussians:
    """Gaussians read from a PLY (numpy arrays, world space as stored).

    Attributes:
        means: ``[N,3]`` float32.
        quats: ``[N,4]`` wxyz, as stored (3DGS files are not always normalised).
        scales: ``[N,3]`` linear (``exp`` of the stored log-scales).
        opacities: ``[N]`` activated (``sigmoid`` of the stored logits).
        sh: ``[N,K,3]`` SH coefficients (``K = 1`` for DC only).
        extra: rigging extras by name (without the ``rg_`` prefix): ``[N]`` or ``[N,k]`` arrays.
        metadata: the JSON metadata (``{}`` when the file has none).
        integrity: ``"verified"`` (the checksum matched), ``"absent"`` (the file has none: older
            or another tool's) or ``"skipped"`` (``load_ply(..., verify=False)``).
        property_types: the vertex properties as the header declares them, name -> numpy type
            code (``"f4"``, ``"i4"``, ...), so a reader can insist on the types it wrote.
    """

    means: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    sh: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    integrity: Literal["verified", "absent", "skipped"] = "absent"
    property_types: dict[str, str] = field(default_factory=dict)

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.sh.shape[1]))) - 1
