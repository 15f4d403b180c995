"""The avatar file: one standard 3DGS PLY with the rigging and the head's identity.

The Gaussians are stored in world space at the neutral pose (so splat viewers open the file),
the rigging in extra properties (triangle id, local means / quaternions / log-scales / opacity
logits) and the header metadata::

    {"format": "headstudio-avatar", "format_version": 1, "shape": [...], "num_shape": S,
     "num_expression": E, "sh_degree": d, "num_gaussians": N,
     "head": {"identity_hash": "<sha256>", "source": "procedural" | "<path>",
              "mouth_interior": true | false},
     "config": {...} | null, "prompt": "..." | null, "metadata": {...}}

Reading the file (:func:`read_avatar_file`) lives here, matching it to a head model in
:mod:`headstudio.avatar_head`; :meth:`headstudio.avatar.Avatar.load` runs the steps in order.

Reading trusts nothing: the ``rg_sha256`` checksum the writer records (``rigged_gaussians.ply``)
must match (``verify=False`` reads a damaged file anyway, for forensics; a file without one, from
an older headstudio, is read with one warning line), and every field is checked: the Gaussian
count, each property's type, the rigging's shapes, finite and plausible values, triangle ids of
the head, the type of every metadata field. Each failure is one :class:`AvatarFileError` line
naming the file and the field.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rigged_gaussians.ply import PlyError, PlyGaussians, PlyIntegrityError, load_ply

from .errors import HeadStudioError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "AvatarFile",
    "AvatarFileError",
    "rigging_extras",
    "read_avatar_file",
    "damaged",
]

log = logging.getLogger(__name__)

FORMAT = "headstudio-avatar"
FORMAT_VERSION = 1
#: PLY extra properties of the rigging (``rigged_gaussians.ply`` may prefix them with ``rg_``).
EXTRA_FACE = "face_id"
EXTRA_LOCAL = {
    "means": "local_means",
    "quats": "local_quats",
    "log_scales": "local_log_scales",
    "opacity_logits": "local_opacity_logits",
}
_NOT_AN_AVATAR = "give an avatar.ply written by `headstudio generate` or `headstudio demo`"
#: What to do about a damaged avatar (``headstudio.train.runtime.load_avatar`` names the run's checkpoint).
RESTORE_ADVICE = (
    "restore it from its run's checkpoint (`headstudio generate PROMPT «generate:output» RUN "
    "«generate:resume»` rewrites RUN/avatar.ply) or from a backup"
)
CHECKSUM_NAME = "rg_sha256"
#: Limits of the metadata (FLAME has 300 shape and 100 expression components).
MAX_SHAPE, MAX_EXPRESSION = 300, 100
#: Plausible ranges of the local rigging values: far beyond any trained avatar (means are in
#: triangle units, ``exp(40)`` is 2e17 of them), yet a flipped exponent bit lands outside.
LOCAL_LIMITS = {"means": (-1e6, 1e6), "log_scales": (-60.0, 40.0)}


def rigging_extras(face_ids: torch.Tensor, local: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The PLY extra properties of the rigging: ``face_id [N]`` and the local parameters."""
    extra = {EXTRA_FACE: face_ids.detach().cpu().numpy().astype(np.int32)}
    extra.update({v: local[k].detach().float().cpu().numpy() for k, v in EXTRA_LOCAL.items()})
    return extra


@dataclass
class AvatarFile:
    """What an avatar PLY holds, before it is bound to a head.

    Attributes:
        path: the file.
        meta: the header metadata (module docstring).
        face_ids: ``[N]`` long, the triangle of each Gaussian.
        local: local ``means [N,3]``, ``quats [N,4]``, ``log_scales [N,3]``, ``opacity_logits [N]``.
        sh: ``[N, K, 3]`` SH coefficients.
    """

    path: Path
    meta: dict[str, Any]
    face_ids: torch.Tensor
    local: dict[str, torch.Tensor]
    sh: torch.Tensor

    @property
    def head_identity(self) -> tuple[str, str]:
        """``(identity_hash, source)`` of the head model the avatar was made on."""
        ident = self.meta.get("head") or {}
        return str(ident.get("identity_hash", "")), str(ident.get("source", "?"))

    @property
    def head_mouth_interior(self) -> bool | None:
        """Whether the head had a mouth interior; ``None`` for files from before that record
        (the procedural head had one, FLAME files had none)."""
        value = (self.meta.get("head") or {}).get("mouth_interior")
        return None if value is None else bool(value)

    @property
    def num_shape(self) -> int:
        return int(self.meta.get("num_shape", len(self.meta.get("shape", [])) or 100))

    @property
    def num_expression(self) -> int:
        return int(self.meta.get("num_expression", 100))

    @property
    def user_metadata(self) -> dict[str, Any]:
        """The free-form metadata with the ``prompt`` and ``config`` the avatar was saved with."""
        extra = {k: self.meta[k] for k in ("prompt", "config") if self.meta.get(k) is not None}
        return {**(self.meta.get("metadata") or {}), **extra}


