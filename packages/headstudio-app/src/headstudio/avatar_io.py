"""The avatar file: one standard 3DGS PLY with the rigging and the head's identity.

The Gaussians are stored in world space at the neutral pose (so splat viewers open the file),
the rigging in extra properties (triangle id, local means / quaternions / log-scales / opacity
logits) and the header metadata::

    {"format": "headstudio-avatar", "format_version": 1, "shape": [...], "num_shape": S,
     "num_expression": E, "sh_degree": d, "num_gaussians": N,
     "head": {"identity_hash": "<sha256>", "source": "procedural" | "<path>"},
     "config": {...} | null, "prompt": "..." | null, "metadata": {...}}

The steps of reading one (:func:`read_avatar_file`, :func:`resolve_head`, :func:`shape_for_head`)
live here; :meth:`headstudio.avatar.Avatar.load` runs them in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flame_core import FlameModel
from rigged_gaussians.ply import PlyGaussians, load_ply

from .errors import HeadStudioError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "AvatarFile",
    "rigging_extras",
    "read_avatar_file",
    "resolve_head",
    "shape_for_head",
]

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


def _extra(ply: PlyGaussians, name: str, path: Path) -> np.ndarray:
    for key in (name, f"rg_{name}"):
        if key in ply.extra:
            return np.asarray(ply.extra[key])
    raise HeadStudioError(
        f"'{path}' has no rigging property '{name}'; it is not a headstudio avatar ({_NOT_AN_AVATAR})."
    )


def _check_header(meta: dict[str, Any], path: Path) -> None:
    if meta.get("format") != FORMAT:
        raise HeadStudioError(
            f"'{path}' is a Gaussian PLY without headstudio rigging metadata; {_NOT_AN_AVATAR}."
        )
    version = int(meta.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise HeadStudioError(
            f"'{path}' has avatar format version {version}; this headstudio reads up to {FORMAT_VERSION}; "
            "upgrade headstudio."
        )


def read_avatar_file(path: str | Path) -> AvatarFile:
    """Read and check an avatar PLY (format, version, rigging properties).

    Raises:
        HeadStudioError: a missing file, a PLY that is not a headstudio avatar, or a newer format.
    """
    p = Path(path)
    if not p.is_file():
        raise HeadStudioError(f"avatar '{p}' does not exist; check the path.")
    ply = load_ply(p)
    meta = dict(ply.metadata or {})
    _check_header(meta, p)
    face_ids = torch.from_numpy(_extra(ply, EXTRA_FACE, p).astype(np.int64).reshape(-1))
    n = face_ids.shape[0]
    shapes = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,)}
    local = {
        k: torch.from_numpy(_extra(ply, v, p).astype(np.float32)).reshape(shapes[k])
        for k, v in EXTRA_LOCAL.items()
    }
    sh = torch.as_tensor(np.asarray(ply.sh), dtype=torch.float32).reshape(n, -1, 3)
    return AvatarFile(path=p, meta=meta, face_ids=face_ids, local=local, sh=sh)


def _default_head(f: AvatarFile) -> FlameModel:
    """The head named by the file: the procedural head, else ``FlameModel.resolve()``."""
    want_src = f.head_identity[1]
    if want_src == "procedural":
        return FlameModel.procedural(num_shape=f.num_shape, num_expression=f.num_expression)
    try:
        return FlameModel.resolve(num_shape=f.num_shape, num_expression=f.num_expression)
    except (OSError, ValueError) as err:
        raise HeadStudioError(
            f"avatar '{f.path}' was made on the FLAME model {want_src}, which could not be loaded "
            f"({' '.join(str(err).split())[:200]}); give that FLAME file as the head model.",
            argument="head",
        ) from err


def resolve_head(f: AvatarFile, head: FlameModel | None) -> FlameModel:
    """``head`` (or the file's own head when ``None``), checked against the identity hash the
    avatar was made on, so an avatar is never posed on another head.

    Raises:
        HeadStudioError: the head cannot be loaded or is not the one the avatar was made on.
    """
    want_hash, want_src = f.head_identity
    if head is None:
        head = _default_head(f)
    got_hash = str(head.identity_hash())
    if got_hash == want_hash:
        return head
    got_src, argument = str(head.source), "head"
    if want_src != "procedural":
        what_to_do = f"give the head model it was made on (the FLAME model {want_src})"
    elif got_src != "procedural":
        what_to_do = "leave the head model out: the avatar was made on headstudio's procedural head"
    else:
        argument = None
        what_to_do = (
            "it was made on headstudio's procedural head, which differs in this version (or the file was "
            "modified); re-create the avatar with this version"
        )
    raise HeadStudioError(
        f"avatar '{f.path}' was made on head model {want_hash[:12]} ({want_src}), but {got_src} has "
        f"{got_hash[:12]}; {what_to_do}.",
        argument=argument,
    )


def shape_for_head(f: AvatarFile, head: FlameModel) -> torch.Tensor:
    """The learned FLAME shape ``[1, S]`` for ``head`` (trailing zero components dropped).

    Raises:
        HeadStudioError: the avatar's shape has more non-zero components than the head uses.
    """
    shape = torch.tensor(f.meta.get("shape", [0.0] * f.num_shape), dtype=torch.float32).reshape(1, -1)
    head_shape = int(head.num_shape)
    if shape.shape[1] > head_shape:
        if shape[:, head_shape:].abs().max() > 0:
            raise HeadStudioError(
                f"avatar '{f.path}' has {shape.shape[1]} shape components but the head model uses "
                f"{head_shape}; build the head with num_shape >= {shape.shape[1]}."
            )
        shape = shape[:, :head_shape]
    return shape
