"""An avatar file and the head model it plays on: which head (:func:`resolve_head`: the file's own
by default, checked against the identity hash the avatar was made on), whether its triangle ids
fit that head (:func:`check_face_ids`) and the learned shape for it (:func:`shape_for_head`).

The file itself is read by :func:`headstudio.avatar_io.read_avatar_file`;
:meth:`headstudio.avatar.Avatar.load` runs these steps after it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from flame_core import FlameFileError, FlameModel

from .avatar_io import EXTRA_FACE, AvatarFile, damaged
from .errors import HeadStudioError

__all__ = ["build_head", "head_record", "resolve_head", "check_face_ids", "shape_for_head"]

log = logging.getLogger(__name__)


def build_head(
    flame_path: str | os.PathLike | None, num_shape: int, num_expression: int, mouth_interior: bool
) -> FlameModel:
    """The head model of a new avatar: ``flame_path`` (else ``HEADSTUDIO_FLAME_PATH``, else the
    procedural head, as :meth:`FlameModel.resolve`), with the mouth interior when asked for.

    A FLAME file without a MediaPipe landmark embedding cannot have the interior (it is built
    from the lips' landmarks): it is loaded without, with one warning.

    Raises:
        OSError, ValueError: the file cannot be loaded; or (``FlameFileError``) its interior
            cannot be built from its geometry (the message says to set
            ``head.mouth_interior = false``).
    """
    kw = {"num_shape": num_shape, "num_expression": num_expression}
    if not mouth_interior:
        return FlameModel.resolve(flame_path, mouth_interior=False, **kw)
    try:
        return FlameModel.resolve(flame_path, mouth_interior=True, **kw)
    except FlameFileError as err:
        head = FlameModel.resolve(flame_path, mouth_interior=False, **kw)  # its own error if unreadable
        if head.landmark_embedding is not None:
            raise FlameFileError(
                f"{err}; set head.mouth_interior = false to use this head without a mouth interior"
            ) from err
        log.warning(
            "the FLAME model %s has no MediaPipe landmark embedding, so it gets no mouth interior "
            "(put mediapipe_landmark_embedding.npz beside it for one)",
            head.source,
        )
        return head


def head_record(head: FlameModel) -> dict[str, str | bool]:
    """The avatar file's ``head`` metadata: which head model it plays on (identity hash, source)
    and whether that head has the mouth interior (so it is loaded with the same one)."""
    return {
        "identity_hash": str(head.identity_hash()),
        "source": str(head.source),
        "mouth_interior": head.mouth_interior is not None,
    }


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
    file is still there, else ``FlameModel.resolve()``; with a mouth interior when the file
    records one (files from before that record: the procedural head with, a FLAME file without,
    as they were made)."""
    want_src = f.head_identity[1]
    kw = {"num_shape": f.num_shape, "num_expression": f.num_expression}
    if f.head_mouth_interior is not None:  # files from before the record: each loader's default
        kw["mouth_interior"] = f.head_mouth_interior
    if want_src == "procedural":
        return FlameModel.procedural(**kw)
    try:
        if Path(want_src).is_file():
            return FlameModel.from_file(want_src, **kw)
        return FlameModel.resolve(**kw)
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