class AvatarFileError(HeadStudioError):
    """An avatar file that cannot be used: damaged (``damaged=True``), or not an avatar.

    Attributes:
        path: the file.
        detail: what is wrong, naming the field (``"is corrupted: ..."``, ``"has ..."``).
        damaged: the file is an avatar that was corrupted (restore it) rather than another kind
            of file or a newer format.
        checksum: the damage was found by the ``rg_sha256`` checksum (``verify=False`` reads it).
    """

    def __init__(
        self,
        path: Path,
        detail: str,
        *,
        damaged: bool = True,
        checksum: bool = False,
        advice: str | None = None,
    ) -> None:
        self.path, self.detail, self.damaged, self.checksum = path, detail, damaged, checksum
        super().__init__(f"avatar '{path}' {detail}; {advice or RESTORE_ADVICE}.")


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def damaged(path: Path, detail: str) -> AvatarFileError:
    return AvatarFileError(path, detail if detail.startswith("is ") else f"is damaged: {detail}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _meta_int(meta: dict[str, Any], key: str, lo: int, hi: int, path: Path) -> None:
    if key in meta and not (_is_int(meta[key]) and lo <= meta[key] <= hi):
        expected = f"the integer {lo}" if lo == hi else f"an integer {lo}..{hi}"
        raise damaged(path, f"metadata field '{key}' is {_short(meta[key])}; expected {expected}")


def _check_header(meta: dict[str, Any], path: Path) -> None:
    """The metadata's format, version and the type of every field headstudio reads."""
    if meta.get("format") != FORMAT:
        raise AvatarFileError(
            path,
            "is a Gaussian PLY without headstudio rigging metadata",
            damaged=False,
            advice=_NOT_AN_AVATAR,
        )
    version = meta.get("format_version", 0)
    if _is_int(version) and version > FORMAT_VERSION:
        raise AvatarFileError(
            path,
            f"has avatar format version {version}; this headstudio reads up to {FORMAT_VERSION}",
            damaged=False,
            advice="upgrade headstudio",
        )
    _meta_int(meta, "format_version", 1, FORMAT_VERSION, path)
    _meta_int(meta, "num_shape", 1, MAX_SHAPE, path)
    _meta_int(meta, "num_expression", 0, MAX_EXPRESSION, path)
    _meta_int(meta, "sh_degree", 0, 3, path)
    _meta_int(meta, "num_gaussians", 1, 2**31 - 1, path)
    shape = meta.get("shape", [])
    if not (
        isinstance(shape, list)
        and len(shape) <= MAX_SHAPE
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in shape)
    ):
        raise damaged(
            path,
            f"metadata field 'shape' is {_short(shape)}; expected at most {MAX_SHAPE} finite numbers",
        )
    if "num_shape" in meta and "shape" in meta and len(shape) != meta["num_shape"]:
        raise damaged(
            path, f"metadata field 'shape' has {len(shape)} values but 'num_shape' is {meta['num_shape']}"
        )
    head = meta.get("head")
    if not (
        isinstance(head, dict)
        and isinstance(head.get("identity_hash"), str)
        and re.fullmatch(r"[0-9a-f]{64}", head["identity_hash"])
        and isinstance(head.get("source", ""), str)
        and isinstance(head.get("mouth_interior", False), bool)
    ):
        raise damaged(
            path,
            f"metadata field 'head' is {_short(head)}; expected {{\"identity_hash\": <64 hex digits>, "
            '"source": <text>, "mouth_interior": true | false}',
        )
    for key, kind in (("config", dict), ("metadata", dict), ("prompt", str)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            expected = "a JSON object" if kind is dict else "text"
            raise damaged(path, f"metadata field '{key}' is {_short(meta[key])}; expected {expected} or null")


def _extra(ply: PlyGaussians, name: str, cols: int, path: Path) -> np.ndarray:
    """The rigging property ``name`` as ``[N]`` (``cols = 0``) or ``[N, cols]``, checked."""
    for key in (name, f"rg_{name}"):
        if key in ply.extra:
            a = np.asarray(ply.extra[key])
            break
    else:
        raise AvatarFileError(
            path,
            f"has no rigging property '{name}'; it is not a headstudio avatar",
            damaged=False,
            advice=_NOT_AN_AVATAR,
        )
    n = ply.num_gaussians
    got = a.shape[1] if a.ndim == 2 else 0
    if a.shape[:1] != (n,) or a.ndim > 2 or got != cols:
        raise damaged(path, f"rigging property '{name}' has {got or 'no'} columns; expected {cols or 'none'}")
    return a


def _check_types(ply: PlyGaussians, path: Path) -> None:
    """Every vertex property has the type headstudio writes (float32; ``rg_face_id`` int32)."""
    for name, code in ply.property_types.items():
        want = "i4" if name == f"rg_{EXTRA_FACE}" else "f4"
        if code != want:
            raise damaged(
                path,
                f"vertex property '{name}' is {np.dtype(code).name}; an avatar stores it as "
                f"{np.dtype(want).name} (the header was edited)",
            )


def _check_values(local: dict[str, torch.Tensor], path: Path) -> None:
    """Rigging values inside :data:`LOCAL_LIMITS` (a flipped exponent bit lands far outside)."""
    for key, (lo, hi) in LOCAL_LIMITS.items():
        t = local[key]
        if t.numel() and (t.min() < lo or t.max() > hi):
            raise damaged(
                path,
                f"rigging property '{EXTRA_LOCAL[key]}' holds values in [{float(t.min()):.3g}, "
                f"{float(t.max()):.3g}], outside any avatar's [{lo:g}, {hi:g}]",
            )


def _load_ply(p: Path, verify: bool) -> PlyGaussians:
    try:
        ply = load_ply(p, verify=verify)
    except PlyIntegrityError:
        raise AvatarFileError(
            p,
            f"is corrupted: its {CHECKSUM_NAME} checksum does not match its contents (bit rot, an incomplete "
            "copy or an edit)",
            checksum=True,
        ) from None
    except PlyError as err:
        detail = " ".join(str(err).split())
        for prefix in (f"'{p}': ", f"'{p}' "):
            detail = detail.removeprefix(prefix)
        raise damaged(p, detail) from None
    if ply.integrity == "absent":
        log.warning(
            "avatar '%s' has no integrity checksum (written before headstudio recorded one); it is read "
            "without corruption check",
            p,
        )
    elif ply.integrity == "skipped":
        log.warning("avatar '%s': integrity check skipped (no-verify); the file may be corrupted", p)
    return ply


def read_avatar_file(path: str | Path, verify: bool = True) -> AvatarFile:
    """Read and check an avatar PLY: checksum, format, version, metadata, property types, shapes.

    Args:
        path: the ``.ply``.
        verify: check the file's ``rg_sha256`` checksum (``False``: read a damaged file anyway,
            for forensics; every other check still applies). A file without a checksum (older
            headstudio) is read with one warning line.

    Raises:
        AvatarFileError: a damaged file (checksum mismatch, count, types, shapes, non-finite or
            implausible values, malformed metadata; the message names the field), a PLY that is
            not a headstudio avatar, or a newer format.
        HeadStudioError: a missing file.
    """
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"avatar '{p}' does not exist; check the path.")
    ply = _load_ply(p, verify)
    meta = dict(ply.metadata or {})
    _check_header(meta, p)
    n = ply.num_gaussians
    if n == 0:
        raise damaged(p, "it holds no Gaussians (element vertex 0)")
    if meta.get("num_gaussians", n) != n:
        raise damaged(p, f"its metadata says num_gaussians = {meta['num_gaussians']} but it holds {n}")
    k = ply.sh.shape[1]
    if meta.get("sh_degree", math.isqrt(k) - 1) != math.isqrt(k) - 1:
        raise damaged(
            p, f"its metadata says sh_degree = {meta['sh_degree']} but it holds {k} SH coefficients"
        )
    face = _extra(ply, EXTRA_FACE, 0, p)
    if not np.issubdtype(face.dtype, np.integer):
        raise damaged(p, f"rigging property '{EXTRA_FACE}' is {face.dtype}; expected integer triangle ids")
    cols = {"means": 3, "quats": 4, "log_scales": 3, "opacity_logits": 0}
    local = {
        k: torch.from_numpy(_extra(ply, v, cols[k], p).astype(np.float32)) for k, v in EXTRA_LOCAL.items()
    }
    _check_types(ply, p)
    _check_values(local, p)
    face_ids = torch.from_numpy(face.astype(np.int64))
    sh = torch.as_tensor(np.asarray(ply.sh), dtype=torch.float32)
    return AvatarFile(path=p, meta=meta, face_ids=face_ids, local=local, sh=sh)
