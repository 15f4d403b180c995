"""One training step's poses, cameras and backgrounds, and the sampler that draws them.

:class:`BatchSampler` draws the paper's training batch (docs/METHOD.md, "Training"): ``B`` poses
of a FLAME motion (:class:`~headstudio.train.animation_sampler.AnimationSampler`), one random camera each
(:class:`~headstudio.cameras.CameraSampler`) and a background per view. A guidance may draw its
own batch instead (:meth:`headstudio.train.guidance.Guidance.sample_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from flame_core import FlameParams
from torch import Tensor

from ..cameras import CameraSampler
from .animation_sampler import AnimationSampler

__all__ = ["TrainBatch", "BatchSampler"]


@dataclass
class TrainBatch:
    """The poses and cameras of one training step (``B`` poses, ``C`` cameras each; training
    uses ``C = 1``).

    Attributes:
        viewmats: ``[B, C, 4, 4]`` world→camera (OpenCV).
        Ks: ``[B, C, 3, 3]`` intrinsics at the render resolution.
        flame: FLAME keyword arguments ``[B, ·]`` (``expression``, ``jaw_pose``, ...).
        azimuth_deg: ``[B*C]`` camera azimuths (0 = front, +z).
        elevation_deg: ``[B*C]`` camera elevations.
        backgrounds: ``[B, C, 3]`` background colours in 0..1.
        target_indices: ``[B]`` long, the target of each pose (image guidance only).
    """

    viewmats: Tensor
    Ks: Tensor
    flame: dict[str, Tensor]
    azimuth_deg: Tensor
    elevation_deg: Tensor
    backgrounds: Tensor
    target_indices: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.viewmats.shape[0])

    def params(self) -> FlameParams:
        """The poses as the :class:`FlameParams` that ``Avatar.render`` takes."""
        return FlameParams.from_kwargs(self.flame)

    def to(self, device: torch.device | str) -> TrainBatch:
        """Copy every tensor to ``device``."""
        return TrainBatch(
            viewmats=self.viewmats.to(device),
            Ks=self.Ks.to(device),
            flame={k: v.to(device) for k, v in self.flame.items()},
            azimuth_deg=self.azimuth_deg.to(device),
            elevation_deg=self.elevation_deg.to(device),
            backgrounds=self.backgrounds.to(device),
            target_indices=None if self.target_indices is None else self.target_indices.to(device),
        )


class BatchSampler:
    """Random training batches: a pose of the motion and one random camera per sample.

    Args:
        cameras: the camera sampler (its ``width`` and ``height`` are the render size).
        animation: the pose sampler, or ``None`` to train the neutral expression only.
        num_expression: ``E`` of the head (the neutral expression's size).
        background: ``random`` (one random colour per view), ``white`` or ``black``.
    """

    def __init__(
        self,
        cameras: CameraSampler,
        animation: AnimationSampler | None,
        num_expression: int,
        background: Literal["random", "white", "black"] = "random",
    ) -> None:
        self.cameras = cameras
        self.animation = animation
        self.num_expression = int(num_expression)
        self.background = background

    @property
    def width(self) -> int:
        return self.cameras.width

    @property
    def height(self) -> int:
        return self.cameras.height

    def sample(self, batch_size: int, generator: torch.Generator) -> TrainBatch:
        """``batch_size`` poses, cameras and backgrounds, CPU tensors drawn from ``generator``
        (cameras first, then poses, then backgrounds)."""
        b = int(batch_size)
        cams = self.cameras.sample(b, generator)
        if self.animation is not None:
            flame = self.animation.sample(b, generator)
        else:
            flame = {"expression": torch.zeros(b, self.num_expression)}
        if self.background == "random":
            bg = torch.rand(b, 1, 3, generator=generator)
        elif self.background == "black":
            bg = torch.zeros(b, 1, 3)
        else:
            bg = torch.ones(b, 1, 3)
        return TrainBatch(
            viewmats=cams.viewmats,
            Ks=cams.Ks,
            flame=flame,
            azimuth_deg=cams.azimuth_deg,
            elevation_deg=cams.elevation_deg,
            backgrounds=bg,
        )
