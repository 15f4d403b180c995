"""An avatar file and the head model it plays on: which head (:func:`resolve_head`: the file's own
by default, checked against the identity hash the avatar was made on), whether its triangle ids
fit that head (:func:`check_face_ids`) and the learned shape for it (:func:`shape_for_head`).

The file itself is read by :func:`headstudio.avatar_io.read_avatar_file`;
:meth:`headstudio.avatar.Avatar.load` runs these steps after it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from flame_core import FlameModel

from .avatar_io import EXTRA_FACE, AvatarFile, damaged
from .errors import HeadStudioError

__all__ = ["resolve_head", "check_face_ids", "shape_for_head"]


def check_face_ids(f: AvatarFile, head: FlameModel) -> None:
    """Every Gaussian's triangle id names a face of ``head``.

    Raises:
        AvatarFileError: an id outside ``0..F-1``.
    """
    num_faces = int(head.faces.shape[0])
    lo, hi = int(f.face_ids.min()), int(f.face_ids.max())
    if lo < 0 or hi >= num_faces:
        raise damaged(
            f.path,
            f"rigging property '{EXTRA_FACE}' holds triangle ids {lo}..{hi} but the head model has faces "
            f"0..{num_faces - 1}",
        )


def _default_head(f: AvatarFile) -> FlameModel:
    """The head named by the file: the procedural head, else the FLAME file it names when that
    file is still there, else ``FlameModel.resolve()``."""
    want_src = f.head_identity[1]
    if want_src == "procedural":
        return FlameModel.procedural(num_shape=f.num_shape, num_expression=f.num_expression)
    try:
        if Path(want_src).is_file():
            return FlameModel.from_file(want_src, num_shape=f.num_shape, num_expression=f.num_expression)
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
