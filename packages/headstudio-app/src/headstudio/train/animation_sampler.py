"""Training with animation (docs/METHOD.md, "Training"): FLAME expressions and poses sampled per step.

:class:`AnimationSampler` draws random frames of a motion sequence (a TalkSHOW / SHOW / ``.npz``
file, or the default training motion of :func:`headstudio.head_motion.training_motion`) so the avatar
learns to move. The global orientation and translation are always zero: the cameras already cover
the viewpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch
from flame_core.motion import MotionSequence

from ..errors import HeadStudioError
from ..head_motion import as_motion, fit_expression

__all__ = ["AnimationSampler"]


class AnimationSampler:
    """Random FLAME poses from a motion sequence.

    Args:
        motion: a ``flame_core.MotionSequence`` or a motion file path (the trainer passes
            :func:`headstudio.head_motion.training_motion` of its head).
        num_expression: E of the head; the motion's expressions are truncated / zero-padded.
        neutral_prob: probability that a sample is the neutral pose (zeros), so the avatar
            also learns the pose it is saved and shown in.
    """

    def __init__(
        self,
        motion: MotionSequence | str | Path,
        num_expression: int = 100,
        neutral_prob: float = 0.1,
    ) -> None:
        if not 0.0 <= neutral_prob <= 1.0:
            raise HeadStudioError(f"AnimationSampler: neutral_prob must be in [0, 1], got {neutral_prob}.")
        if num_expression < 0:
            raise HeadStudioError(f"AnimationSampler: num_expression must be >= 0, got {num_expression}.")
        self.motion: MotionSequence = as_motion(motion)
        self.num_expression = int(num_expression)
        self.neutral_prob = float(neutral_prob)
        kw = self.motion.flame_kwargs(None)
        T = len(self.motion)
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
