"""FLAME motion sequences: TalkSHOW / SHOW files, our ``.npz``, resampling, procedural talking.

A :class:`MotionSequence` holds ``T`` frames of FLAME animation inputs (float32 tensors):
``expression [T, E]``, ``jaw_pose [T, 3]``, ``neck_pose [T, 3]``, ``eye_pose [T, 6]`` (left then
right eye), ``global_orient [T, 3]``, ``translation [T, 3]``, and the frame rate ``fps``.

File formats read by :meth:`MotionSequence.load`:

- TalkSHOW ``.npy``: ``[T, 265]`` per frame (SMPL-X layout) ``[0:3]`` jaw, ``[3:6]`` / ``[6:9]``
  left / right eye, ``[9:12]`` body global orientation (ignored: it is the pelvis, not the head),
  ``[12:75]`` the 21 body joints without the pelvis, ``[75:165]`` hands (ignored),
  ``[165:265]`` expression.
- SHOW / TalkSHOW ``.pkl``: a dict with ``expression (T, E)``, ``jaw_pose (T, 3)``,
  ``leye_pose`` / ``reye_pose (T, 3)``, ``body_pose_axis (T, 21, 3)`` or ``(T, 63)`` and optional
  ``global_orient (T, 3)``.
- Ours ``.npz`` (written by :meth:`MotionSequence.save`): one array per field plus ``fps``.

The FLAME neck rotation from SMPL-X body joints is the neck joint (body index 11, SMPL-X joint
12) composed with its child the head joint (body index 14, SMPL-X joint 15): ``R = R_neck R_head``.
Input files are assumed to be at 30 fps unless they say otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flame_core._motion_files import (
    MotionFileError,
    _read_npz,
    _read_show_pkl,
    _read_talkshow_npy,
)
from flame_core.io import atomic_path
from flame_core.params import FlameParams
from flame_core.rotations import (
    axis_angle_to_quaternion,
    quaternion_slerp,
    quaternion_to_axis_angle,
)

__all__ = ["MotionSequence", "MotionFileError", "procedural_talking_motion", "DEFAULT_FPS"]

DEFAULT_FPS = 30.0
_ROT_FIELDS = FlameParams.ROTATIONS
_FORMAT = "headstudio-motion-v1"


@dataclass(eq=False, repr=False)
class MotionSequence:
    """``T`` frames of FLAME animation inputs (float32 tensors, see the module docstring).

    Fields other than ``expression`` may be ``None`` (zeros). Raises ``ValueError`` naming the
    field for a wrong shape, mismatched frame counts, NaN/inf, zero frames or a bad ``fps``.
    """

    expression: torch.Tensor
    jaw_pose: torch.Tensor | None = None
    neck_pose: torch.Tensor | None = None
    eye_pose: torch.Tensor | None = None
    global_orient: torch.Tensor | None = None
    translation: torch.Tensor | None = None
    fps: float = DEFAULT_FPS

    def __post_init__(self) -> None:
        expr = _as_float(self.expression, "expression")
        if expr.ndim != 2:
            raise ValueError(f"expression has shape {tuple(expr.shape)}; expected [T, E]")
        T = expr.shape[0]
        if T == 0:
            raise ValueError("expression has zero frames; a motion needs at least one frame")
        self.expression = expr
        for name, width in (("jaw_pose", 3), ("neck_pose", 3), ("eye_pose", 6), ("global_orient", 3)):
            setattr(self, name, _field(getattr(self, name), name, T, width))
        self.translation = _field(self.translation, "translation", T, 3)
        for f in fields(self):
            if f.name != "fps" and not torch.isfinite(getattr(self, f.name)).all():
                raise ValueError(f"{f.name} contains NaN or inf")
        try:
            fps = float(self.fps)
        except (TypeError, ValueError):
            fps = float("nan")
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps = {self.fps!r}; expected a positive frame rate")
        self.fps = fps

    # ------------------------------------------------------------------ basics

    def __len__(self) -> int:
        return int(self.expression.shape[0])

    def __repr__(self) -> str:
        return f"MotionSequence(T={len(self)}, E={self.num_expression}, fps={self.fps:g})"

    @property
    def num_expression(self) -> int:
        """``E``."""
        return int(self.expression.shape[1])

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (len(self) - 1) / self.fps

    def tensors(self) -> dict[str, torch.Tensor]:
        """All per-frame fields ``{name: [T, ·]}``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "fps"}

    def flame_kwargs(self, indices: Any = None) -> dict[str, torch.Tensor]:
        """``{expression, jaw_pose, neck_pose, eye_pose, global_orient, translation}`` at ``indices``.

        Args:
            indices: frame ids (list, array, tensor, slice or int); ``None`` means all frames.

        Returns:
            ``[len(indices), ·]`` float32 tensors, keyword arguments of ``FlameModel.forward``.
        """
        if indices is None:
            idx: Any = slice(None)
        elif isinstance(indices, slice):
            idx = indices
        else:
            idx = torch.as_tensor(np.asarray(indices), dtype=torch.long).reshape(-1)
            T = len(self)
            if len(idx) and (int(idx.min()) < -T or int(idx.max()) >= T):
                raise IndexError(f"indices {idx.tolist()[:8]} out of range for a motion of {T} frames")
        return {k: v[idx] for k, v in self.tensors().items()}

    def params(self, indices: Any = None) -> FlameParams:
        """The frames at ``indices`` (as :meth:`flame_kwargs`) as one :class:`FlameParams` batch,
        every field ``[len(indices), ·]`` float32."""
        return FlameParams(**self.flame_kwargs(indices))

    # ------------------------------------------------------------------ resampling

    def resample(self, fps: float) -> MotionSequence:
        """The same motion at another frame rate (same start, ``floor(duration·fps) + 1`` frames).

        Expression and translation are interpolated linearly, rotations by quaternion slerp.
        """
        fps = float(fps)
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps = {fps!r}; expected a positive frame rate")
        T = len(self)
        n = int(np.floor(self.duration * fps + 1e-6)) + 1
        u = torch.arange(n, dtype=torch.float64) * (self.fps / fps)
        i0 = u.floor().long().clamp(0, T - 1)
        i1 = (i0 + 1).clamp(max=T - 1)
        w = (u - i0.double()).clamp(0, 1).float()
        out: dict[str, Any] = {}
        for name, x in self.tensors().items():
            if name in _ROT_FIELDS or name == "eye_pose":
                q = axis_angle_to_quaternion(x.double().reshape(T, -1, 3))
                qi = quaternion_slerp(q[i0], q[i1], w.double()[:, None].expand(-1, q.shape[1]))
                out[name] = quaternion_to_axis_angle(qi).reshape(n, -1).float()
            else:
                out[name] = torch.lerp(x[i0], x[i1], w[:, None])
        return MotionSequence(**out, fps=fps)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> Path:
        """Write our ``.npz`` format atomically (temporary file + rename); returns the path."""
        path = Path(path)
        if path.suffix.lower() != ".npz":
            raise ValueError(f"path {str(path)!r}: MotionSequence.save writes .npz files")
        arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.tensors().items()}
        with atomic_path(path, suffix=".tmp.npz") as tmp:  # np.savez keeps a name ending in .npz
            np.savez(tmp, fps=np.float64(self.fps), format=np.array(_FORMAT), **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, fps: float | None = None) -> MotionSequence:
        """Read a TalkSHOW ``.npy``, SHOW/TalkSHOW ``.pkl`` or our ``.npz`` (by suffix).

        Args:
            fps: frame rate of ``.npy`` / ``.pkl`` files that do not store one (default 30).

        Raises:
            FileNotFoundError: no file at ``path``.
            MotionFileError: unknown suffix, unreadable file, or a missing / malformed field
                (the message names the file and the field).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"motion file not found: {path}")
        suffix = path.suffix.lower()
        readers = {".npy": _read_talkshow_npy, ".pkl": _read_show_pkl, ".npz": _read_npz}
        if suffix not in readers:
            raise MotionFileError(f"{path}: unknown motion format {suffix!r}; expected .npy, .pkl or .npz")
        fields_, file_fps = readers[suffix](path)
        try:
            return cls(**fields_, fps=file_fps if file_fps is not None else (fps or DEFAULT_FPS))
        except ValueError as e:
            raise MotionFileError(f"{path}: {e}") from e


# ---------------------------------------------------------------------- helpers


def _as_float(x: Any, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} is not a numeric array ({type(x).__name__}): {e}") from e
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
        raise ValueError(f"{name} has dtype {t.dtype}; expected numbers")
    return t.to(torch.float32)


def _field(x: Any, name: str, T: int, width: int) -> torch.Tensor:
    if x is None:
        return torch.zeros(T, width)
    t = _as_float(x, name)
    if t.ndim != 2 or t.shape[0] != T or t.shape[1] != width:
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected [{T}, {width}] (T from expression)")
    return t


def _bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Raised-cosine bump of half-width ``width`` at ``centre``."""
    x = np.clip((t - centre) / width, -1.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def _smooth_noise(
    rng: np.random.Generator, t: np.ndarray, amp: float, freqs: tuple[float, ...]
) -> np.ndarray:
    out = np.zeros_like(t)
    for f in freqs:
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.0)
    return amp * out / len(freqs)


