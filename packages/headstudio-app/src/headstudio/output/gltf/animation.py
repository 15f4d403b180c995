"""Motions as glTF animations: joint rotations and morph weights at the motion's frame rate.

A FLAME :class:`~flame_core.motion.MotionSequence` animates the joints (``global_orient`` on the
``neck`` joint, ``neck_pose`` on ``head``, ``jaw_pose``, ``eye_pose``; ``translation`` moves the
root) and the expression morph targets (``flameExpression00``...: one per expression component
the motion uses); :class:`~headstudio.animate.arkit.ArkitCurves` animate the 52 ARKit morph
targets and the captured head rotation (on ``head``). Rotations are unit quaternions (xyzw),
interpolated LINEAR (glTF slerps them); weights are LINEAR too.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["axis_angle_to_quat_xyzw", "flame_tracks"]


def axis_angle_to_quat_xyzw(aa: np.ndarray) -> np.ndarray:
    """``[T, 3]`` axis-angle to ``[T, 4]`` float32 unit quaternions, xyzw, sign-continuous in time."""
    q = Rotation.from_rotvec(np.asarray(aa, np.float64).reshape(-1, 3)).as_quat()  # xyzw
    for t in range(1, len(q)):  # the short way between keyframes
        if np.dot(q[t], q[t - 1]) < 0:
            q[t] = -q[t]
    return q.astype(np.float32)


def flame_tracks(motion: object, num_frames: int) -> dict[str, np.ndarray]:
    """The motion's per-frame joint rotations ``[T, 3]`` by joint index key ``"0".."4"`` and
    translation ``[T, 3]`` (zeros where the motion has none)."""

    def field(name: str, width: int) -> np.ndarray:
        v = getattr(motion, name, None)
        if v is None:
            return np.zeros((num_frames, width))
        return np.asarray(v.detach().cpu().double().numpy() if hasattr(v, "detach") else v, np.float64)

    eye = field("eye_pose", 6)
    return {
        "0": field("global_orient", 3),
        "1": field("neck_pose", 3),
        "2": field("jaw_pose", 3),
        "3": eye[:, :3],
        "4": eye[:, 3:],
        "translation": field("translation", 3),
    }
