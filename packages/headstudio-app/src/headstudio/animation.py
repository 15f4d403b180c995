"""Training with animation (PAPER.md, F-SDS): FLAME expressions and poses sampled per step.

:class:`AnimationSampler` draws random frames of a motion sequence (a TalkSHOW / SHOW / ``.npz``
file, or the procedural talking motion when none is given) so the avatar learns to move. The
global orientation and translation are always zero: the cameras already cover the viewpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .errors import HeadStudioError

__all__ = ["AnimationSampler", "POSE_KEYS", "neutral_flame_kwargs", "fit_expression"]

#: FLAME animation inputs the sampler produces (``global_orient`` always zero).
POSE_KEYS = ("expression", "jaw_pose", "neck_pose", "eye_pose", "global_orient")
#: Frames of the procedural talking motion used when no motion is given (10 s at 30 fps).
PROCEDURAL_FRAMES = 300


def fit_expression(expr: torch.Tensor, num_expression: int) -> torch.Tensor:
    """Truncate or zero-pad ``expr [T, E]`` to ``[T, num_expression]``."""
    E = expr.shape[-1]
    if E >= num_expression:
        return expr[..., :num_expression]
    return torch.cat([expr, expr.new_zeros(*expr.shape[:-1], num_expression - E)], dim=-1)


def neutral_flame_kwargs(batch_size: int, num_expression: int) -> dict[str, torch.Tensor]:
    """All-zero FLAME kwargs ``[B, ·]`` (the neutral pose)."""
    b = int(batch_size)
    return {
        "expression": torch.zeros(b, num_expression),
        "jaw_pose": torch.zeros(b, 3),
        "neck_pose": torch.zeros(b, 3),
        "eye_pose": torch.zeros(b, 6),
        "global_orient": torch.zeros(b, 3),
    }


class AnimationSampler:
    """Random FLAME poses from a motion sequence.

    Args:
        motion: a ``flame_core.MotionSequence``, a motion file path, or ``None`` for
            ``procedural_talking_motion`` (10 s at 30 fps).
        num_expression: E of the head; the motion's expressions are truncated / zero-padded.
        neutral_prob: probability that a sample is the neutral pose (zeros), so the avatar
            also learns the pose it is saved and shown in.
        seed: seed of the procedural motion.
    """

    def __init__(
        self,
        motion: Any | str | Path | None = None,
        num_expression: int = 100,
        neutral_prob: float = 0.1,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= neutral_prob <= 1.0:
            raise HeadStudioError(f"AnimationSampler: neutral_prob must be in [0, 1], got {neutral_prob}.")
        if num_expression < 0:
            raise HeadStudioError(f"AnimationSampler: num_expression must be >= 0, got {num_expression}.")
        if motion is None:
            from flame_core.motion import procedural_talking_motion

            motion = procedural_talking_motion(
                num_frames=PROCEDURAL_FRAMES, fps=30.0, num_expression=max(num_expression, 10), seed=seed
            )
        elif isinstance(motion, (str, Path)):
            from .rendering import load_motion

            motion = load_motion(motion)
        self.motion = motion
        self.num_expression = int(num_expression)
        self.neutral_prob = float(neutral_prob)
        kw = motion.flame_kwargs(None)
        T = len(motion)
        self._frames = {
            "expression": fit_expression(kw["expression"].float(), self.num_expression),
            "jaw_pose": kw.get("jaw_pose", torch.zeros(T, 3)).float(),
            "neck_pose": kw.get("neck_pose", torch.zeros(T, 3)).float(),
            "eye_pose": kw.get("eye_pose", torch.zeros(T, 6)).float(),
        }

    def __len__(self) -> int:
        return int(self._frames["expression"].shape[0])

    def frames(self, indices: torch.Tensor | list[int]) -> dict[str, torch.Tensor]:
        """FLAME kwargs ``[len(indices), ·]`` of the given motion frames (global_orient zero)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise HeadStudioError(
                f"motion frame indices must be in 0..{len(self) - 1}, got {idx.tolist()[:8]}."
            )
        out = {k: v[idx].clone() for k, v in self._frames.items()}
        out["global_orient"] = torch.zeros(len(idx), 3)
        return out

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``batch_size`` random frames (each neutral with probability ``neutral_prob``).

        Returns:
            CPU float32 ``expression [B, E]``, ``jaw_pose [B, 3]``, ``neck_pose [B, 3]``,
            ``eye_pose [B, 6]``, ``global_orient [B, 3]`` (zeros).
        """
        if batch_size < 1:
            raise HeadStudioError(f"AnimationSampler.sample: batch_size must be >= 1, got {batch_size}.")
        idx = torch.randint(0, len(self), (batch_size,), generator=generator)
        neutral = torch.rand(batch_size, generator=generator) < self.neutral_prob
        out = self.frames(idx)
        for v in out.values():
            v[neutral] = 0.0
        return out