def procedural_talking_motion(
    num_frames: int = 120, fps: float = 30.0, num_expression: int = 100, seed: int = 0
) -> MotionSequence:
    """A deterministic talking-head motion for the procedural head (used when no file is given).

    Phrases of syllables at ~4 Hz (3–5 Hz) separated by pauses drive the jaw (0.04–0.3 rad) and
    the mouth components; blinks every 2–5 s; brow raises on phrase starts; slow small head and
    eye movement. Uses the procedural head's fixed expression meanings (CONTRACTS.md: 0 smile,
    1 pucker, 2 stretch, 3 brow raise, 4 brow furrow, 5/6 blink left/right, 9 mouth corners);
    components beyond 10 stay zero.
    """
    if int(num_frames) < 1:
        raise ValueError(f"num_frames = {num_frames}; expected >= 1")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps = {fps}; expected a positive frame rate")
    if num_expression < 0:
        raise ValueError(f"num_expression = {num_expression}; expected >= 0")
    rng = np.random.default_rng(seed)
    T = int(num_frames)
    t = np.arange(T) / float(fps)
    end = t[-1] + 0.5

    speech = np.zeros(T)  # syllable envelope, 0..1
    pucker = np.zeros(T)
    brow = np.zeros(T)
    s = rng.uniform(0.0, 0.3)
    while s < end:
        phrase_end = s + rng.uniform(1.2, 3.0)
        brow += rng.uniform(0.3, 0.8) * _bump(t, s + 0.2, 0.4)
        while s < phrase_end:
            dur = 1.0 / rng.uniform(3.0, 5.0)
            a = rng.uniform(0.35, 1.0)
            speech = np.maximum(speech, a * _bump(t, s + dur / 2, dur / 2))
            if rng.random() < 0.25:
                pucker += rng.uniform(0.4, 1.0) * _bump(t, s + dur / 2, dur / 2)
            s += dur
        s += rng.uniform(0.3, 0.8)  # pause

    blink = np.zeros(T)
    b = rng.uniform(0.5, 2.0)
    while b < end:
        blink = np.maximum(blink, _bump(t, b, 0.08))
        b += rng.uniform(2.0, 5.0)

    jaw = np.zeros((T, 3))
    jaw[:, 0] = 0.04 + 0.26 * speech
    neck = np.stack(
        [
            _smooth_noise(rng, t, 0.08, (0.21, 0.43)) + 0.02 * speech,
            _smooth_noise(rng, t, 0.12, (0.13, 0.31)),
            _smooth_noise(rng, t, 0.05, (0.17, 0.37)),
        ],
        1,
    )
    eye = np.zeros((T, 6))
    gaze = np.stack([_smooth_noise(rng, t, 0.06, (0.3, 0.7)), _smooth_noise(rng, t, 0.1, (0.25, 0.6))], 1)
    eye[:, 0:2] = gaze
    eye[:, 3:5] = gaze

    expr = np.zeros((T, num_expression))
    comps = {
        0: 0.3 + 0.3 * _smooth_noise(rng, t, 1.0, (0.1, 0.23)),
        1: pucker,
        2: 0.3 * speech,
        3: brow,
        4: 0.3 * np.clip(_smooth_noise(rng, t, 1.0, (0.15,)), 0, None),
        5: blink,
        6: blink,
        9: 0.6 * speech,
    }
    for k, v in comps.items():
        if k < num_expression:
            expr[:, k] = v
    return MotionSequence(
        expression=expr,
        jaw_pose=jaw,
        neck_pose=neck,
        eye_pose=eye,
        global_orient=None,
        translation=None,
        fps=fps,
    )
