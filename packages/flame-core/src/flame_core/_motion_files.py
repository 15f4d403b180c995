"""Reading the motion files of other tools (TalkSHOW ``.npy``, SHOW / TalkSHOW ``.pkl``) and the
``.npz`` layout for :meth:`flame_core.motion.MotionSequence.load` (split out of
:mod:`flame_core.motion`, which re-exports :class:`MotionFileError`)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flame_core.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
)

__all__ = ["MotionFileError", "NECK_BODY_INDEX", "HEAD_BODY_INDEX"]

NECK_BODY_INDEX, HEAD_BODY_INDEX = 11, 14  # SMPL-X body joints without the pelvis
_TALKSHOW_DIM = 265


class MotionFileError(ValueError):
    """A motion file that cannot be read (message names the file and the field)."""


def _neck_from_body(body: np.ndarray) -> np.ndarray:
    """FLAME neck ``[T, 3]`` from SMPL-X body joints ``[T, 21, 3]``: ``R_neck @ R_head``."""
    b = torch.as_tensor(body, dtype=torch.float64)
    R = axis_angle_to_matrix(b[:, NECK_BODY_INDEX]) @ axis_angle_to_matrix(b[:, HEAD_BODY_INDEX])
    return matrix_to_axis_angle(R).numpy()


def _check_array(path: Path, name: str, x: Any, shapes: str, ok) -> np.ndarray:
    try:
        a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise MotionFileError(f"{path}: field {name!r} is not a numeric array: {e}") from e
    if not ok(a):
        raise MotionFileError(f"{path}: field {name!r} has shape {a.shape}; expected {shapes}")
    if a.shape[0] == 0:
        raise MotionFileError(f"{path}: field {name!r} has zero frames")
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a.reshape(a.shape[0], -1))).any(1).argmax())
        raise MotionFileError(f"{path}: field {name!r} contains NaN or inf (first at frame {bad})")
    return a


def _read_talkshow_npy(path: Path) -> tuple[dict[str, Any], float | None]:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise MotionFileError(f"{path}: not a TalkSHOW .npy array: {e}") from e
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    a = _check_array(
        path,
        "frames",
        a,
        f"[T, {_TALKSHOW_DIM}] (TalkSHOW SMPL-X layout)",
        lambda x: x.ndim == 2 and x.shape[1] >= _TALKSHOW_DIM,
    )
    body = a[:, 12:75].reshape(-1, 21, 3)
    return {
        "expression": a[:, 165:265],
        "jaw_pose": a[:, 0:3],
        "eye_pose": a[:, 3:9],
        "neck_pose": _neck_from_body(body),
    }, None


def _read_show_pkl(path: Path) -> tuple[dict[str, Any], float | None]:
    try:
        with open(path, "rb") as fh:
            d = pickle.load(fh, encoding="latin1")
    except Exception as e:  # corrupt pickles raise almost anything (Overflow, Memory, Lookup...)
        raise MotionFileError(f"{path}: not a SHOW/TalkSHOW .pkl: {e}") from e
    if isinstance(d, (list, tuple)) and len(d) == 1 and isinstance(d[0], dict):
        d = d[0]
    if not isinstance(d, dict):
        raise MotionFileError(f"{path}: the pickle holds a {type(d).__name__}; expected a dict of arrays")
    for key in ("expression", "jaw_pose", "leye_pose", "reye_pose", "body_pose_axis"):
        if key not in d:
            raise MotionFileError(f"{path}: field {key!r} is missing (found {sorted(map(str, d))})")
    expr = _check_array(
        path, "expression", d["expression"], "(T, E)", lambda x: x.ndim == 2 and x.shape[1] > 0
    )
    T = expr.shape[0]

    def rot(name: str) -> np.ndarray:
        return _check_array(
            path, name, d[name], f"({T}, 3)", lambda x: x.shape in ((T, 3), (T, 1, 3))
        ).reshape(T, 3)

    body = _check_array(
        path,
        "body_pose_axis",
        d["body_pose_axis"],
        f"({T}, 21, 3) or ({T}, 63)",
        lambda x: x.shape in ((T, 21, 3), (T, 63)),
    ).reshape(T, 21, 3)
    out = {
        "expression": expr,
        "jaw_pose": rot("jaw_pose"),
        "eye_pose": np.concatenate([rot("leye_pose"), rot("reye_pose")], 1),
        "neck_pose": _neck_from_body(body),
    }
    if d.get("global_orient") is not None:
        out["global_orient"] = rot("global_orient")
    fps = d.get("fps")
    try:
        return out, (float(np.asarray(fps)) if fps is not None else None)
    except (TypeError, ValueError):
        raise MotionFileError(f"{path}: field 'fps' is {repr(fps)[:40]}; expected a frame rate") from None


def _read_npz(path: Path) -> tuple[dict[str, Any], float | None]:
    try:
        data = np.load(path, allow_pickle=False)
        arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # a corrupt zip: BadZipFile
        raise MotionFileError(f"{path}: not a motion .npz: {e}") from e
    if "expression" not in arrays:
        raise MotionFileError(f"{path}: field 'expression' is missing (found {sorted(arrays)})")
    expr = _check_array(path, "expression", arrays["expression"], "(T, E)", lambda x: x.ndim == 2)
    T = expr.shape[0]
    out: dict[str, Any] = {"expression": expr}
    for name, width in (
        ("jaw_pose", 3),
        ("neck_pose", 3),
        ("eye_pose", 6),
        ("global_orient", 3),
        ("translation", 3),
    ):
        if name in arrays:
            out[name] = _check_array(
                path, name, arrays[name], f"({T}, {width})", lambda x, w=width: x.shape == (T, w)
            )
    fps = None
    if "fps" in arrays:
        fps = float(
            _check_array(path, "fps", arrays["fps"].reshape(1), "a positive scalar", lambda x: x[0] > 0)[0]
        )
    return out, fps


# ---------------------------------------------------------------------- procedural motion
